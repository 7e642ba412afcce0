import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { postgresTestDatabase, type TestDatabase, waitFor } from '../../../test/support/index.ts'
import { capturingLogger } from '../../../test/support/logs.ts'
import { createLogger } from '../logger.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { OutgoingMessage, Transport } from '../transport/port.ts'
import { type CommitNotices, startCommitNotices } from './commit-notices.ts'
import { createOutboxSignal, enqueue, type OutboxRelay, type OutboxSignal, startOutboxRelay } from './outbox.ts'

/**
 * Two relays that share the lease's shards, as two processes of one database do, each with the
 * writers of its own process: a row one process writes may be the other's to publish. Their polls
 * are a minute apart here, so only the commit notices (PostgreSQL notifications) can have the other
 * relay publish within the test's wait; they keep doing so after the listening connection is killed.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })
const POLL_MS = 60_000
const KEYS = 24

/** A transport that records what each relay published. */
function recording(published: OutgoingMessage[]): Transport {
  const unused = async () => {
    throw new Error('not used')
  }
  return {
    kind: 'embedded',
    ensureTopics: async () => {},
    ping: async () => {},
    subscribe: unused,
    groupLag: unused,
    readTopic: unused,
    describeLog: unused,
    close: async () => {},
    publish: async (messages) => {
      published.push(...messages)
      return messages.map((m, i) => ({ topic: m.topic, partition: 0, offset: String(published.length + i) }))
    },
  }
}

interface Process {
  relay: OutboxRelay
  signal: OutboxSignal
  notices: CommitNotices
  published: OutgoingMessage[]
  /** How often another process's commit woke this one. */
  woken: { count: number }
  stop(): Promise<void>
}

describe('commit notices between processes (PostgreSQL LISTEN/NOTIFY)', () => {
  let database: TestDatabase
  const processes: Process[] = []
  const captured = capturingLogger()

  const startProcess = async (holderId: string, log = logger): Promise<Process> => {
    const published: OutgoingMessage[] = []
    const signal = createOutboxSignal()
    const relay = startOutboxRelay({
      db: database.db,
      transport: recording(published),
      signal,
      logger: log,
      holderId,
      shards: 8,
      pollIntervalMs: POLL_MS,
      leaseMs: 3_000,
      publishTimeoutMs: 1_000,
    })
    await relay.joined
    const woken = { count: 0 }
    const notices = await startCommitNotices({
      db: database.db,
      logger: log,
      shouldTell: () => !relay.holdsEveryShard(),
      onCommitElsewhere: () => {
        woken.count++
        relay.wake()
      },
    })
    const unsubscribe = signal.onNotify(() => notices.committed())
    const process: Process = {
      relay,
      signal,
      notices,
      published,
      woken,
      async stop() {
        unsubscribe()
        await notices.stop()
        await relay.stop()
      },
    }
    processes.push(process)
    return process
  }

  /** Rows for every key, written in one transaction of process `writer`, which then signals its commit. */
  const write = async (writer: Process, round: number) => {
    await database.db.transaction((tx) =>
      enqueue(
        tx,
        Array.from({ length: KEYS }, (_, i) => ({ topic: 'notices', key: `order-${i}`, value: `${round}` })),
      ),
    )
    writer.signal.notify()
  }
  const publishedOf = (round: number) =>
    processes.flatMap((p) => p.published).filter((m) => m.value === String(round)).length
  const pending = async () =>
    Number(
      (await database.db.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox WHERE published_at IS NULL'))
        .rows[0]?.n,
    )

  before(async () => {
    database = await postgresTestDatabase('of_notices')
    await migratePlatform(database.db)
  })
  after(async () => {
    for (const process of processes) await process.stop()
    await database?.cleanup()
  })

  it('a row written in one process is published at once by the relay that holds its shard in another', async () => {
    const a = await startProcess('relay-a', captured.logger)
    const b = await startProcess('relay-b')
    assert.equal(a.notices.channel, b.notices.channel, 'one channel per database and schema')
    // Each relay renews its lease when asked to drain (a third of the lease after the last): A hands
    // B its share, and B claims it. Once they share, both loops sleep out their minute-long poll,
    // and nothing in this process wakes B's: only a notification can.
    await waitFor(
      async () => {
        await a.relay.drain()
        await b.relay.drain()
        const { rows } = await database.db.query<{ holder: string; n: number }>(
          'SELECT holder, count(*)::int AS n FROM outbox_relay_lease WHERE expires_at > now() GROUP BY holder',
        )
        const held = new Map(rows.map((r) => [r.holder, r.n]))
        return held.get('relay-a') === 4 && held.get('relay-b') === 4
      },
      { timeoutMs: 15_000, message: 'the relays share the shards, four each' },
    )

    const wokenBefore = { a: a.woken.count, b: b.woken.count }
    await write(a, 1)
    await waitFor(async () => publishedOf(1) === KEYS && (await pending()) === 0, {
      timeoutMs: 10_000,
      message: () => `every row is published well before the ${POLL_MS} ms poll (${publishedOf(1)} of ${KEYS})`,
    })
    assert.equal(b.woken.count - wokenBefore.b, 1, 'the other process was told once')
    assert.equal(a.woken.count, wokenBefore.a, 'its own notification wakes nothing in the writer')
    assert.ok(
      b.published.some((m) => m.value === '1'),
      'the relay of the other process published the rows of its shards',
    )
    assert.ok(
      a.published.some((m) => m.value === '1'),
      'and the writer’s own relay those of its shards',
    )
  })

  it('keeps telling after the listening connection was killed', async () => {
    const [a, b] = processes
    assert.ok(a && b)
    const killed = await database.db.query<{ killed: boolean }>(
      `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
        WHERE datname = current_database() AND query = $1`,
      [`LISTEN "${a.notices.channel}"`],
    )
    assert.equal(killed.rows.length, 2, 'both processes listened on a connection of their own')
    await waitFor(() => captured.records.some((r) => /lost the connection that listens/.test(String(r.msg))), {
      message: 'the process notices the lost connection',
    })
    await write(a, 2)
    await waitFor(async () => publishedOf(2) === KEYS && (await pending()) === 0, {
      timeoutMs: 10_000,
      message: () => `every row is published after the reconnection (${publishedOf(2)} of ${KEYS})`,
    })
    assert.ok(b.published.some((m) => m.value === '2'))
  })
})
