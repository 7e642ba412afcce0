import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { kafkaBrokers, testDatabaseUrl, uniqueName, waitFor } from '../test/support/index.ts'
import type { SqlDatabase } from './platform/sql/port.ts'
import { openPostgres, quoteIdentifier } from './platform/sql/postgres.ts'

/**
 * The production rules, on `node src/main.ts` itself: on Kafka + PostgreSQL a process without
 * authentication configured does not start, and names the variables to set; with a shared secret
 * it starts and refuses anonymous calls; AUTH=off starts, loudly. On the embedded default on
 * loopback authentication is off and start-up says how to turn it on; AUTH=dev prints tokens that
 * work.
 */

const repoRoot = join(import.meta.dirname, '..')
const SECRET = 'orderflow-test-secret-of-at-least-32-bytes'

interface Process {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
  url: () => string
}

/** Every process a test started, stopped after the file whatever happened. */
const started = new Set<Process>()
after(async () => {
  await Promise.all([...started].map(stop))
})

function run(env: Record<string, string>): Process {
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', PORT: '0', LOG_LEVEL: 'info', SHUTDOWN_TIMEOUT_MS: '10000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const server: Process = {
    child,
    output: () => output,
    exited,
    url: () => /"address":"(http:\/\/[^"]+)"/.exec(output)?.[1] ?? '',
  }
  started.add(server)
  return server
}

async function listening(server: Process): Promise<string> {
  await waitFor(() => server.url() !== '' || server.child.exitCode !== null, {
    timeoutMs: 60_000,
    message: () => `the server did not start:\n${server.output()}`,
  })
  assert.equal(server.child.exitCode, null, `the server exited at start:\n${server.output()}`)
  return server.url()
}

async function stop(server: Process | undefined): Promise<void> {
  if (!server || server.child.exitCode !== null) return
  server.child.kill('SIGTERM')
  await server.exited
}

const bearer = async (roles: string[], subject = 'alice') => ({
  authorization: `Bearer ${await new SignJWT({ roles })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(subject)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(SECRET))}`,
})

