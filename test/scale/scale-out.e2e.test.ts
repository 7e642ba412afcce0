import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { Admin } from '@platformatic/kafka'
import { verify, waitForDrain } from '../../scripts/faults/verify.ts'
import { DELIVERY_COMMANDS_GROUP } from '../../src/delivery/index.ts'
import { DISPATCH_COMMANDS_GROUP } from '../../src/dispatch/index.ts'
import { CART_CHECKOUT_GROUP } from '../../src/order/consumers/cart-checkout.ts'
import { ORDER_COMMANDS_GROUP } from '../../src/order/consumers/order-commands.ts'
import { PAYMENT_COMMANDS_GROUP } from '../../src/payment/index.ts'
import { SAGA_GROUP } from '../../src/saga/consumers/saga-inputs.ts'
import {
  freePort,
  kafkaBrokers,
  postgresTestDatabase,
  type TestDatabase,
  testDatabaseUrl,
  uniqueName,
  waitFor,
} from '../support/index.ts'
import { type AssignmentWatch, formatAssignment, settledOn, watchAssignments } from './group-assignments.ts'
import { type OrderLoadResult, startOrderLoad } from './order-load.ts'
import { type OrderflowProcess, orderflowProcess } from './orderflow-process.ts'

/**
 * Scaling out on Kafka + PostgreSQL with real processes (`node src/main.ts`): two "edge" processes
 * (order, cart, customer: the HTTP side) and two "fulfilment" processes (payment, dispatch,
 * delivery, saga), every service twice, on one database schema and one topic prefix.
 *
 * 1. Under load, one edge process is stopped (SIGTERM) and one fulfilment process killed
 *    (SIGKILL); the groups move their partitions to the survivors, both are started again and get
 *    partitions back. Every accepted order ends DELIVERED or CANCELLED and the auditor is clean.
 * 2. A rolling restart of the four, one at a time (SIGTERM, exit, start, ready), under load from
 *    a client that retries on the other instance only when a connection is refused: no 5xx, every
 *    order answered 201, none lost, the auditor clean.
 *
 * The broker's view of the groups (who holds which partitions) is printed before, during and after.
 */

const SHUTDOWN_TIMEOUT_MS = 8_000
const EDGE_GROUPS = [ORDER_COMMANDS_GROUP, CART_CHECKOUT_GROUP]
const FULFILMENT_GROUPS = [PAYMENT_COMMANDS_GROUP, DISPATCH_COMMANDS_GROUP, DELIVERY_COMMANDS_GROUP, SAGA_GROUP]
const TERMINAL = new Set(['DELIVERED', 'CANCELLED'])

/** A line of a process's log (pino), with the fields this test reads. */
interface LogEntry {
  process: string
  time?: string | number
  pid?: number
  level?: string | number
  msg?: string
  err?: { code?: string; message?: string }
  holder?: string
  shard?: number
  waitMs?: number
}

