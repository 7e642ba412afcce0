import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startOrderService, type TestOrderService } from '../../test/support/app.ts'
import {
  follow,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../test/support/index.ts'
import { migrateModules } from '../app.ts'
import { ORDER_EVENTS_TOPIC } from '../contracts/order/events.ts'
import { isAppError } from '../platform/errors.ts'
import { type Progress, rebuildProjection } from '../platform/es/projections.ts'
import {
  createReplayJob,
  getReplayJob,
  REPLAY_HEADER,
  REPLAY_JOB_HEADER,
  type ReplayProgress,
  runReplayJob,
} from '../platform/es/replay.ts'
import { readAll, START_POSITION, type StoredEvent } from '../platform/eventstore/event-store.ts'
import { createLogger } from '../platform/logger.ts'
import { lockDataDir } from '../platform/sql/data-dir-lock.ts'
import { openPglite } from '../platform/sql/pglite.ts'
import type { SqlDatabase, SqlExecutor } from '../platform/sql/port.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import type { IncomingMessage, Subscription, Transport } from '../platform/transport/port.ts'
import { createOrderStore } from './application/order-store.ts'
import { orderReadModel, queryOrders } from './application/read-model.ts'
import type { OrderCommand } from './domain/order.ts'
import { orderModule, orderReplaySource } from './index.ts'

/**
 * Replay and read-model rebuild, on PGlite and on PostgreSQL with the embedded transport; then the
 * commands themselves (`npm run orderflow -- replay | rebuild-read-model`), spawned through the
 * orderflow entry point as an operator runs them against the embedded database.
 */

const logger = createLogger({ level: 'silent' })
const retry = { max: 0, backoffMs: 1 }

const createOrder = (orderId: string, customerId = 'customer-1'): OrderCommand => ({
  commandType: 'CreateOrder',
  orderId,
  customerId,
  items: [{ productId: 'p1', price: 1000, quantity: 1 }],
  currency: 'USD',
})

const replayedBy = (seen: IncomingMessage[], jobId: string) =>
  seen.filter((m) => m.headers[REPLAY_JOB_HEADER] === jobId)

const eventIdOf = (m: IncomingMessage) => String((JSON.parse(m.value) as { eventId: unknown }).eventId)

async function rowCount(db: SqlDatabase, table: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`)
  return Number(rows[0]?.n ?? 0)
}

/**
 * Uses up transaction ids until they gain a digit, when that is near (a fresh PGlite is in the
 * hundreds; a PostgreSQL server is usually far from the next power of ten). Events on both sides
 * catch a reader that orders transaction ids as text, where '1000' sorts before '999'.
 */
async function crossDigitBoundary(db: SqlDatabase): Promise<void> {
  const current = async () => {
    const { rows } = await db.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')
    return BigInt(rows[0]?.xid ?? 0)
  }
  const start = await current()
  const boundary = 10n ** BigInt(start.toString().length)
  if (boundary - start > 2000n) return
  while ((await current()) < boundary) {}
}

function replaySuite(name: string, open: () => Promise<TestDatabase>) {
  describe(`replay and read-model rebuild on ${name}`, () => {
    let database: TestDatabase
    let db: SqlDatabase
    let transport: Transport
    let service: TestOrderService | undefined
    let reader: { seen: IncomingMessage[]; sub: Subscription }
    let now = new Date('2025-01-01T10:00:00.000Z')
    // Orders on three days, each created at 10:00 and the first two confirmed at 11:00.
    const orders = [uniqueName('order_a'), uniqueName('order_b'), uniqueName('order_c')] as const
    let allEvents: StoredEvent[] = []

    before(async () => {
      database = await open()
      db = database.db
      transport = await createEmbeddedTransport({ db, partitions: 3, pollIntervalMs: 50 })
      service = await startOrderService({ db, transport, logger, retry, clock: () => now })
      for (const [day, orderId] of orders.entries()) {
        if (day === 2) await crossDigitBoundary(db)
        now = new Date(`2025-01-0${day + 1}T10:00:00.000Z`)
        await service.store.execute(createOrder(orderId, `customer-${day}`))
        if (day < 2) {
          now = new Date(`2025-01-0${day + 1}T11:00:00.000Z`)
          await service.store.execute({ commandType: 'ConfirmOrder', orderId, paymentId: `payment-${day}` })
        }
      }
      reader = await follow(transport, ORDER_EVENTS_TOPIC, 'replay_reader')
      // The originals reach the topic through the outbox; replays are compared with them.
      await waitFor(() => reader.seen.filter((m) => !m.headers[REPLAY_HEADER]).length === 5, {
        message: () => `the outbox published ${reader.seen.length} of 5 events`,
      })
      await service.projection.catchUp()
      // Replay and rebuild are operator jobs run with the server stopped (the embedded database is
      // single-process); a live projection would also project the rebuild's events.
      await service.stop()
      service = undefined
      allEvents = await readAll(db, { after: START_POSITION, limit: 100 })
      assert.equal(allEvents.length, 5)
    })

    after(async () => {
      await reader?.sub.close()
      await service?.stop()
      await transport?.close()
      await database?.cleanup()
    })

    it("re-publishes one order's events in version order, as the outbox did plus the replay header, writing nothing else", async () => {
      const orderId = orders[0]
      const [outboxBefore, eventsBefore] = [await rowCount(db, 'outbox'), await rowCount(db, 'es_events')]
      const job = await createReplayJob(db, orderReplaySource, { kind: 'stream', streamId: orderId })
      assert.equal(job.total, 2)
      const done = await runReplayJob({ db, transport, source: orderReplaySource }, job.id)
      assert.equal(done.status, 'completed')
      assert.equal(done.done, 2)
      assert.equal(done.total, 2)

      const replayed = await waitFor(
        () => (replayedBy(reader.seen, job.id).length === 2 ? replayedBy(reader.seen, job.id) : null),
        {
          message: () => `saw ${replayedBy(reader.seen, job.id).length} of 2 replayed events`,
        },
      )
      assert.deepEqual(
        replayed.map((m) => [
          m.key,
          (JSON.parse(m.value) as { eventType: string }).eventType,
          (JSON.parse(m.value) as { version: number }).version,
        ]),
        [
          [orderId, 'OrderCreated', 1],
          [orderId, 'OrderConfirmed', 2],
        ],
      )
      for (const message of replayed) {
        assert.equal(message.headers[REPLAY_HEADER], 'true')
        const original = reader.seen.find((m) => !m.headers[REPLAY_HEADER] && eventIdOf(m) === eventIdOf(message))
        assert.ok(original, `the outbox published ${eventIdOf(message)}`)
        assert.equal(message.value, original.value)
        assert.equal(message.partition, original.partition)
        const { [REPLAY_HEADER]: _, [REPLAY_JOB_HEADER]: __, ...headers } = message.headers
        assert.deepEqual(headers, original.headers)
      }
      assert.equal(await rowCount(db, 'outbox'), outboxBefore, 'replay writes nothing to the outbox')
      assert.equal(await rowCount(db, 'es_events'), eventsBefore, 'replay appends nothing to the event store')
    })

    it('refuses to replay an order that has no events', async () => {
      await assert.rejects(
        createReplayJob(db, orderReplaySource, { kind: 'stream', streamId: 'no-such-order' }),
        (error) => {
          assert.ok(isAppError(error, 'NOT_FOUND'))
          assert.match(error.message, /no-such-order has no events/)
          return true
        },
      )
    })

    it('replays the events that occurred in [from, to), in store order', async () => {
      const job = await createReplayJob(db, orderReplaySource, {
        kind: 'time',
        from: '2025-01-02T00:00:00.000Z',
        to: '2025-01-03T00:00:00.000Z',
      })
      assert.equal(job.total, 2)
      const done = await runReplayJob({ db, transport, source: orderReplaySource }, job.id)
      assert.deepEqual([done.status, done.done, done.total], ['completed', 2, 2])
      const replayed = await waitFor(
        () => (replayedBy(reader.seen, job.id).length === 2 ? replayedBy(reader.seen, job.id) : null),
        {
          message: () => `saw ${replayedBy(reader.seen, job.id).length} of 2 replayed events`,
        },
      )
      assert.deepEqual(
        replayed.map((m) => m.key),
        [orders[1], orders[1]],
      )
    })

    it('replays what follows a global position', async () => {
      const third = allEvents[2]
      assert.ok(third)
      const job = await createReplayJob(db, orderReplaySource, {
        kind: 'after-position',
        globalPosition: third.globalPosition,
      })
      const done = await runReplayJob({ db, transport, source: orderReplaySource }, job.id)
      assert.deepEqual([done.status, done.done, done.total], ['completed', 2, 2])
      const replayed = await waitFor(
        () => (replayedBy(reader.seen, job.id).length === 2 ? replayedBy(reader.seen, job.id) : null),
        {
          message: () => `saw ${replayedBy(reader.seen, job.id).length} of 2 replayed events`,
        },
      )
      assert.deepEqual(new Set(replayed.map(eventIdOf)), new Set(allEvents.slice(3).map((e) => e.eventId)))
      await assert.rejects(
        createReplayJob(db, orderReplaySource, { kind: 'after-position', globalPosition: '999999999' }),
        /no event is stored at global position 999999999/,
      )
    })

    it('stops after the current batch when interrupted and resumes where it stopped, to done === total', async () => {
      const job = await createReplayJob(db, orderReplaySource, { kind: 'all' })
      assert.equal(job.total, 5)
      const controller = new AbortController()
      const seenProgress: ReplayProgress[] = []
      const interrupted = await runReplayJob({ db, transport, source: orderReplaySource }, job.id, {
        batchSize: 2,
        signal: controller.signal,
        onProgress: (p) => {
          seenProgress.push(p)
          controller.abort()
        },
      })
      assert.equal(interrupted.status, 'interrupted')
      assert.equal(interrupted.done, 2)
      assert.equal(interrupted.total, 5)
      assert.equal((await getReplayJob(db, job.id))?.status, 'interrupted')
      assert.deepEqual(
        seenProgress.map((p) => [p.status, p.done]),
        [
          ['running', 2],
          ['interrupted', 2],
        ],
      )

      const progress: ReplayProgress[] = []
      const resumed = await runReplayJob({ db, transport, source: orderReplaySource }, job.id, {
        batchSize: 2,
        onProgress: (p) => progress.push(p),
      })
      assert.equal(resumed.status, 'completed')
      assert.equal(resumed.done, resumed.total)
      assert.equal(resumed.done, 5)
      assert.deepEqual(
        progress.map((p) => [p.status, p.done, p.total]),
        [
          ['running', 4, 5],
          ['completed', 5, 5],
        ],
      )
      const replayed = await waitFor(
        () => (replayedBy(reader.seen, job.id).length >= 5 ? replayedBy(reader.seen, job.id) : null),
        {
          message: () => `saw ${replayedBy(reader.seen, job.id).length} of 5 replayed events`,
        },
      )
      // A clean interrupt records its last batch, so resuming publishes nothing twice.
      assert.deepEqual(replayed.map(eventIdOf).sort(), allEvents.map((e) => e.eventId).sort())
      // Each order's events still arrive in version order: same key, same partition.
      for (const orderId of orders) {
        const versions = replayed
          .filter((m) => m.key === orderId)
          .map((m) => (JSON.parse(m.value) as { version: number }).version)
        assert.deepEqual(
          versions,
          [...versions].sort((a, b) => a - b),
        )
      }
      // Resuming a completed job publishes nothing more.
      const again = await runReplayJob({ db, transport, source: orderReplaySource }, job.id)
      assert.deepEqual([again.status, again.done], ['completed', 5])
    })

    it('rebuilds a deleted read model, reporting progress up to done === total, and resumes an interrupted rebuild', async () => {
      const before = await queryOrders(db, { limit: 10 }, null)
      assert.equal(before.orders.length, 3)
      await db.query('DELETE FROM order_read_model')
      assert.equal((await queryOrders(db, { limit: 10 }, null)).orders.length, 0)

      const controller = new AbortController()
      const interrupted = await rebuildProjection(db, orderReadModel, {
        batchSize: 1,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.done > 0) controller.abort()
        },
      })
      assert.deepEqual(interrupted, { done: 1, total: 5 })

      const progress: Progress[] = []
      const result = await rebuildProjection(db, orderReadModel, {
        resume: true,
        batchSize: 2,
        onProgress: (p) => progress.push(p),
      })
      assert.deepEqual(result, { done: 4, total: 4 })
      assert.deepEqual(progress.at(-1), { done: 4, total: 4 })
      const after = await queryOrders(db, { limit: 10 }, null)
      assert.deepEqual(after.orders, before.orders)
      assert.deepEqual(
        after.orders.map((o) => [o.id, o.status]),
        [
          [orders[2], 'PENDING'],
          [orders[1], 'CONFIRMED'],
          [orders[0], 'CONFIRMED'],
        ],
      )

      const full: Progress[] = []
      await db.query('DELETE FROM order_read_model')
      await rebuildProjection(db, orderReadModel, { onProgress: (p) => full.push(p) })
      assert.deepEqual(full.at(-1), { done: 5, total: 5 })
      assert.deepEqual((await queryOrders(db, { limit: 10 }, null)).orders, before.orders)
    })

    it('applies a batch in one read and one write, and a batch seen before (whole, or its older half) changes nothing', async () => {
      const current = async () =>
        (
          await db.query<{ id: string; version: number; status: string; updated_at: Date; doc: unknown }>(
            'SELECT id, version, status, updated_at, doc FROM order_read_model ORDER BY id',
          )
        ).rows
      const settled = await current()
      assert.deepEqual(Object.fromEntries(settled.map((r) => [r.id, r.version])), {
        [orders[0]]: 2,
        [orders[1]]: 2,
        [orders[2]]: 1,
      })
      const statements: string[] = []
      await db.transaction(async (tx) => {
        const counting: SqlExecutor = {
          query: (text, params) => {
            statements.push(text)
            return tx.query(text, params)
          },
          exec: (text) => tx.exec(text),
        }
        await orderReadModel.handle(counting, allEvents)
        assert.equal(statements.length, 1, `a batch whose events are all seen is one read: ${statements.join('; ')}`)
        // The creations alone, after their confirmations: older than what the rows hold.
        await orderReadModel.handle(
          counting,
          allEvents.filter((e) => e.version === 1),
        )
        assert.equal(statements.length, 2)
        // From nothing: every order created and two confirmed by one batch, in one read and one write.
        await tx.query('DELETE FROM order_read_model')
        statements.length = 0
        await orderReadModel.handle(counting, allEvents)
        assert.equal(statements.length, 2, statements.join('; '))
      })
      assert.deepEqual(await current(), settled)
    })
  })
}

replaySuite('PGlite', pgliteTestDatabase)
replaySuite('PostgreSQL', () => postgresTestDatabase('of_replay'))

// ---------------------------------------------------------------------------------------------
// The command line, run as a process against an embedded database in a temporary DATA_DIR.
// ---------------------------------------------------------------------------------------------

const orderflowCli = resolve(import.meta.dirname, '..', 'cli.ts')

interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Starts `orderflow <args>` with the server's environment pointed at `dataDir`, and nothing else,
 * in a process group of its own: a terminal's Ctrl-C reaches the whole group (see `interrupt`).
 */
function startCli(args: string[], dataDir?: string): { child: ChildProcess; done: Promise<CliRun> } {
  const { DATABASE_URL: _, KAFKA_BROKERS: __, TRANSPORT: ___, DATA_DIR: ____, LOG_LEVEL: _____, ...env } = process.env
  const child = spawn(process.execPath, [orderflowCli, ...args], {
    env: { ...env, TRANSPORT: 'embedded', ...(dataDir ? { DATA_DIR: dataDir } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr?.on('data', (chunk) => {
    stderr += chunk
  })
  const done = new Promise<CliRun>((resolveRun, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolveRun({ code, stdout, stderr }))
  })
  return { child, done }
}

const runCli = (args: string[], dataDir?: string) => startCli(args, dataDir).done

/**
 * Ctrl-C as a terminal sends it, to the process group: the orderflow entry point lets it pass and
 * the command it runs stops after its batch. A SIGINT to the entry point's pid alone would not.
 */
function interrupt(child: ChildProcess): void {
  if (child.pid === undefined) throw new Error('the command did not start')
  process.kill(-child.pid, 'SIGINT')
}

describe('replay and rebuild-read-model from the command line', () => {
  let dataDir: string
  const orderId = uniqueName('cli_order')
  const orderCount = 120

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'orderflow-cli-'))
    // Commands only, with no relay: the CLI is what publishes here.
    const db = await openPglite(dataDir)
    await migrateModules(db, [orderModule()])
    const store = createOrderStore({ db, onCommitted: () => {} })
    await store.execute(createOrder(orderId))
    await store.execute({ commandType: 'ConfirmOrder', orderId, paymentId: 'payment-1' })
    for (let i = 1; i < orderCount; i++) await store.execute(createOrder(`${orderId}_${i}`))
    await db.close()
  })

  after(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  it('prints its usage for --help, and exits 2 naming a wrong option', async () => {
    const help = await runCli(['replay', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /^Usage: npm run orderflow -- replay /)
    assert.match(help.stdout, /npm run orderflow -- rebuild-read-model/)

    const wrong = await runCli(['replay', '--order', 'x', '--frobnicate'])
    assert.equal(wrong.code, 2)
    assert.match(wrong.stderr, /^replay: unknown option '--frobnicate'/)
    assert.match(wrong.stderr, /Usage: npm run orderflow -- replay/)

    const none = await runCli(['replay'])
    assert.equal(none.code, 2)
    assert.match(none.stderr, /choose what to replay/)
  })

  it('exits 2 with the configuration problem when the environment is wrong', async () => {
    const { DATABASE_URL: _, KAFKA_BROKERS: __, ...env } = process.env
    const child = spawn(process.execPath, [orderflowCli, 'replay', '--all'], {
      env: { ...env, TRANSPORT: 'carrier-pigeon' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const code = await new Promise((done) => child.once('close', done))
    assert.equal(code, 2)
    assert.match(stderr, /TRANSPORT must be 'embedded' or 'kafka'/)
  })

  it("replays one order into the embedded database's order-events, and exits 1 for an order with no events", async () => {
    const run = await runCli(['replay', '--order', orderId], dataDir)
    assert.equal(run.code, 0, run.stderr)
    assert.match(run.stderr, /completed: 2\/2 events re-published/)

    const missing = await runCli(['replay', '--order', 'no-such-order'], dataDir)
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /order no-such-order has no events/)

    const db = await openPglite(dataDir)
    const transport = await createEmbeddedTransport({ db, pollIntervalMs: 50 })
    try {
      const reader = await follow(transport, ORDER_EVENTS_TOPIC, 'replay_reader')
      const mine = () => reader.seen.filter((m) => m.key === orderId)
      await waitFor(() => mine().length === 2, { message: () => `saw ${mine().length} of 2 replayed events` })
      assert.deepEqual(
        mine().map((m) => [(JSON.parse(m.value) as { eventType: string }).eventType, m.headers[REPLAY_HEADER]]),
        [
          ['OrderCreated', 'true'],
          ['OrderConfirmed', 'true'],
        ],
      )
      await reader.sub.close()
    } finally {
      await transport.close()
      await db.close()
    }
  })

  it('rebuilds the read model, stopping on Ctrl-C and resuming from its checkpoint', async () => {
    const { child, done } = startCli(['rebuild-read-model', '--batch-size', '1'], dataDir)
    let stderr = ''
    let sent = false
    child.stderr?.on('data', (chunk) => {
      stderr += chunk
      if (/projected [1-9]\d*\//.test(stderr) && !sent) {
        sent = true
        interrupt(child)
      }
    })
    const interrupted = await done
    assert.equal(interrupted.code, 130, interrupted.stderr)
    assert.match(interrupted.stderr, /Resume with:\n {2}npm run orderflow -- rebuild-read-model --resume\n/)
    const stoppedAt = /interrupted after (\d+)\/(\d+) events/.exec(interrupted.stderr)
    assert.ok(stoppedAt, interrupted.stderr)
    assert.ok(Number(stoppedAt[1]) < orderCount + 1, 'the rebuild stopped before its end')

    const resumed = await runCli(['rebuild-read-model', '--resume', '--json'], dataDir)
    assert.equal(resumed.code, 0, resumed.stderr)
    const last = JSON.parse(resumed.stdout.trim().split('\n').at(-1) ?? '{}') as Progress & { status: string }
    assert.equal(last.status, 'completed')
    assert.equal(last.done, last.total)
    assert.equal(Number(stoppedAt[1]) + last.done, orderCount + 1)

    const db = await openPglite(dataDir)
    try {
      const { orders } = await queryOrders(db, { limit: orderCount + 1 }, null)
      assert.equal(orders.length, orderCount)
      assert.equal(orders.find((o) => o.id === orderId)?.status, 'CONFIRMED')
    } finally {
      await db.close()
    }
  })

  it('refuses to open the embedded database while another process holds the DATA_DIR lock', async () => {
    // What the server does at start (openRuntime): this test process plays the server.
    const unlock = lockDataDir(dataDir)
    try {
      const run = await runCli(['rebuild-read-model'], dataDir)
      assert.equal(run.code, 1)
      assert.equal(
        run.stderr,
        `rebuild-read-model: the server (pid ${process.pid}) has DATA_DIR ${dataDir} open; stop it first (replay and rebuild-read-model have no HTTP route to ask it), or run on PostgreSQL (DATABASE_URL)\n`,
      )
    } finally {
      unlock()
    }
  })

  it('stops on Ctrl-C after the current batch, prints how to resume, and the resumed job completes', async () => {
    const { child, done } = startCli(['replay', '--all', '--batch-size', '1'], dataDir)
    let stderr = ''
    let sent = false
    child.stderr?.on('data', (chunk) => {
      stderr += chunk
      if (/replayed [1-9]\d*\//.test(stderr) && !sent) {
        sent = true
        interrupt(child)
      }
    })
    const interrupted = await done
    assert.equal(interrupted.code, 130, interrupted.stderr)
    const resume = /npm run orderflow -- replay --resume (\S+)/.exec(interrupted.stderr)
    assert.ok(resume?.[1], `no resume command in:\n${interrupted.stderr}`)
    const stoppedAt = /interrupted after (\d+)\/(\d+) events/.exec(interrupted.stderr)
    assert.ok(stoppedAt, interrupted.stderr)
    assert.equal(Number(stoppedAt[2]), orderCount + 1)
    assert.ok(Number(stoppedAt[1]) < orderCount + 1, 'the replay stopped before its end')

    const resumed = await runCli(['replay', '--resume', resume[1], '--json', '--batch-size', '100'], dataDir)
    assert.equal(resumed.code, 0, resumed.stderr)
    const lines = resumed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { status: string; done: number; total: number; jobId: string })
    assert.ok(lines.every((line) => line.jobId === resume[1]))
    assert.deepEqual(lines[0] && [lines[0].status, lines[0].done], ['running', Number(stoppedAt[1])])
    const last = lines.at(-1)
    assert.deepEqual(last && [last.status, last.done, last.total], ['completed', orderCount + 1, orderCount + 1])

    const again = await runCli(['replay', '--resume', resume[1]], dataDir)
    assert.equal(again.code, 0)
    assert.match(again.stderr, /already completed/)
  })
})