describe('start-up on Kafka + PostgreSQL', () => {
  const databaseName = uniqueName('of_auth')
  const databaseUrl = (() => {
    const url = new URL(testDatabaseUrl)
    url.pathname = `/${databaseName}`
    return url.toString()
  })()
  let admin: SqlDatabase
  let running: Process | undefined
  const shared = () => ({
    KAFKA_BROKERS: kafkaBrokers().join(','),
    DATABASE_URL: databaseUrl,
    KAFKA_TOPIC_PREFIX: `${uniqueName('auth')}.`,
    KAFKA_CREATE_TOPICS: 'on',
    SERVICES: 'order',
  })

  before(async () => {
    admin = openPostgres({ connectionString: testDatabaseUrl, max: 1 })
    await admin.exec(`CREATE DATABASE ${quoteIdentifier(databaseName)}`)
  })
  after(async () => {
    await stop(running)
    await admin?.exec(`DROP DATABASE IF EXISTS ${quoteIdentifier(databaseName)} WITH (FORCE)`)
    await admin?.close()
  })

  it('refuses to start without authentication configured, naming the variables to set', async () => {
    const refused = run(shared())
    assert.equal(await refused.exited, 2, refused.output())
    const output = refused.output()
    assert.match(output, /orderflow cannot start/)
    assert.match(output, /DATABASE_URL is set; KAFKA_BROKERS is set/)
    for (const variable of ['AUTH_JWKS_URL', 'AUTH_ISSUER', 'AUTH_AUDIENCE', 'AUTH_JWT_SECRET', 'AUTH=off']) {
      assert.ok(output.includes(variable), `${variable} is not named in:\n${output}`)
    }
    // It stopped before touching the database.
    const { rows } = await admin.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = $1`,
      [databaseName],
    )
    assert.equal(rows[0]?.n, '0')
  })

  it('starts with a shared secret and refuses anonymous calls', async () => {
    running = run({ ...shared(), AUTH_JWT_SECRET: SECRET })
    const url = await listening(running)
    assert.match(running.output(), /authentication is on: bearer JWTs/)

    const anonymous = await fetch(`${url}/api/orders`)
    assert.equal(anonymous.status, 401)
    assert.match(String(anonymous.headers.get('content-type')), /application\/problem\+json/)
    assert.equal((await fetch(`${url}/metrics`)).status, 401)
    assert.equal((await fetch(`${url}/health`)).status, 200)

    const customer = await bearer(['customer'])
    const created = await fetch(`${url}/api/orders`, {
      method: 'POST',
      headers: { ...customer, 'content-type': 'application/json' },
      body: JSON.stringify({ customerId: 'alice', items: [{ productId: 'p-1', price: 9.99, quantity: 1 }] }),
    })
    assert.equal(created.status, 201, await created.clone().text())
    const order = (await created.json()) as { id: string }
    assert.equal((await fetch(`${url}/api/orders/${order.id}`, { headers: customer })).status, 200)
    assert.equal(
      (await fetch(`${url}/api/orders/${order.id}`, { headers: await bearer(['customer'], 'bob') })).status,
      404,
    )
    assert.equal((await fetch(`${url}/metrics`, { headers: customer })).status, 403)
    assert.equal((await fetch(`${url}/metrics`, { headers: await bearer(['operator'], 'ops') })).status, 200)
    await stop(running)
  })

  it('starts with AUTH=off said on purpose, and warns loudly', async () => {
    running = run({ ...shared(), AUTH: 'off' })
    const url = await listening(running)
    await waitFor(() => running?.output().includes('AUTHENTICATION IS OFF'), {
      message: () => `no warning:\n${running?.output()}`,
    })
    assert.match(
      running.output(),
      /"level":"warn".*AUTH=off: AUTHENTICATION IS OFF although DATABASE_URL is set; KAFKA_BROKERS is set/,
    )
    assert.equal((await fetch(`${url}/api/orders`)).status, 200)
    await stop(running)
  })
})

describe('start-up on the embedded default on loopback', () => {
  let dataDir: string
  let running: Process | undefined
  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'orderflow-auth-'))
  })
  after(async () => {
    await stop(running)
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('runs without authentication and says in one line how to turn it on', async () => {
    running = run({ DATA_DIR: join(dataDir, 'off') })
    const url = await listening(running)
    await waitFor(() => running?.output().includes('authentication is off'), {
      message: () => `no notice:\n${running?.output()}`,
    })
    const notice = running
      .output()
      .split('\n')
      .filter((line) => line.includes('authentication is off'))
    assert.equal(notice.length, 1)
    assert.match(notice[0] ?? '', /AUTH=dev npm start/)
    assert.equal((await fetch(`${url}/api/orders`)).status, 200)
    await stop(running)
  })

  it('prints development tokens with AUTH=dev, which work as printed', async () => {
    running = run({ DATA_DIR: join(dataDir, 'dev'), AUTH: 'dev' })
    const url = await listening(running)
    await waitFor(() => /export OPERATOR_TOKEN=\S+/.test(running?.output() ?? ''), {
      message: () => `no tokens:\n${running?.output()}`,
    })
    const token = (name: string) => new RegExp(`export ${name}=(\\S+)`).exec(running?.output() ?? '')?.[1] ?? ''
    assert.match(
      running.output(),
      /curl -X POST http:\/\/127\.0\.0\.1:\d+\/api\/orders -H "Authorization: Bearer \$CUSTOMER_TOKEN"/,
    )
    assert.equal((await fetch(`${url}/api/orders`)).status, 401)
    const customer = { authorization: `Bearer ${token('CUSTOMER_TOKEN')}` }
    assert.equal((await fetch(`${url}/api/orders`, { headers: customer })).status, 200)
    assert.equal((await fetch(`${url}/metrics`, { headers: customer })).status, 403)
    const operator = { authorization: `Bearer ${token('OPERATOR_TOKEN')}` }
    assert.equal((await fetch(`${url}/metrics`, { headers: operator })).status, 200)
    await stop(running)
  })
})
