import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import {
  follow,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { createLogger, type Logger } from '../logger.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import type { IncomingMessage, OutgoingMessage, PublishOptions, Transport } from '../transport/port.ts'
import { createOutboxSignal, enqueue, type OutboxRelayOptions, prunePublished, startOutboxRelay } from './outbox.ts'

/**
 * The relay on its own: order on the wire, batching, retry after failures, one relay at a time,
 * and what happens when a relay stalls past its lease.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

/** Short leases, so that a takeover happens within a test: a publish times out after 200 ms. */
const shortLease = {
  leaseMs: 600,
  publishTimeoutMs: 200,
  pollIntervalMs: 20,
  retryBaseMs: 20,
  retryMaxMs: 50,
} satisfies Partial<OutboxRelayOptions>

interface LogRecord {
  level: number
  msg: string
  [field: string]: unknown
}

/** A logger that keeps its records, to check what a relay reported. */
function capturingLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = []
  const destination = { write: (line: string) => void records.push(JSON.parse(line) as LogRecord) }
  return { logger: pino({ level: 'debug' }, destination), records }
}

const WARN = 40

/** A gate a fault-injecting wrapper waits on until the test opens it. */
function createGate() {
  let open: () => void = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  const gate = { isOpen: false, opened, open: () => {} }
  gate.open = () => {
    gate.isOpen = true
    open()
  }
  return gate
}

/** The values seen for each key, in the order a consumer saw them. */
function valuesByKey(messages: Pick<IncomingMessage | OutgoingMessage, 'key' | 'value'>[]): Map<string, string[]> {
  const byKey = new Map<string, string[]>()
  for (const m of messages) byKey.set(m.key, [...(byKey.get(m.key) ?? []), m.value])
  return byKey
}

/**
 * Per key, what a consumer saw is the enqueue order, possibly preceded by an exact re-run of its
 * start (published once, not marked, published again by the next holder): never a value after a
 * later one of the same key once the full sequence began.
 */
function assertOrderedWithReplayedPrefix(seen: Map<string, string[]>, expected: Map<string, string[]>) {
  assert.deepEqual([...seen.keys()].sort(), [...expected.keys()].sort())
  for (const [key, want] of expected) {
    const got = seen.get(key) ?? []
    const replayed = got.length - want.length
    assert.ok(replayed >= 0, `key ${key}: ${got} misses some of ${want}`)
    assert.deepEqual(got.slice(replayed), want, `key ${key}: ${got} does not end with ${want} in order`)
    assert.deepEqual(got.slice(0, replayed), want.slice(0, replayed), `key ${key}: ${got} replays more than a prefix`)
  }
}

/** A transport that records what it is asked to publish, and fails while `down` is set. */
function recordingTransport() {
  const published: OutgoingMessage[] = []
  const batches: number[] = []
  const publishedAt: number[] = []
  const state = { down: false }
  const transport: Transport = {
    kind: 'embedded',
    ensureTopics: async () => {},
    ping: async () => {},
    subscribe: async () => {
      throw new Error('not used')
    },
    close: async () => {},
    publish: async (messages) => {
      if (state.down) throw new Error('broker unreachable')
      published.push(...messages)
      batches.push(messages.length)
      publishedAt.push(performance.now())
      return messages.map((m, i) => ({
        topic: m.topic,
        partition: 0,
        offset: String(published.length - messages.length + i),
      }))
    },
  }
  return { transport, published, batches, publishedAt, state }
}