describe('scale-out on Kafka + PostgreSQL: two processes of every service', () => {
  const brokers = kafkaBrokers()
  const prefix = `${uniqueName('scale')}.`
  let testDb: TestDatabase
  let logDir: string
  let watch: AssignmentWatch | undefined
  let edgeA: OrderflowProcess
  let edgeB: OrderflowProcess
  let fulfilmentA: OrderflowProcess
  let fulfilmentB: OrderflowProcess
  const all = () => [edgeA, edgeB, fulfilmentA, fulfilmentB].filter(Boolean)
  let passed = 0

  before(async () => {
    testDb = await postgresTestDatabase('of_scale')
    const { rows } = await testDb.db.query<{ schema: string }>('SELECT current_schema() AS schema')
    // The processes use the test's schema the way postgresTestDatabase's pools do: search_path first.
    const databaseUrl = new URL(testDatabaseUrl)
    databaseUrl.searchParams.set('options', `-c search_path="${rows[0]?.schema}",public`)
    logDir = await mkdtemp(join(tmpdir(), 'orderflow-scale-'))
    const env = (services: string, name: string): Record<string, string> => ({
      KAFKA_BROKERS: brokers.join(','),
      DATABASE_URL: databaseUrl.toString(),
      KAFKA_TOPIC_PREFIX: prefix,
      SERVICES: services,
      SAGA_MODE: 'orchestration',
      // Kafka and PostgreSQL count as exposure: off on purpose, the load client carries no tokens.
      AUTH: 'off',
      RATE_LIMIT: 'off',
      LOG_LEVEL: 'info',
      DELIVERY_DELAY_MS: '100',
      PAYMENT_GATEWAY_LATENCY_MS: '0',
      PAYMENT_INSTANCE_ID: name,
      SCHEDULER_POLL_INTERVAL_MS: '250',
      KAFKA_RETRY_BACKOFF_MS: '100',
      // One key file for the deployment, as several processes need; DATA_DIR only places it.
      DATA_DIR: join(logDir, 'data'),
      PERSONAL_DATA_KEY_FILE: join(logDir, 'personal-data.key'),
    })
    const make = async (name: string, services: string) =>
      orderflowProcess({
        name,
        port: await freePort(),
        env: env(services, name),
        logDir,
        shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS,
      })
    // As a deployment does (compose's one-shot setup): the topics are applied before any service
    // starts, and the services may not create topics (KAFKA_CREATE_TOPICS is off by default).
    const applied = spawnSync(process.execPath, ['src/cli.ts', 'topics', 'apply'], {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, ...env('', 'topics') },
      encoding: 'utf8',
      timeout: 120_000,
    })
    assert.equal(applied.status, 0, `topics apply failed:\n${applied.stdout}\n${applied.stderr}`)
    edgeA = await make('edge-a', 'order,cart,customer')
    edgeB = await make('edge-b', 'order,cart,customer')
    fulfilmentA = await make('fulfil-a', 'payment,dispatch,delivery,saga')
    fulfilmentB = await make('fulfil-b', 'payment,dispatch,delivery,saga')
    await Promise.all(all().map((p) => p.start()))
    watch = watchAssignments({ brokers, prefix })
  })

  after(async () => {
    await watch?.stop()
    await Promise.allSettled(all().map((p) => (p.running() ? p.stop() : undefined)))
    const admin = new Admin({ clientId: 'scale-test-cleanup', bootstrapBrokers: brokers, requestTimeout: 10_000 })
    try {
      const groups = [...(await admin.listGroups()).keys()].filter((g) => g.startsWith(prefix))
      if (groups.length > 0) await admin.deleteGroups({ groups }).catch(() => {})
      const topics = (await admin.listTopics()).filter((name) => name.startsWith(prefix))
      if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {})
    } catch {
      // The broker's leftovers are named by the prefix and harm no other test.
    } finally {
      await admin.close().catch(() => {})
    }
    await testDb?.cleanup()
    if (passed === 2) await rm(logDir, { recursive: true, force: true })
    else if (logDir) process.stdout.write(`# the processes' logs are kept in ${logDir}\n`)
  })

  /** Every group of the journey stable on exactly these processes, each holding partitions. */
  const groupsSettled = (what: string, edges: OrderflowProcess[], fulfilments: OrderflowProcess[]) => {
    const expected = [
      ...EDGE_GROUPS.map((g) => [g, edges.map((p) => p.clientId())] as const),
      ...FULFILMENT_GROUPS.map((g) => [g, fulfilments.map((p) => p.clientId())] as const),
    ]
    return waitFor(() => expected.every(([group, owners]) => settledOn(watch?.latest().get(group), owners)), {
      timeoutMs: 45_000,
      intervalMs: 100,
      message: () =>
        `the consumer groups to settle ${what}: ${expected
          .map(([g, owners]) => `\n  ${g} (wanted ${owners.join(' + ')}): ${formatAssignment(watch?.latest().get(g))}`)
          .join('')}`,
    })
  }

  /** Waits for the drain, verifies everything accepted, and prints and asserts what was found. */
  const verifyNothingLost = async (t: TestContext, load: OrderLoadResult) => {
    const drain = await waitForDrain({ db: testDb.db, brokers, prefix, timeoutMs: 90_000 }, (line) =>
      t.diagnostic(line),
    )
    assert.notEqual(
      drain.drainMs,
      null,
      `every order settled, the outbox empty and the auditor clean within 90 s; last: ${drain.last}`,
    )
    const { rows } = await testDb.db.query<{ status: string; n: string }>(
      'SELECT status, count(*)::text AS n FROM orders WHERE id = ANY($1::text[]) GROUP BY status ORDER BY status',
      [load.accepted],
    )
    const statuses = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]))
    t.diagnostic(`drained in ${drain.drainMs} ms; accepted orders by status: ${JSON.stringify(statuses)}`)
    const verification = await verify({ db: testDb.db, brokers, prefix, accepted: load.accepted })
    t.diagnostic(
      `verified: ${verification.found}/${verification.accepted} accepted orders in the database and on order-events, ` +
        `${verification.duplicates} duplicate deliveries on the wire, audit ${verification.audit.ok ? 'clean' : verification.audit.failed.join('; ')}`,
    )
    assert.deepEqual(verification.problems, [], 'nothing accepted was lost, nothing out of order, the auditor clean')
    assert.equal(
      Object.entries(statuses)
        .filter(([status]) => TERMINAL.has(status))
        .reduce((sum, [, n]) => sum + n, 0),
      new Set(load.accepted).size,
      `every accepted order is DELIVERED or CANCELLED: ${JSON.stringify(statuses)}`,
    )
  }

  /** The log entries of every process (pino JSON lines), each with the process's name. */
  const logEntries = (): LogEntry[] =>
    all().flatMap((p) =>
      readFileSync(p.logFile, 'utf8')
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => ({ ...(JSON.parse(line) as Omit<LogEntry, 'process'>), process: p.name })),
    )

  /** Who holds which shards of the outbox relay's lease: each holder's process, found in the logs. */
  const relayShards = async () => {
    const { rows } = await testDb.db.query<{ holder: string; shards: number[]; live: boolean }>(
      `SELECT holder, array_agg(id ORDER BY id) AS shards, bool_and(expires_at > now()) AS live
         FROM outbox_relay_lease GROUP BY holder ORDER BY holder`,
    )
    const entries = logEntries()
    const holders = rows.map((r) => {
      const entry = entries.find((e) => e.holder === r.holder)
      return {
        ...r,
        owner: entry ? `${entry.process} (pid ${entry.pid})` : r.holder || '(nobody)',
        process: entry?.process,
      }
    })
    const text = holders.map((h) => `${h.owner}: ${h.shards.join(',')}${h.live ? '' : ' (expired)'}`).join(' | ')
    return { holders, text }
  }

  /** The relay's takeovers of a dead holder's shards logged since `since` (epoch ms). */
  const relayTakeovers = (since: number) =>
    logEntries()
      .map((e) => ({ ...e, at: typeof e.time === 'number' ? e.time : Date.parse(String(e.time)) }))
      .filter((e) => String(e.msg).startsWith('outbox relay took over an expired shard') && e.at >= since)
      .map(
        (e) =>
          `${e.process} (pid ${e.pid}) took over shard ${e.shard} ${((e.at - since) / 1000).toFixed(1)} s after the SIGKILL, waiting ${e.waitMs} ms before publishing`,
      )

  const describeLoad = (load: OrderLoadResult) =>
    `${load.attempted} orders sent, ${load.accepted.length} accepted (201); answers ${JSON.stringify(load.answers)}; ` +
    `sent again to the other instance after a refused or closed connection: ${JSON.stringify(load.retried)}, ` +
    `of which answered as already placed: ${load.replayed}`

  /** What the processes logged at warn or above since `since` (epoch ms), counted per process and message. */
  const warnings = (since: number) => {
    const counts = new Map<string, number>()
    for (const e of logEntries()) {
      const at = typeof e.time === 'number' ? e.time : Date.parse(String(e.time))
      if (at < since || !['warn', 'error', 'fatal'].includes(String(e.level)) || e.msg?.startsWith('AUTH=off')) continue
      const what = `${e.process} ${e.level}: ${e.msg}${e.err ? ` (${e.err.code ?? ''} ${e.err.message ?? ''})` : ''}`
      counts.set(what, (counts.get(what) ?? 0) + 1)
    }
    return [...counts].map(([what, n]) => `${n}× ${what}`)
  }

  it('SIGTERM one edge process and SIGKILL one fulfilment process under load, start both again: nothing lost', async (t) => {
    const startedAt = Date.now()
    const w = watch as AssignmentWatch
    await groupsSettled('on all four processes', [edgeA, edgeB], [fulfilmentA, fulfilmentB])
    // A deployment that has been running: every relay holds its share of the outbox's shards, so
    // the SIGKILL strands some (a graceful stop hands them over; a killed holder's lease runs out).
    const spread = await waitFor(
      async () => {
        const shards = await relayShards()
        const owners = new Set(shards.holders.filter((h) => h.live).map((h) => h.process))
        return all().every((p) => owners.has(p.name)) ? shards : null
      },
      {
        timeoutMs: 60_000,
        intervalMs: 500,
        message:
          "the outbox relay's shards to spread over all four processes (a relay takes its share within about 30 s)",
      },
    )
    t.diagnostic(`outbox relay shards before the faults: ${spread.text}`)
    const from = w.elapsedMs()
    const load = startOrderLoad({ targets: [edgeA.url, edgeB.url], ratePerSecond: 20, tag: uniqueName('out') })
    await waitFor(() => load.accepted() >= 40, {
      timeoutMs: 20_000,
      message: () => `40 orders accepted before the faults (${load.accepted()})`,
    })

    const killedAt = Date.now()
    const [edgeExit, fulfilmentExit] = await Promise.all([edgeA.stop(), fulfilmentB.kill()])
    const faultAt = w.elapsedMs()
    t.diagnostic(
      `+${((faultAt - from) / 1000).toFixed(1)} s: ${edgeA.name} SIGTERM → exit ${edgeExit.code ?? edgeExit.signal} in ${edgeExit.tookMs} ms; ${fulfilmentB.name} SIGKILL`,
    )
    assert.equal(fulfilmentExit.signal, 'SIGKILL')
    assert.deepEqual(
      { code: edgeExit.code, signal: edgeExit.signal },
      { code: 0, signal: null },
      `${edgeA.name} stopped gracefully within SHUTDOWN_TIMEOUT_MS:\n${edgeA.logTail()}`,
    )
    // The survivors take every partition over: at once for the member that left (SIGTERM), after
    // the session timeout (10 s) for the one that died (SIGKILL).
    await groupsSettled('on the survivors', [edgeB], [fulfilmentA])
    const survivorsAt = w.elapsedMs()
    t.diagnostic(
      `+${((survivorsAt - from) / 1000).toFixed(1)} s: every group settled on ${edgeB.clientId()} and ${fulfilmentA.clientId()}`,
    )

    const [edgeReadyMs, fulfilmentReadyMs] = await Promise.all([edgeA.start(), fulfilmentB.start()])
    t.diagnostic(
      `started again: ${edgeA.clientId()} ready in ${edgeReadyMs} ms, ${fulfilmentB.clientId()} in ${fulfilmentReadyMs} ms`,
    )
    await groupsSettled('on the survivors and the restarted processes', [edgeA, edgeB], [fulfilmentA, fulfilmentB])
    const acceptedThen = load.accepted()
    await waitFor(() => load.accepted() >= acceptedThen + 30, {
      timeoutMs: 20_000,
      message: () => `30 more orders accepted after the restarts (${load.accepted() - acceptedThen})`,
    })
    const result = await load.stop()
    t.diagnostic(describeLoad(result))
    t.diagnostic('partitions per consumer group (broker view; member = process-incarnation):')
    for (const line of w.describeSince(from)) t.diagnostic(line)

    assert.deepEqual(result.serverErrors, [], 'no request was answered with a 5xx')
    assert.deepEqual(result.unanswered, [], 'every request was answered by one of the two instances')
    assert.equal(result.replayed, 0, 'no stopping instance placed an order and then closed the connection unanswered')
    try {
      await verifyNothingLost(t, result)
    } finally {
      for (const line of relayTakeovers(killedAt)) t.diagnostic(line)
      t.diagnostic(`outbox relay shards after the drain: ${(await relayShards()).text}`)
      for (const line of warnings(startedAt)) t.diagnostic(`logged: ${line}`)
    }
    passed++
  })

  it('a rolling restart of every process under load behind two HTTP instances: no 5xx, nothing lost', async (t) => {
    const startedAt = Date.now()
    const w = watch as AssignmentWatch
    for (const p of all()) if (!p.running()) await p.start()
    await groupsSettled('before the rolling restart', [edgeA, edgeB], [fulfilmentA, fulfilmentB])
    const from = w.elapsedMs()
    const load = startOrderLoad({ targets: [edgeA.url, edgeB.url], ratePerSecond: 20, tag: uniqueName('rolling') })
    await waitFor(() => load.accepted() >= 30, {
      timeoutMs: 20_000,
      message: () => `30 orders accepted before the restarts (${load.accepted()})`,
    })

    for (const p of [edgeA, edgeB, fulfilmentA, fulfilmentB]) {
      const stopped = p.clientId()
      const exit = await p.stop()
      assert.deepEqual(
        { code: exit.code, signal: exit.signal },
        { code: 0, signal: null },
        `${stopped} stopped gracefully within SHUTDOWN_TIMEOUT_MS:\n${p.logTail()}`,
      )
      const readyMs = await p.start()
      // The procedure: the next process only once the groups have settled on this one again.
      await groupsSettled(`after restarting ${p.name}`, [edgeA, edgeB], [fulfilmentA, fulfilmentB])
      t.diagnostic(
        `+${((w.elapsedMs() - from) / 1000).toFixed(1)} s: ${stopped} → ${p.clientId()}: stopped in ${exit.tookMs} ms, ready in ${readyMs} ms, groups settled`,
      )
    }
    const acceptedThen = load.accepted()
    await waitFor(() => load.accepted() >= acceptedThen + 30, {
      timeoutMs: 20_000,
      message: () => `30 more orders accepted after the restarts (${load.accepted() - acceptedThen})`,
    })
    const result = await load.stop()
    t.diagnostic(describeLoad(result))
    t.diagnostic('partitions per consumer group (broker view; member = process-incarnation):')
    for (const line of w.describeSince(from)) t.diagnostic(line)

    assert.deepEqual(result.serverErrors, [], 'no request was answered with a 5xx during the rolling restart')
    assert.deepEqual(result.unanswered, [], 'every request was answered by one of the two instances')
    assert.equal(result.replayed, 0, 'no stopping instance placed an order and then closed the connection unanswered')
    assert.deepEqual(
      Object.keys(result.answers),
      ['201'],
      `every order was accepted: ${JSON.stringify(result.answers)}`,
    )
    try {
      await verifyNothingLost(t, result)
    } finally {
      for (const line of warnings(startedAt)) t.diagnostic(`logged: ${line}`)
    }
    passed++
  })
})
