import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { SignJWT } from 'jose'
import type { AuditReport } from '../../src/audit/audit.ts'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { openPostgres, quoteIdentifier } from '../../src/platform/sql/postgres.ts'
import { kafkaBrokers, testDatabaseUrl, uniqueName, waitFor } from '../support/index.ts'

/**
 * The journey split across processes on Kafka + PostgreSQL, as `node src/main.ts` runs them: order,
 * saga, dispatch and delivery one process each, and two payment processes in one consumer group.
 * 200 orders must all reach their terminal state, both payment processes must have decided
 * payments (`payments.processed_by`), and `npm run orderflow -- audit` must find nothing to report.
 */

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const node = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url))
const ORDERS = 200

interface Service {
  name: string
  child: ChildProcess
  output: string[]
}

describe('the journey across processes (Kafka + PostgreSQL, orchestration)', () => {
  const databaseName = uniqueName('of_mp')
  const databaseUrl = (() => {
    const url = new URL(testDatabaseUrl)
    url.pathname = `/${databaseName}`
    return url.toString()
  })()
  const prefix = `${uniqueName('mp')}.`
  let admin: SqlDatabase
  let db: SqlDatabase
  const services: Service[] = []

  // A shared secret, as a development deployment would configure it; customers sign in with HS256.
  const secret = randomBytes(32).toString('hex')
  const customerToken = (subject: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(subject)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(secret))

  const env = (extra: Record<string, string>) => ({
    PATH: process.env.PATH ?? '',
    KAFKA_BROKERS: kafkaBrokers().join(','),
    DATABASE_URL: databaseUrl,
    KAFKA_TOPIC_PREFIX: prefix,
    // The topics are new each run (their prefix): the processes create them, no `topics apply`.
    KAFKA_CREATE_TOPICS: 'on',
    // The production rule: on Kafka + PostgreSQL a process needs authentication configured.
    AUTH_JWT_SECRET: secret,
    KAFKA_RETRY_BACKOFF_MS: '50',
    SAGA_MODE: 'orchestration',
    DELIVERY_DELAY_MS: '50',
    SCHEDULER_POLL_INTERVAL_MS: '200',
    PORT: '0',
    LOG_LEVEL: 'info',
    ...extra,
  })

  const start = (name: string, extra: Record<string, string>): Service => {
    const child = spawn(node, ['src/main.ts'], { cwd: repoRoot, env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] })
    const service: Service = { name, child, output: [] }
    const keep = (chunk: Buffer) => {
      service.output.push(...chunk.toString().split('\n').filter(Boolean))
      if (service.output.length > 200) service.output.splice(0, service.output.length - 200)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    services.push(service)
    return service
  }

  const listening = (service: Service) =>
    waitFor(
      () => {
        if (service.child.exitCode !== null) {
          throw new Error(
            `${service.name} exited with ${service.child.exitCode}: ${service.output.slice(-10).join('\n')}`,
          )
        }
        for (const line of service.output) {
          const match = /"address":"(http:\/\/[^"]+)"/.exec(line)
          if (match?.[1]) return match[1]
        }
        return null
      },
      { timeoutMs: 120_000, message: () => `${service.name} to listen: ${service.output.slice(-5).join('\n')}` },
    )

  before(async () => {
    admin = openPostgres({ connectionString: testDatabaseUrl, max: 1 })
    await admin.exec(`CREATE DATABASE ${quoteIdentifier(databaseName)}`)
    db = openPostgres({ connectionString: databaseUrl, max: 2 })
  })

  after(async () => {
    await Promise.all(
      services.map(async ({ child }) => {
        if (child.exitCode !== null) return
        child.kill('SIGTERM')
        await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, 10_000).unref())])
        if (child.exitCode === null) child.kill('SIGKILL')
      }),
    )
    await db?.close()
    await admin?.exec(`DROP DATABASE IF EXISTS ${quoteIdentifier(databaseName)} WITH (FORCE)`)
    await admin?.close()
  })

  it('takes 200 orders to their end, with both payment processes taking part, and a clean audit', async () => {
    const order = start('order', { SERVICES: 'order', LOG_LEVEL: 'info' })
    const others = [
      start('saga', { SERVICES: 'saga' }),
      start('payment-a', { SERVICES: 'payment', PAYMENT_INSTANCE_ID: 'payment-a', LOG_LEVEL: 'info' }),
      start('payment-b', { SERVICES: 'payment', PAYMENT_INSTANCE_ID: 'payment-b', LOG_LEVEL: 'info' }),
      start('dispatch', { SERVICES: 'dispatch' }),
      start('delivery', { SERVICES: 'delivery' }),
    ]
    const base = await listening(order)
    await Promise.all(others.map(listening))

    const started = Date.now()
    const ids: string[] = []
    for (let i = 0; i < ORDERS; i += 20) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(20, ORDERS - i) }, async (_, k) => {
          const response = await fetch(`${base}/api/orders`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              authorization: `Bearer ${await customerToken(`customer-${i + k}`)}`,
            },
            body: JSON.stringify({
              customerId: `customer-${i + k}`,
              items: [{ productId: 'product123', quantity: 1 + ((i + k) % 3), price: 100.0 }],
            }),
          })
          assert.equal(response.status, 201, await response.clone().text())
          return ((await response.json()) as { id: string }).id
        }),
      )
      ids.push(...batch)
    }

    let settled = 0
    await waitFor(
      async () => {
        const { rows } = await db.query<{ n: string }>(
          "SELECT count(*)::text AS n FROM orders WHERE status IN ('DELIVERED', 'CANCELLED')",
        )
        settled = Number(rows[0]?.n ?? 0)
        return settled === ORDERS
      },
      { timeoutMs: 120_000, intervalMs: 250, message: () => `all ${ORDERS} orders to settle (${settled} did)` },
    )
    const journeyMs = Date.now() - started
    const { rows: statuses } = await db.query<{ status: string; n: string }>(
      'SELECT status, count(*)::text AS n FROM orders GROUP BY status',
    )
    assert.deepEqual(statuses, [{ status: 'DELIVERED', n: String(ORDERS) }])

    const { rows: perProcess } = await db.query<{ processed_by: string; n: string }>(
      "SELECT processed_by, count(*)::text AS n FROM payments WHERE status = 'CAPTURED' GROUP BY processed_by ORDER BY 1",
    )
    assert.deepEqual(
      perProcess.map((r) => r.processed_by),
      ['payment-a', 'payment-b'],
      `both payment processes captured payments: ${JSON.stringify(perProcess)}`,
    )
    assert.equal(
      perProcess.reduce((sum, r) => sum + Number(r.n), 0),
      ORDERS,
    )

    let last: { code: number | null; out: string } | undefined
    const report = await waitFor(
      async () => {
        const audit = spawn(node, ['src/cli.ts', 'audit', '--json', '--stuck-after-ms', '0'], {
          cwd: repoRoot,
          env: env({}),
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let out = ''
        audit.stdout?.on('data', (chunk) => {
          out += chunk
        })
        audit.stderr?.on('data', (chunk) => {
          out += chunk
        })
        const [code] = (await once(audit, 'exit')) as [number | null]
        last = { code, out }
        return code === 0 ? (JSON.parse(out) as AuditReport) : null
      },
      {
        timeoutMs: 60_000,
        intervalMs: 500,
        message: () => `npm run orderflow -- audit to be clean: ${last?.code} ${last?.out}`,
      },
    )
    assert.equal(report.orders.delivered, ORDERS)
    assert.ok((report.lag ?? []).length >= 5, `lag read for every group: ${JSON.stringify(report.lag)}`)
    assert.equal(report.money.net, report.money.deliveredTotal)
    process.stdout.write(`# ${ORDERS} orders settled across 6 processes in ${journeyMs} ms\n`)
  })
})
