import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../../src/app.ts'
import { ORDER_EVENTS_TOPIC } from '../../src/contracts/order/events.ts'
import { loadConfig } from '../../src/platform/config.ts'
import { openRuntime } from '../../src/platform/runtime.ts'
import { openPostgres, quoteIdentifier } from '../../src/platform/sql/postgres.ts'
import { selectModules } from '../../src/services.ts'
import { type BenchContext, percentile, say } from './support.ts'

/**
 * `POST /api/orders` at increasing concurrency, on the embedded default (PGlite on disk + the
 * embedded log) and on Kafka + PostgreSQL. The app is `SERVICES=order npm start`'s: `openRuntime`
 * and `buildApp` from the same configuration variables. Client, server, relay and the reading
 * consumer share this one process; the figures are for the whole system on this machine.
 *
 * Commit-to-readable latency is the time the event was read from `order-events` minus its
 * `occurredOn`, which the service stamps just before the transaction commits.
 */

interface LevelResult {
  concurrency: number
  accepted: number
  rejected: number
  ordersPerSecond: number
  httpP50Ms: number
  httpP99Ms: number
  /** Time inside the server, from the request's arrival to the response (Fastify hooks). */
  serverP50Ms: number
  serverP99Ms: number
  commitToReadableP50Ms: number
  commitToReadableP99Ms: number
  eventsSeen: number
}

const body = (i: number) =>
  JSON.stringify({
    customerId: `customer-${i % 50}`,
    restaurantId: 'restaurant-456',
    totalAmount: 45.99,
    items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
  })

const round = (n: number) => Math.round(n * 100) / 100

async function runMode(
  mode: 'embedded' | 'kafka+postgres',
  /** The configuration variables of the mode, and how to remove what it created. */
  open: () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>,
  levels: number[],
  seconds: number,
): Promise<{ mode: string; levels: LevelResult[] }> {
  const { env, cleanup } = await open()
  // The order service alone (SERVICES=order), as before the other services existed: the journey
  // has its own benchmark (`bench -- journey`).
  const config = loadConfig({ LOG_LEVEL: 'silent', SERVICES: 'order', ...env })
  const runtime = await openRuntime(config)
  const { transport } = runtime
  const built = await buildApp(runtime, selectModules(config.services))
  const app = built.http
  // Server-side time, apart from the client's: on one saturated process, requests also queue
  // before the server sees them, and the client-side figure includes that wait.
  let serverLatencies: number[] = []
  const arrivals = new WeakMap<object, number>()
  app.addHook('onRequest', async (request) => {
    arrivals.set(request, performance.now())
  })
  app.addHook('onResponse', async (request) => {
    const arrived = arrivals.get(request)
    if (arrived !== undefined) serverLatencies.push(performance.now() - arrived)
  })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })

  const readAt = new Map<string, number>()
  const subscription = await transport.subscribe({
    groupId: `bench-reader-${Date.now()}`,
    topics: [ORDER_EVENTS_TOPIC],
    handler: async (message) => {
      const event = JSON.parse(message.value) as { eventType: string; occurredOn: string; aggregateId: string }
      if (event.eventType === 'OrderCreated') readAt.set(event.aggregateId, Date.now() - Date.parse(event.occurredOn))
    },
  })
  await subscription.ready

  const results: LevelResult[] = []
  let counter = 0
  for (const concurrency of levels) {
    say(`${mode}: concurrency ${concurrency} for ${seconds} s…`)
    const created: string[] = []
    const httpLatencies: number[] = []
    let rejected = 0
    serverLatencies = []
    const deadline = performance.now() + seconds * 1000
    const started = performance.now()
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < deadline) {
          const t0 = performance.now()
          const response = await fetch(`${address}/api/orders`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: body(counter++),
          })
          const json = (await response.json()) as { id?: string }
          httpLatencies.push(performance.now() - t0)
          if (response.status === 201 && json.id) created.push(json.id)
          else rejected++
        }
      }),
    )
    const elapsed = (performance.now() - started) / 1000
    const waitUntil = Date.now() + 60_000
    while (created.some((id) => !readAt.has(id)) && Date.now() < waitUntil) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const e2e = created.map((id) => readAt.get(id)).filter((v): v is number => v !== undefined)
    httpLatencies.sort((a, b) => a - b)
    serverLatencies.sort((a, b) => a - b)
    e2e.sort((a, b) => a - b)
    const level: LevelResult = {
      concurrency,
      accepted: created.length,
      rejected,
      ordersPerSecond: Math.round(created.length / elapsed),
      httpP50Ms: round(percentile(httpLatencies, 0.5)),
      httpP99Ms: round(percentile(httpLatencies, 0.99)),
      serverP50Ms: round(percentile(serverLatencies, 0.5)),
      serverP99Ms: round(percentile(serverLatencies, 0.99)),
      commitToReadableP50Ms: round(percentile(e2e, 0.5)),
      commitToReadableP99Ms: round(percentile(e2e, 0.99)),
      eventsSeen: e2e.length,
    }
    say(
      `  ${level.ordersPerSecond} orders/s, HTTP p50 ${level.httpP50Ms} ms p99 ${level.httpP99Ms} ms ` +
        `(in the server p50 ${level.serverP50Ms} ms p99 ${level.serverP99Ms} ms), ` +
        `commit→readable p50 ${level.commitToReadableP50Ms} ms p99 ${level.commitToReadableP99Ms} ms ` +
        `(${level.eventsSeen}/${level.accepted} events seen)`,
    )
    results.push(level)
  }
  await subscription.close()
  await built.close()
  await runtime.close()
  await cleanup()
  return { mode, levels: results }
}

export async function benchOrders(
  ctx: BenchContext,
  options: { concurrency: number[]; seconds: number; modes: string[] },
): Promise<Record<string, unknown>> {
  const modes: Array<{ mode: string; levels: LevelResult[] }> = []
  if (options.modes.includes('embedded'))
    modes.push(
      await runMode(
        'embedded',
        async () => {
          const dir = await mkdtemp(join(tmpdir(), 'orderflow-bench-'))
          return {
            env: { DATA_DIR: dir, KAFKA_PARTITIONS: String(ctx.partitions) },
            cleanup: () => rm(dir, { recursive: true, force: true }),
          }
        },
        options.concurrency,
        options.seconds,
      ),
    )
  const database = `bench_orders_${Date.now().toString(36)}`
  if (options.modes.includes('kafka'))
    modes.push(
      await runMode(
        'kafka+postgres',
        async () => {
          // A database of its own, named by DATABASE_URL as in production.
          const admin = openPostgres({ connectionString: ctx.databaseUrl, max: 1 })
          await admin.exec(`CREATE DATABASE ${quoteIdentifier(database)}`)
          const url = new URL(ctx.databaseUrl)
          url.pathname = `/${database}`
          return {
            env: {
              KAFKA_BROKERS: ctx.brokers.join(','),
              KAFKA_CLIENT_ID: 'bench-orders',
              KAFKA_PARTITIONS: String(ctx.partitions),
              KAFKA_CREATE_TOPICS: 'on',
              DATABASE_URL: url.toString(),
            },
            async cleanup() {
              await admin.exec(`DROP DATABASE ${quoteIdentifier(database)} WITH (FORCE)`)
              await admin.close()
            },
          }
        },
        options.concurrency,
        options.seconds,
      ),
    )
  return { benchmark: 'orders', seconds: options.seconds, modes }
}