function suite(name: string, open: () => Promise<TestDatabase>) {
  describe(`outbox relay on ${name}`, () => {
    let database: TestDatabase
    let db: SqlDatabase
    before(async () => {
      database = await open()
      db = database.db
      await migratePlatform(db)
    })
    after(async () => database?.cleanup())

    it('publishes in insertion order, batches a burst, and retries after the transport fails', async () => {
      await db.exec('DELETE FROM outbox')
      const { transport, published, batches, state } = recordingTransport()
      const signal = createOutboxSignal()
      state.down = true
      const relay = startOutboxRelay({
        db,
        transport,
        signal,
        logger,
        retryBaseMs: 20,
        retryMaxMs: 50,
        pollIntervalMs: 50,
      })
      try {
        const topic = uniqueName('outbox')
        const keys = ['a', 'b', 'c']
        await db.transaction(async (tx) => {
          for (let i = 0; i < 30; i++) await enqueue(tx, [{ topic, key: keys[i % 3] ?? 'a', value: String(i) }])
        })
        signal.notify()
        await waitFor(
          async () => (await db.query<{ n: number }>('SELECT max(publish_attempts)::int AS n FROM outbox')).rows[0]?.n,
          {
            message: 'the failed attempts are recorded',
          },
        )
        assert.equal(published.length, 0)
        state.down = false
        await waitFor(async () => (await relay.pending()) === 0, { message: 'everything is published after recovery' })
        assert.deepEqual(
          published.map((m) => m.value),
          Array.from({ length: 30 }, (_, i) => String(i)),
        )
        assert.ok(batches.length < 30, `a burst goes out in batches, not one by one: ${batches}`)
      } finally {
        await relay.stop()
      }
    })

    it('deletes published rows past their retention and keeps pending ones', async () => {
      await db.exec('DELETE FROM outbox')
      const topic = uniqueName('outbox')
      await enqueue(db, [
        { topic, key: 'k', value: 'old' },
        { topic, key: 'k', value: 'recent' },
        { topic, key: 'k', value: 'pending' },
      ])
      await db.query(`UPDATE outbox SET published_at = now() - interval '48 hours' WHERE value = 'old'`)
      await db.query(`UPDATE outbox SET published_at = now() - interval '1 hour' WHERE value = 'recent'`)
      assert.equal(await prunePublished(db, 24), 1)
      const { rows } = await db.query<{ value: string }>('SELECT value FROM outbox ORDER BY id')
      assert.deepEqual(
        rows.map((r) => r.value),
        ['recent', 'pending'],
      )
    })

    const lease = async () =>
      (
        await db.query<{ holder: string; epoch: string; expires_ms: number | null; released: boolean }>(
          `SELECT holder, epoch::text,
                  CASE WHEN expires_at = '-infinity' THEN NULL ELSE extract(epoch FROM expires_at) * 1000 END::float8 AS expires_ms,
                  expires_at = '-infinity' AS released
             FROM outbox_relay_lease WHERE id = 1`,
        )
      ).rows[0]

    const enqueueValues = async (topic: string, from: number, to: number) => {
      await db.transaction(async (tx) => {
        for (let i = from; i < to; i++) await enqueue(tx, [{ topic, key: `k${i % 3}`, value: String(i) }])
      })
    }

    const expectedValues = (count: number) =>
      valuesByKey(Array.from({ length: count }, (_, i) => ({ key: `k${i % 3}`, value: String(i) })))

    const publishedEpochs = async () =>
      (await db.query<{ epoch: string | null }>('SELECT DISTINCT published_epoch::text AS epoch FROM outbox')).rows.map(
        (r) => r.epoch,
      )

    it('a relay stalled inside its publish past its lease never publishes after the relay that took over', async () => {
      await db.exec('DELETE FROM outbox')
      const topic = uniqueName('outbox')
      const embedded = await createEmbeddedTransport({ db, pollIntervalMs: 20 })
      const { seen, sub } = await follow(embedded, topic)
      // Relay A's broker connection hangs: its publish waits, the request not sent yet, until the
      // gate opens. Like a client whose request never left, it then drops a publish it was told to abort.
      const gate = createGate()
      const stall = { entered: 0, finished: 0, delegated: 0 }
      const stalling: Transport = {
        kind: embedded.kind,
        ensureTopics: (topics) => embedded.ensureTopics(topics),
        ping: () => embedded.ping(),
        subscribe: (subscribeOptions) => embedded.subscribe(subscribeOptions),
        close: async () => {},
        async publish(messages: OutgoingMessage[], publishOptions?: PublishOptions) {
          if (!gate.isOpen) {
            stall.entered++
            try {
              await gate.opened
              publishOptions?.signal?.throwIfAborted()
              stall.delegated++
            } finally {
              stall.finished++
            }
          }
          return embedded.publish(messages)
        },
      }
      const a = capturingLogger()
      const b = capturingLogger()
      const relays: { stop(): Promise<void> }[] = []
      try {
        await enqueueValues(topic, 0, 9)
        const relayA = startOutboxRelay({
          ...shortLease,
          db,
          transport: stalling,
          signal: createOutboxSignal(),
          logger: a.logger,
          holderId: 'relay-a',
        })
        relays.push(relayA)
        await waitFor(() => stall.entered === 1, { message: 'relay A is stuck in its first publish' })
        const epochA = (await lease())?.epoch
        assert.equal((await lease())?.holder, 'relay-a')

        // Rows written during the stall, then a second relay that takes over once A's lease expired.
        await enqueueValues(topic, 9, 18)
        const relayB = startOutboxRelay({
          ...shortLease,
          db,
          transport: embedded,
          signal: createOutboxSignal(),
          logger: b.logger,
          holderId: 'relay-b',
        })
        relays.push(relayB)
        await waitFor(async () => seen.length === 18 && (await relayB.pending()) === 0, {
          message: () => `relay B publishes everything (seen ${seen.length})`,
        })
        assert.equal((await lease())?.holder, 'relay-b')
        assert.equal((await lease())?.epoch, String(Number(epochA) + 1), 'the takeover increments the epoch')
        assert.ok(
          a.records.some((r) => r.level === WARN && /publish timed out/.test(r.msg) && r.batchSize === 9),
          'relay A logged its hanging publish',
        )

        // The stalled publish comes back to life: it must not reach the topic.
        gate.open()
        await waitFor(() => stall.finished === 1, { message: 'the stalled publish settled' })
        await waitFor(() => a.records.some((r) => r.level === WARN && /lost its lease/.test(r.msg)), {
          message: 'relay A notices it lost its lease',
        })
        await enqueueValues(topic, 18, 21)
        await waitFor(() => seen.length >= 21, { message: 'relay B publishes what came after' })
        await waitFor(async () => (await relayB.pending()) === 0, { message: 'relay B marks what came after' })

        assert.equal(stall.delegated, 0, 'the aborted publish was dropped')
        assert.deepEqual(valuesByKey(seen), expectedValues(21), 'each key exactly once, in enqueue order')
        assert.deepEqual(await publishedEpochs(), [String(Number(epochA) + 1)], 'every row was marked under B')
      } finally {
        for (const relay of relays) await relay.stop()
        await sub.close()
        await embedded.close()
      }
    })

    it('a relay stalled between its publish and its mark cannot mark rows once it lost its lease', async () => {
      await db.exec('DELETE FROM outbox')
      const topic = uniqueName('outbox')
      const embedded = await createEmbeddedTransport({ db, pollIntervalMs: 20 })
      const { seen, sub } = await follow(embedded, topic)
      // Relay A publishes, then stalls (a long pause) before its "mark published" statement is sent.
      const gate = createGate()
      const stall = { marks: 0, refused: 0 }
      const stallingDb: SqlDatabase = {
        dialect: db.dialect,
        exec: (text) => db.exec(text),
        transaction: (work) => db.transaction(work),
        close: async () => {},
        async query<Row>(text: string, params?: unknown[]) {
          if (!gate.isOpen && /SET published_at = now\(\)/.test(text)) {
            stall.marks++
            await gate.opened
          }
          const result = await db.query<Row>(text, params)
          if (/SET published_at = now\(\)/.test(text) && result.rowCount === 0) stall.refused++
          return result
        },
      }
      const a = capturingLogger()
      const relays: { stop(): Promise<void> }[] = []
      try {
        await enqueueValues(topic, 0, 9)
        const relayA = startOutboxRelay({
          ...shortLease,
          db: stallingDb,
          transport: embedded,
          signal: createOutboxSignal(),
          logger: a.logger,
          holderId: 'relay-a',
        })
        relays.push(relayA)
        await waitFor(() => stall.marks === 1 && seen.length === 9, {
          message: 'relay A published its batch and is stuck before marking it',
        })
        const epochA = (await lease())?.epoch

        await enqueueValues(topic, 9, 18)
        const relayB = startOutboxRelay({
          ...shortLease,
          db,
          transport: embedded,
          signal: createOutboxSignal(),
          logger,
          holderId: 'relay-b',
        })
        relays.push(relayB)
        await waitFor(async () => seen.length === 27 && (await relayB.pending()) === 0, {
          message: () => `relay B publishes everything again (seen ${seen.length})`,
        })
        const epochB = String(Number(epochA) + 1)
        assert.equal((await lease())?.epoch, epochB)

        gate.open()
        await waitFor(() => stall.refused === 1, { message: 'relay A tried to mark its batch, and was refused' })
        await waitFor(
          () =>
            a.records.some(
              (r) => r.level === WARN && /marking published rows was refused/.test(r.msg) && r.refusedRows === 9,
            ),
          { message: 'relay A logs that it lost its lease' },
        )
        assert.deepEqual(await publishedEpochs(), [epochB], 'every row is marked as published under B')
        // A's batch went out before B's first publish: the consumer sees it again, never out of order.
        assertOrderedWithReplayedPrefix(valuesByKey(seen), expectedValues(18))
      } finally {
        for (const relay of relays) await relay.stop()
        await sub.close()
        await embedded.close()
      }
    })

    it('times out a publish that hangs, logs it, and publishes the rows on a later attempt', async () => {
      await db.exec('DELETE FROM outbox')
      const { transport, published } = recordingTransport()
      let hung = 0
      // The broker freezes for the first publish: it never answers, until the relay aborts it.
      const freezing: Transport = {
        ...transport,
        publish(messages: OutgoingMessage[], publishOptions?: PublishOptions) {
          if (hung > 0) return transport.publish(messages)
          hung++
          return new Promise((_, reject) => {
            publishOptions?.signal?.addEventListener('abort', () => reject(publishOptions.signal?.reason))
          })
        },
      }
      const signal = createOutboxSignal()
      const { logger: captured, records } = capturingLogger()
      const relay = startOutboxRelay({ ...shortLease, db, transport: freezing, signal, logger: captured })
      try {
        const topic = uniqueName('outbox')
        await enqueueValues(topic, 0, 5)
        signal.notify()
        await waitFor(async () => (await relay.pending()) === 0, { message: 'the rows are published after the hang' })
        assert.deepEqual(
          published.map((m) => m.value),
          ['0', '1', '2', '3', '4'],
        )
        const timedOut = records.find((r) => r.level === WARN && /publish timed out/.test(r.msg))
        assert.ok(timedOut, 'the hanging publish is logged')
        assert.equal(timedOut.batchSize, 5)
        assert.equal(timedOut.timeoutMs, 200)
        assert.ok(typeof timedOut.oldestAgeMs === 'number' && timedOut.oldestAgeMs >= 0, 'with the oldest row’s age')
        const { rows } = await db.query<{ attempts: number; last_error: string }>(
          'SELECT publish_attempts AS attempts, last_error FROM outbox ORDER BY id',
        )
        for (const row of rows) {
          assert.equal(row.attempts, 2)
          assert.match(row.last_error, /did not finish within 200 ms/)
        }
      } finally {
        await relay.stop()
      }
    })

    it('renews its lease under one epoch; a takeover increments the epoch and waits only after an expiry', async () => {
      await db.exec('DELETE FROM outbox')
      const topic = uniqueName('outbox')
      const first = startOutboxRelay({
        ...shortLease,
        db,
        transport: recordingTransport().transport,
        signal: createOutboxSignal(),
        logger,
        holderId: 'first',
      })
      const held = await waitFor(async () => ((await lease())?.holder === 'first' ? lease() : undefined), {
        message: 'the first relay claims the lease',
      })
      await waitFor(async () => ((await lease())?.expires_ms ?? 0) > (held.expires_ms ?? 0), {
        message: 'the first relay renews its lease',
      })
      assert.equal((await lease())?.epoch, held.epoch, 'a renewal keeps the epoch')
      await first.stop()
      assert.equal((await lease())?.released, true, 'stop() releases the lease')

      // A released lease is taken at once: a publish timeout of 3 s would show if it waited.
      const second = recordingTransport()
      const secondLog = capturingLogger()
      const startedSecond = performance.now()
      const secondRelay = startOutboxRelay({
        db,
        transport: second.transport,
        signal: createOutboxSignal(),
        logger: secondLog.logger,
        holderId: 'second',
        leaseMs: 6000,
        publishTimeoutMs: 3000,
        pollIntervalMs: 20,
      })
      try {
        await enqueueValues(topic, 0, 1)
        await waitFor(() => second.published.length === 1, { message: 'the second relay publishes' })
        assert.ok(
          (second.publishedAt[0] ?? Infinity) - startedSecond < 2500,
          `published ${(second.publishedAt[0] ?? Infinity) - startedSecond} ms after start`,
        )
        assert.equal((await lease())?.epoch, String(Number(held.epoch) + 1))
        assert.ok(secondLog.records.some((r) => r.how === 'released' && r.waitMs === 0))
      } finally {
        await secondRelay.stop()
      }

      // A holder that died without releasing: its lease runs for 300 ms more.
      const killedAt = performance.now()
      await db.query(
        `UPDATE outbox_relay_lease SET holder = 'crashed', expires_at = now() + interval '300 milliseconds' WHERE id = 1`,
      )
      await enqueueValues(topic, 1, 2)
      const third = recordingTransport()
      const thirdLog = capturingLogger()
      const thirdRelay = startOutboxRelay({
        db,
        transport: third.transport,
        signal: createOutboxSignal(),
        logger: thirdLog.logger,
        holderId: 'third',
        leaseMs: 3000,
        publishTimeoutMs: 600,
        pollIntervalMs: 20,
      })
      try {
        await waitFor(() => third.published.length === 1, { message: 'the third relay publishes' })
        // Not before the crashed holder's expiry plus one publish timeout: 300 + 600 ms.
        const elapsed = (third.publishedAt[0] ?? 0) - killedAt
        assert.ok(elapsed >= 890, `published ${elapsed} ms after the holder died`)
        assert.equal((await lease())?.epoch, String(Number(held.epoch) + 2))
        assert.ok(thirdLog.records.some((r) => r.how === 'expired' && typeof r.waitMs === 'number' && r.waitMs > 0))
      } finally {
        await thirdRelay.stop()
      }
    })
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_outbox'))
