import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../../src/app.ts'
import { ORDER_EVENTS_TOPIC } from '../../src/contracts/order/events.ts'
import { loadConfig } from '../../src/platform/config.ts'
import { openRuntime } from '../../src/platform/runtime.ts'
import { openPostgres, quoteIdentifier } from '../../src/platform/sql/postgres.ts'
import { selectModules } from '../../src/services.ts'
import { benchOrders } from './orders.ts'
import { type BenchContext, percentile, say } from './support.ts'

/**
 * The whole journey: POST /api/orders until the order is DELIVERED, through payment, dispatch and
 * delivery, per saga mode (orchestration, choreography) and per transport (embedded, Kafka +
 * PostgreSQL). Every service, the load generator and the reader of `order-events` share one
 * process, as in `npm start`; the gateway answers at once and delivery is due at once
 * (PAYMENT_GATEWAY_LATENCY_MS=0, DELIVERY_DELAY_MS=0), so what is measured is orderflow's own cost.
 *
 * - At fixed offered rates (open loop: a request every 1/rate s whatever the answers): p50 and p99
 *   from the POST to DELIVERED being read from `order-events`.
 * - At saturation (an offered rate above what the machine sustains): orders/s reaching DELIVERED.
 * - `bench -- orders` at concurrency 64 in the same run and on the same transport, for the ratio.
 */

export interface JourneyOptions {
  rates: number[]
  seconds: number
  saturationRate: number
  modes: string[]
  transports: string[]
  /**
   * Where the services run (`server` and `split`: Kafka only):
   * - `one`: all in the bench's process, beside the load generator and the reader (the default);
   * - `server`: all in one process of `src/main.ts`, as `npm start` runs them, the load generator
   *   and the reader in the bench's;
   * - `split`: two processes of `src/main.ts` (order and saga | payment, dispatch and delivery).
   */
  processes?: ProcessLayout
}

interface RateResult {
  offeredPerSecond: number
  accepted: number
  delivered: number
  cancelled: number
  /** Orders reaching DELIVERED per second, from the first POST to the last delivery. */
  deliveredPerSecond: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /**
   * On PostgreSQL: the transactions committed while the orders of this phase ran (from just before
   * its first POST until its last order ended, and the statistics were flushed), per order that
   * ended. Counted by PostgreSQL, it moves little with the machine's load: below saturation, where
   * nothing batches, it is what one order costs the database.
   */
  transactionsPerOrder?: number
}

const round = (n: number) => Math.round(n * 10) / 10

const body = (i: number) =>
  JSON.stringify({
    customerId: `customer-${i % 50}`,
    items: [{ productId: `product-${i % 7}`, price: 12.5, quantity: 1 }],
  })

async function runJourney(
  ctx: BenchContext,
  transport: 'embedded' | 'kafka',
  mode: 'orchestration' | 'choreography',
  options: JourneyOptions,
): Promise<{
  transport: string
  mode: string
  rates: RateResult[]
  saturation: RateResult
  transactionsPerOrder?: number
}> {
  const run = `bench_journey_${Date.now().toString(36)}`
  let cleanup: () => Promise<void>
  let env: Record<string, string>
  if (transport === 'embedded') {
    const dir = await mkdtemp(join(tmpdir(), 'orderflow-journey-'))
    env = { DATA_DIR: dir }
    cleanup = () => rm(dir, { recursive: true, force: true })
  } else {
    const admin = openPostgres({ connectionString: ctx.databaseUrl, max: 1 })
    await admin.exec(`CREATE DATABASE ${quoteIdentifier(run)}`)
    const url = new URL(ctx.databaseUrl)
    url.pathname = `/${run}`
    // Each run's topics are new (its prefix): the app creates them, as a developer's would.
    env = {
      KAFKA_BROKERS: ctx.brokers.join(','),
      DATABASE_URL: url.toString(),
      KAFKA_TOPIC_PREFIX: `${run}.`,
      KAFKA_CREATE_TOPICS: 'on',
    }
    cleanup = async () => {
      await admin.exec(`DROP DATABASE ${quoteIdentifier(run)} WITH (FORCE)`)
      await admin.close()
    }
  }
  // The services' configuration, in this process or in the split's (which run only some of them).
  const servicesEnv = {
    LOG_LEVEL: 'silent',
    SAGA_MODE: mode,
    SERVICES: 'order,payment,dispatch,delivery,saga',
    PAYMENT_GATEWAY_LATENCY_MS: '0',
    DELIVERY_DELAY_MS: '0',
    KAFKA_PARTITIONS: String(ctx.partitions),
    ...env,
  }
  const config = loadConfig(servicesEnv)
  const runtime = await openRuntime(config)
  let address: string
  let stopServices: () => Promise<void>
  if (options.processes === 'split' || options.processes === 'server') {
    const services = await startProcesses(LAYOUTS[options.processes], servicesEnv)
    address = services.address
    stopServices = services.stop
  } else {
    const app = await buildApp(runtime, selectModules(config.services))
    address = await app.http.listen({ host: '127.0.0.1', port: 0 })
    stopServices = () => app.close()
  }

  const postedAt = new Map<string, number>()
  const endedAt = new Map<string, { at: number; status: string }>()
  const reader = await runtime.transport.subscribe({
    groupId: `${run}-reader`,
    topics: [ORDER_EVENTS_TOPIC],
    handler: async (message) => {
      const event = JSON.parse(message.value) as { eventType: string; to?: string }
      if (event.eventType === 'OrderStatusChanged' && event.to === 'DELIVERED') {
        endedAt.set(message.key, { at: performance.now(), status: 'DELIVERED' })
      } else if (event.eventType === 'OrderCancelled') {
        endedAt.set(message.key, { at: performance.now(), status: 'CANCELLED' })
      }
    },
  })
  await reader.ready

  let counter = 0
  const offer = async (rate: number, seconds: number): Promise<RateResult> => {
    const ids: string[] = []
    const inFlight: Promise<void>[] = []
    const started = performance.now()
    const total = Math.round(rate * seconds)
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / rate
      const wait = due - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      const sentAt = performance.now()
      inFlight.push(
        fetch(`${address}/api/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: body(counter++),
        })
          .then(async (response) => {
            const json = (await response.json()) as { id?: string }
            if (response.status === 201 && json.id) {
              postedAt.set(json.id, sentAt)
              ids.push(json.id)
            }
          })
          .catch(() => {}),
      )
    }
    await Promise.all(inFlight)
    const deadline = performance.now() + 120_000
    while (ids.some((id) => !endedAt.has(id)) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const latencies = ids
      .map((id) => {
        const end = endedAt.get(id)
        const start = postedAt.get(id)
        return end?.status === 'DELIVERED' && start !== undefined ? end.at - start : undefined
      })
      .filter((v): v is number => v !== undefined)
      .sort((a, b) => a - b)
    const lastEnd = Math.max(...ids.map((id) => endedAt.get(id)?.at ?? 0))
    return {
      offeredPerSecond: rate,
      accepted: ids.length,
      delivered: latencies.length,
      cancelled: ids.filter((id) => endedAt.get(id)?.status === 'CANCELLED').length,
      deliveredPerSecond: Math.round((latencies.length * 1000) / Math.max(1, lastEnd - started)),
      p50Ms: round(percentile(latencies, 0.5)),
      p99Ms: round(percentile(latencies, 0.99)),
      maxMs: round(latencies.at(-1) ?? Number.NaN),
    }
  }

  // Where the time goes on PostgreSQL: transactions committed (each statement outside a transaction
  // is one). Backends flush their statistics about every second: read after a pause.
  const commits = async () => {
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const { rows } = await runtime.db.query<{ commits: string }>(
      'SELECT xact_commit::text AS commits FROM pg_stat_database WHERE datname = current_database()',
    )
    return Number(rows[0]?.commits ?? 0)
  }
  /** Transactions per order of the phase that began at `commitsBefore` with `endedBefore` orders ended. */
  const perOrder = async (commitsBefore: number, endedBefore: number) => {
    const commitsAfter = await commits()
    return { commitsAfter, perOrder: round((commitsAfter - commitsBefore) / Math.max(1, endedAt.size - endedBefore)) }
  }
  // A short warm-up: connections, JIT, topic creation and group joins are not the journey.
  await offer(20, 1)
  let commitsBefore = transport === 'kafka' ? await commits() : 0
  const rates: RateResult[] = []
  for (const rate of options.rates) {
    say(`${transport}/${mode}: ${rate} orders/s offered for ${options.seconds} s…`)
    const endedBefore = endedAt.size
    const result = await offer(rate, options.seconds)
    let cost = ''
    if (transport === 'kafka') {
      const counted = await perOrder(commitsBefore, endedBefore)
      commitsBefore = counted.commitsAfter
      result.transactionsPerOrder = counted.perOrder
      cost = `, ${counted.perOrder} PostgreSQL transactions per order`
    }
    say(
      `  ${result.delivered}/${result.accepted} delivered, ${result.deliveredPerSecond}/s, POST → DELIVERED p50 ${result.p50Ms} ms p99 ${result.p99Ms} ms${cost}`,
    )
    rates.push(result)
  }
  say(`${transport}/${mode}: saturation, ${options.saturationRate} orders/s offered for ${options.seconds} s…`)
  const ended = endedAt.size
  const saturation = await offer(options.saturationRate, options.seconds)
  say(
    `  ${saturation.delivered}/${saturation.accepted} delivered, ${saturation.deliveredPerSecond}/s sustained, p50 ${saturation.p50Ms} ms p99 ${saturation.p99Ms} ms`,
  )
  let transactionsPerOrder: number | undefined
  if (transport === 'kafka') {
    const { commitsAfter, perOrder: atSaturation } = await perOrder(commitsBefore, ended)
    saturation.transactionsPerOrder = atSaturation
    // The whole run's (set-up, warm-up, every rate and the pauses between them, per order that
    // ended): the figure printed before the saturation phase had one of its own.
    transactionsPerOrder = round(commitsAfter / Math.max(1, endedAt.size))
    say(
      `  ${saturation.transactionsPerOrder} PostgreSQL transactions per order at saturation; ${transactionsPerOrder} over the whole run (set-up, polls and the slower rates included)`,
    )
  }
  await reader.close()
  await stopServices()
  await runtime.close()
  await cleanup()
  return {
    transport,
    mode,
    ...(options.processes && options.processes !== 'one' ? { processes: options.processes } : {}),
    rates,
    saturation,
    ...(transactionsPerOrder ? { transactionsPerOrder } : {}),
  }
}

export type ProcessLayout = 'one' | 'server' | 'split'

/** The processes of `src/main.ts` that run the services, for the layouts that are not `one`. */
const LAYOUTS: Record<Exclude<ProcessLayout, 'one'>, { name: string; services: string }[]> = {
  // As `npm start` runs them, with the clients (the load generator, the reader) elsewhere.
  server: [{ name: 'server', services: 'order,payment,dispatch,delivery,saga' }],
  // As production may split them.
  split: [
    { name: 'order', services: 'order,saga' },
    { name: 'fulfilment', services: 'payment,dispatch,delivery' },
  ],
}

async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  if (!address || typeof address === 'string') throw new Error('no free port')
  return address.port
}

/**
 * Starts the journey's services as processes of `src/main.ts` on the bench's database and topics,
 * one after the other (the first applies the migrations), each ready when its `/health/ready`
 * answers 200. The first (the one with the order service) takes the orders: its address is returned.
 */
async function startProcesses(
  layout: readonly { name: string; services: string }[],
  env: Record<string, string>,
): Promise<{ address: string; stop: () => Promise<void> }> {
  const main = fileURLToPath(new URL('../../src/main.ts', import.meta.url))
  const children: ChildProcess[] = []
  const stop = async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = once(child, 'exit')
        child.kill('SIGTERM')
        await exited
      }),
    )
  }
  try {
    const addresses: string[] = []
    for (const { name, services } of layout) {
      const port = await freePort()
      const child = spawn(process.execPath, [main], {
        env: {
          PATH: process.env.PATH ?? '',
          ...env,
          SERVICES: services,
          PORT: String(port),
          HOST: '127.0.0.1',
          // Its own process on the bench's loopback: the bench's requests carry no token.
          AUTH: 'off',
          LOG_LEVEL: 'error',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      // Its last lines, for the error when it exits before it is ready.
      const output: string[] = []
      const keep = (chunk: Buffer) => {
        output.push(...chunk.toString().split('\n').filter(Boolean))
        output.splice(0, output.length - 50)
      }
      child.stdout?.on('data', keep)
      child.stderr?.on('data', keep)
      children.push(child)
      const address = `http://127.0.0.1:${port}`
      const deadline = performance.now() + 120_000
      for (;;) {
        if (child.exitCode !== null) throw new Error(`the ${name} process exited: ${output.slice(-10).join('\n')}`)
        const ready = await fetch(`${address}/health/ready`).then(
          (response) => response.status === 200,
          () => false,
        )
        if (ready) break
        if (performance.now() > deadline) throw new Error(`the ${name} process is not ready after 120 s`)
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      say(`  ${name} process (${services}) ready at ${address}`)
      addresses.push(address)
    }
    return { address: addresses[0] as string, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

export async function benchJourney(ctx: BenchContext, options: JourneyOptions): Promise<Record<string, unknown>> {
  const runs = []
  const baseline: Record<string, number> = {}
  for (const transport of options.transports as Array<'embedded' | 'kafka'>) {
    // The baseline of the same run: the order service alone, closed loop at concurrency 64.
    const orders = await benchOrders(ctx, { concurrency: [64], seconds: options.seconds, modes: [transport] })
    const level = (orders.modes as Array<{ levels: Array<{ ordersPerSecond: number }> }>)[0]?.levels[0]
    baseline[transport] = level?.ordersPerSecond ?? Number.NaN
    for (const mode of options.modes as Array<'orchestration' | 'choreography'>) {
      const result = await runJourney(ctx, transport, mode, options)
      runs.push({
        ...result,
        ordersBaselinePerSecond: baseline[transport],
        ratioToOrders:
          Math.round((result.saturation.deliveredPerSecond / (baseline[transport] ?? Number.NaN)) * 100) / 100,
      })
    }
  }
  return { benchmark: 'journey', seconds: options.seconds, runs }
}
