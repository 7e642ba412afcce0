import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { after, before, describe, it } from 'node:test'
import { setTimeout as pace } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import {
  follow,
  kafkaBrokers,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { capturingLogger } from '../../../test/support/logs.ts'
import { watchedDatabase } from '../../../test/support/watched-db.ts'
import { createLogger } from '../logger.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import { createKafkaTransport } from '../transport/kafka.ts'
import type { IncomingMessage, OutgoingMessage, PublishOptions, Transport } from '../transport/port.ts'
import {
  createOutboxSignal,
  enqueue,
  type OutboxRelay,
  type OutboxRelayOptions,
  prunePublished,
  startOutboxRelay,
} from './outbox.ts'

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
    groupLag: async () => {
      throw new Error('not used')
    },
    readTopic: async () => {
      throw new Error('not used')
    },
    describeLog: async () => {
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

    /**
     * An empty outbox, once no relay of an earlier test holds a shard or counts as live (one that
     * stopped with a publish unsettled leaves its shards to expire): each test claims from scratch.
     */
    const freshOutbox = async () => {
      await db.exec('DELETE FROM outbox')
      await waitFor(
        async () =>
          (
            await db.query<{ live: number }>(
              `SELECT (SELECT count(*) FROM outbox_relay_lease WHERE expires_at > now())::int
                    + (SELECT count(*) FROM outbox_relay_member WHERE expires_at > now())::int AS live`,
            )
          ).rows[0]?.live === 0,
        { message: 'the relays of earlier tests are gone' },
      )
    }

    it('publishes in insertion order, batches a burst, and retries after the transport fails', async () => {
      await freshOutbox()
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

    it('under a steady flow marks each batch with the next select; the last alone once nothing follows, as of when it landed', async () => {
      await freshOutbox()
      const { transport, published } = recordingTransport()
      const signal = createOutboxSignal()
      const topic = uniqueName('outbox')
      const statements = { select: 0, mark: 0, both: 0 }
      const watched = watchedDatabase(db, {
        query: (text) => {
          const marks = text.includes('UPDATE outbox SET published_at')
          const selects = text.includes('ORDER BY outbox.id LIMIT')
          if (marks && selects) statements.both++
          else if (marks) statements.mark++
          else if (selects) statements.select++
        },
      })
      // Each publish is answered by the next row, as a hop's consumer writes its message: five in a chain.
      const chained: Transport = {
        ...transport,
        publish: async (messages, publishOptions) => {
          const positions = await transport.publish(messages, publishOptions)
          const n = Number(messages.at(-1)?.value)
          if (n < 5) {
            await enqueue(db, [{ topic, key: 'k', value: String(n + 1) }])
            signal.notify()
          }
          return positions
        },
      }
      await enqueue(db, [{ topic, key: 'k', value: '1' }])
      const markWithNextMs = 1_500
      const relay = startOutboxRelay({
        db: watched,
        transport: chained,
        signal,
        logger,
        pollIntervalMs: 60_000,
        markWithNextMs,
      })
      try {
        await waitFor(async () => (await relay.pending()) === 0, {
          message: 'the chain of five is published and marked',
        })
        assert.deepEqual(
          published.map((m) => m.value),
          ['1', '2', '3', '4', '5'],
        )
        // 1 selected alone; 1–4 marked with the selects of 2–5; 5 marked alone, nothing following it.
        assert.deepEqual(statements, { select: 1, both: 4, mark: 1 })
        // Marked a second and a half after it landed, and stamped with when it landed.
        const { rows } = await db.query<{ lag_ms: number }>(
          `SELECT (extract(epoch FROM published_at - created_at) * 1000)::float8 AS lag_ms FROM outbox
            WHERE topic = $1 AND value = '5'`,
          [topic],
        )
        const lag = rows[0]?.lag_ms ?? Number.NaN
        assert.ok(lag >= 0 && lag < markWithNextMs / 2, `published_at is ${lag} ms after the row was written`)
      } finally {
        await relay.stop()
      }
    })

    it('deletes published rows past their retention and keeps pending ones', async () => {
      await freshOutbox()
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

    /**
     * The lease over every shard, as one: a holder that differs between shards shows as a list
     * ('a,b'), which no assertion on one holder accepts. Epochs are per shard: `epochs()`.
     */
    const lease = async () =>
      (
        await db.query<{ holder: string; expires_ms: number | null; released: boolean }>(
          `SELECT string_agg(DISTINCT holder, ',') AS holder,
                  min(CASE WHEN expires_at = '-infinity' THEN NULL ELSE extract(epoch FROM expires_at) * 1000 END)::float8 AS expires_ms,
                  bool_and(expires_at = '-infinity') AS released
             FROM outbox_relay_lease`,
        )
      ).rows[0]

    const enqueueValues = async (topic: string, from: number, to: number) => {
      await db.transaction(async (tx) => {
        for (let i = from; i < to; i++) await enqueue(tx, [{ topic, key: `k${i % 3}`, value: String(i) }])
      })
    }

    const expectedValues = (count: number) =>
      valuesByKey(Array.from({ length: count }, (_, i) => ({ key: `k${i % 3}`, value: String(i) })))

    /** Each shard's epoch. */
    const epochs = async () =>
      new Map(
        (
          await db.query<{ id: number; epoch: string }>('SELECT id, epoch::text FROM outbox_relay_lease ORDER BY id')
        ).rows.map((r) => [r.id, Number(r.epoch)]),
      )
    const plus = (each: Map<number, number>, n: number) =>
      new Map([...each].map(([shard, epoch]) => [shard, epoch + n]))

    /** The rows (values up to `upTo`) with their shard and the epoch they were marked published under. */
    const markedRows = async (upTo = Number.MAX_SAFE_INTEGER) =>
      (
        await db.query<{ value: string; shard: number; epoch: string | null }>(
          `SELECT value, outbox_shard(message_key, (SELECT count(*)::int FROM outbox_relay_lease)) AS shard,
                  published_epoch::text AS epoch
             FROM outbox WHERE value::bigint <= $1 ORDER BY id`,
          [upTo],
        )
      ).rows.map((r) => ({ value: r.value, shard: r.shard, epoch: r.epoch === null ? null : Number(r.epoch) }))

    /** The values (up to `upTo`) not marked under the epoch `expected` gives their shard. */
    const markedOtherwise = async (expected: Map<number, number>, upTo?: number) =>
      (await markedRows(upTo)).filter((r) => r.epoch !== expected.get(r.shard)).map((r) => r.value)

    for (const shards of [1, 8]) {
      it(`a relay stalled inside its publish past its lease never publishes after the relay that took over (${shards} shards)`, async () => {
        await freshOutbox()
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
          groupLag: (groups) => embedded.groupLag(groups),
          readTopic: (name, visit, readOptions) => embedded.readTopic(name, visit, readOptions),
          describeLog: (describeOptions) => embedded.describeLog(describeOptions),
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
            shards,
            db,
            transport: stalling,
            signal: createOutboxSignal(),
            logger: a.logger,
            holderId: 'relay-a',
          })
          relays.push(relayA)
          await waitFor(() => stall.entered === 1, { message: 'relay A is stuck in its first publish' })
          const epochA = await epochs()
          assert.equal((await lease())?.holder, 'relay-a')

          // Rows written during the stall, then a second relay that takes over once A's lease expired.
          await enqueueValues(topic, 9, 18)
          const relayB = startOutboxRelay({
            ...shortLease,
            shards,
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
          assert.deepEqual(await epochs(), plus(epochA, 1), 'the takeover increments each shard’s epoch')
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
          if (shards === 1) {
            assert.deepEqual(await markedOtherwise(plus(epochA, 1)), [], 'every row was marked under B')
          } else {
            // With A back, B hands half the shards over to it: what came after may be A's, under a new epoch.
            assert.deepEqual(await markedOtherwise(plus(epochA, 1), 17), [], 'the first 18 were marked under B')
            const underLostEpoch = (await markedRows()).filter(
              (r) => r.epoch === null || r.epoch <= (epochA.get(r.shard) ?? 0),
            )
            assert.deepEqual(underLostEpoch, [], 'nothing is marked under an epoch A lost')
          }
        } finally {
          gate.open() // a failed assertion must not leave relay A stuck, nor its stop()
          for (const relay of relays) await relay.stop()
          await sub.close()
          await embedded.close()
        }
      })

      it(`a relay stalled between its publish and its mark cannot mark rows once it lost its lease (${shards} shards)`, async () => {
        await freshOutbox()
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
            shards,
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
          const epochA = await epochs()

          await enqueueValues(topic, 9, 18)
          const relayB = startOutboxRelay({
            ...shortLease,
            shards,
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
          const epochB = plus(epochA, 1)
          assert.deepEqual(await epochs(), epochB)

          gate.open()
          await waitFor(() => stall.refused === 1, { message: 'relay A tried to mark its batch, and was refused' })
          await waitFor(
            () =>
              a.records.some(
                (r) => r.level === WARN && /marking published rows was refused/.test(r.msg) && r.refusedRows === 9,
              ),
            { message: 'relay A logs that it lost its lease' },
          )
          assert.deepEqual(await markedOtherwise(epochB), [], 'every row is marked as published under B')
          // A's batch went out before B's first publish: the consumer sees it again, never out of order.
          assertOrderedWithReplayedPrefix(valuesByKey(seen), expectedValues(18))
        } finally {
          gate.open() // a failed assertion must not leave relay A stuck, nor its stop()
          for (const relay of relays) await relay.stop()
          await sub.close()
          await embedded.close()
        }
      })
    }

    it('a relay stalled in the statement that marks its batch and selects the next is refused the mark, and goes on only under a lease claimed again', async () => {
      await freshOutbox()
      const topic = uniqueName('outbox')
      const embedded = await createEmbeddedTransport({ db, pollIntervalMs: 20 })
      const { seen, sub } = await follow(embedded, topic)
      // Relay A publishes a batch; the next rows come, and A stalls in the statement that marks the
      // first batch and selects them, until relay B has taken its lease over and published everything.
      const gate = createGate()
      const stall = { combined: 0 }
      const stallingDb = watchedDatabase(db, {})
      const query = stallingDb.query.bind(stallingDb)
      stallingDb.query = async <Row>(text: string, params?: unknown[]) => {
        if (!gate.isOpen && text.includes('LEFT JOIN LATERAL')) {
          stall.combined++
          await gate.opened
        }
        return query<Row>(text, params)
      }
      const a = capturingLogger()
      const signalA = createOutboxSignal()
      const relays: { stop(): Promise<void> }[] = []
      try {
        await enqueueValues(topic, 0, 9)
        const relayA = startOutboxRelay({
          ...shortLease,
          db: stallingDb,
          transport: embedded,
          signal: signalA,
          logger: a.logger,
          holderId: 'relay-a',
          // A published batch waits for the next select as long as the test needs.
          markWithNextMs: 60_000,
        })
        relays.push(relayA)
        await waitFor(() => seen.length === 9, { message: 'relay A published its first batch' })
        await enqueueValues(topic, 9, 18)
        signalA.notify()
        await waitFor(() => stall.combined === 1, {
          message: 'relay A is stuck marking its batch and selecting the next',
        })
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
        // B stops and hands its shards over; rows come that A's stalled select will find.
        await relayB.stop()
        await enqueueValues(topic, 18, 27)
        gate.open()
        await waitFor(
          () =>
            a.records.some(
              (r) => r.level === WARN && /marking published rows was refused/.test(r.msg) && r.refusedRows === 9,
            ),
          { message: 'relay A logs that it lost its lease' },
        )
        // A claims the released shards again, under new epochs, and publishes the rest in order.
        await waitFor(() => seen.length === 36, {
          message: () => `relay A publishes the rows that came after B stopped (seen ${seen.length})`,
        })
        // Stopping, A marks its last batch (it would otherwise wait for a next select).
        await relayA.stop()
        assert.equal(await relayA.pending(), 0)
        assertOrderedWithReplayedPrefix(valuesByKey(seen), expectedValues(27))
      } finally {
        gate.open()
        for (const relay of relays) await relay.stop()
        await sub.close()
        await embedded.close()
      }
    })

    it('times out a publish that hangs, logs it, and publishes the rows on a later attempt', async () => {
      await freshOutbox()
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
      await freshOutbox()
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
      const heldEpochs = await epochs()
      await waitFor(async () => ((await lease())?.expires_ms ?? 0) > (held.expires_ms ?? 0), {
        message: 'the first relay renews its lease',
      })
      assert.deepEqual(await epochs(), heldEpochs, 'a renewal keeps the epoch')
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
        assert.deepEqual(await epochs(), plus(heldEpochs, 1))
        assert.ok(secondLog.records.some((r) => r.how === 'released' && r.waitMs === 0))
      } finally {
        await secondRelay.stop()
      }

      // A holder that died without releasing: its lease runs for 300 ms more.
      const killedAt = performance.now()
      await db.query(
        `UPDATE outbox_relay_lease SET holder = 'crashed', expires_at = now() + interval '300 milliseconds'`,
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
        assert.deepEqual(await epochs(), plus(heldEpochs, 2))
        assert.ok(thirdLog.records.some((r) => r.how === 'expired' && typeof r.waitMs === 'number' && r.waitMs > 0))
      } finally {
        await thirdRelay.stop()
      }
    })

    const leaseRows = async () =>
      (
        await db.query<{ id: number; holder: string; epoch: string; live: boolean }>(
          'SELECT id, holder, epoch::text, expires_at > now() AS live FROM outbox_relay_lease ORDER BY id',
        )
      ).rows

    it('one relay alone claims every shard in one statement and publishes the outbox in insertion order', async () => {
      await freshOutbox()
      const topic = uniqueName('outbox')
      await db.transaction(async (tx) => {
        for (let i = 0; i < 60; i++) await enqueue(tx, [{ topic, key: `key-${i % 12}`, value: String(i) }])
      })
      const claims = { count: 0, beforeFirstPublish: -1 }
      const counting: SqlDatabase = {
        dialect: db.dialect,
        exec: (text) => db.exec(text),
        transaction: (work) => db.transaction(work),
        close: async () => {},
        query<Row>(text: string, params?: unknown[]) {
          if (/INSERT INTO outbox_relay_member/.test(text) && /FOR UPDATE/.test(text)) claims.count++
          return db.query<Row>(text, params)
        },
      }
      const recording = recordingTransport()
      const transport: Transport = {
        ...recording.transport,
        publish(messages, publishOptions) {
          if (claims.beforeFirstPublish < 0) claims.beforeFirstPublish = claims.count
          return recording.transport.publish(messages, publishOptions)
        },
      }
      const relay = startOutboxRelay({
        ...shortLease,
        shards: 8,
        db: counting,
        transport,
        signal: createOutboxSignal(),
        logger,
        holderId: 'alone',
      })
      try {
        await relay.joined
        await waitFor(async () => (await relay.pending()) === 0, { message: 'the relay publishes everything' })
        assert.deepEqual(
          recording.published.map((m) => m.value),
          Array.from({ length: 60 }, (_, i) => String(i)),
          'one relay publishes the outbox in insertion order',
        )
        assert.equal(recording.batches[0], 60, 'its first publish covers every key: it held every shard')
        assert.equal(claims.beforeFirstPublish, 1, 'every shard came with the first claim')
        const rows = await leaseRows()
        assert.deepEqual(
          rows.map((r) => r.id),
          [0, 1, 2, 3, 4, 5, 6, 7],
        )
        assert.ok(
          rows.every((r) => r.holder === 'alone' && r.live),
          `one relay holds every shard: ${JSON.stringify(rows)}`,
        )
      } finally {
        await relay.stop()
      }
    })

    it('refuses another shard count while a relay runs, and reshards once none is live, waiting out a dead holder', async () => {
      await freshOutbox()
      const relays: OutboxRelay[] = []
      try {
        const four = startOutboxRelay({
          ...shortLease,
          shards: 4,
          db,
          transport: recordingTransport().transport,
          signal: createOutboxSignal(),
          logger,
          holderId: 'four',
        })
        relays.push(four)
        await four.joined
        await waitFor(async () => (await lease())?.holder === 'four', { message: 'the first relay holds every shard' })

        const refused = startOutboxRelay({
          ...shortLease,
          shards: 8,
          db,
          transport: recordingTransport().transport,
          signal: createOutboxSignal(),
          logger,
          holderId: 'refused',
        })
        relays.push(refused)
        await assert.rejects(refused.joined, (error: Error & { code?: string }) => {
          assert.equal(error.code, 'CONFIG_INVALID')
          assert.match(error.message, /OUTBOX_RELAY_SHARDS is 8, but .* use 4 shards: set OUTBOX_RELAY_SHARDS=4/)
          return true
        })
        await refused.stop()
        assert.equal((await leaseRows()).length, 4, 'the running relay keeps its shard count')
        await four.stop()

        // Its holder died with its shards live for 300 ms more (or it is a relay of the previous
        // version, which is no member): nobody is live, so a relay with another count reshards, and
        // keys that move to another shard wait for whatever that holder may still publish.
        const before = Math.max(...(await epochs()).values())
        // Read before the statement is sent: the expiry it writes is no earlier than 300 ms after this
        // (read after its answer, a slow answer made the relay's correct wait look short).
        const diedAt = performance.now()
        await db.query(
          `UPDATE outbox_relay_lease SET holder = 'crashed', expires_at = now() + interval '300 milliseconds'`,
        )
        const topic = uniqueName('outbox')
        await db.transaction(async (tx) => {
          for (let i = 0; i < 40; i++) await enqueue(tx, [{ topic, key: `key-${i % 10}`, value: String(i) }])
        })
        const recording = recordingTransport()
        const eight = startOutboxRelay({
          db,
          transport: recording.transport,
          signal: createOutboxSignal(),
          logger,
          holderId: 'eight',
          shards: 8,
          leaseMs: 3000,
          publishTimeoutMs: 600,
          pollIntervalMs: 20,
        })
        relays.push(eight)
        await eight.joined
        assert.equal((await leaseRows()).length, 8, 'resharded to 8')
        await waitFor(async () => (await eight.pending()) === 0, {
          message: 'the resharded relay publishes everything',
        })
        assert.deepEqual(
          valuesByKey(recording.published),
          valuesByKey(Array.from({ length: 40 }, (_, i) => ({ key: `key-${i % 10}`, value: String(i) }))),
          'each key once, in order',
        )
        const elapsed = (recording.publishedAt[0] ?? 0) - diedAt
        assert.ok(elapsed >= 890, `published ${elapsed} ms after the holder died, not after its expiry + 600 ms`)
        assert.equal((await lease())?.holder, 'eight')
        assert.deepEqual(
          await epochs(),
          new Map(Array.from({ length: 8 }, (_, shard) => [shard, before + 2])),
          'resharding (above every old epoch) and the takeover each increment the epoch: marks under an old one are refused',
        )
      } finally {
        for (const relay of relays) await relay.stop()
      }
    })
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_outbox'))

interface RelayProcess {
  holder: string
  lines: Record<string, unknown>[]
  /** Rows this process marked published. */
  published(): number
  stop(): Promise<void>
  kill(): void
}

/** A relay in an OS process of its own (test/support/outbox-relay-process.ts), on `schema`. */
function startRelayProcess(options: { schema: string; holder: string; shards: number; leaseMs: number }): RelayProcess {
  const script = fileURLToPath(new URL('../../../test/support/outbox-relay-process.ts', import.meta.url))
  const child = spawn(process.execPath, [script, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: Record<string, unknown>[] = []
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>)
    } catch {
      lines.push({ text: line })
    }
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    holder: options.holder,
    lines,
    published: () => lines.reduce((sum, l) => sum + (typeof l.published === 'number' ? l.published : 0), 0),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM')
      await exited
    },
    kill: () => void (child.exitCode === null && child.kill('SIGKILL')),
  }
}

describe('outbox relays in two processes on PostgreSQL and Kafka', () => {
  let database: TestDatabase
  let kafka: Transport
  const processes: RelayProcess[] = []
  before(async () => {
    database = await postgresTestDatabase('of_outbox_shards')
    await migratePlatform(database.db)
    kafka = await createKafkaTransport({
      brokers: kafkaBrokers(),
      clientId: uniqueName('shards'),
      partitions: 3,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 3,
      retryBackoffMs: 100,
    })
  })
  after(async () => {
    for (const relay of processes) relay.kill()
    await kafka?.close()
    await database?.cleanup()
  })

  it('two processes share the relay’s shards and per-key order holds; when one stops, the other takes over and finishes', async () => {
    const { db } = database
    const schema = (await db.query<{ schema: string }>('SELECT current_schema() AS schema')).rows[0]?.schema ?? ''
    const topic = uniqueName('shards')
    await kafka.ensureTopics([topic])
    const { seen, sub } = await follow(kafka, topic)
    const holders = async () => {
      const { rows } = await db.query<{ holder: string; n: number }>(
        `SELECT holder, count(*)::int AS n FROM outbox_relay_lease WHERE expires_at > now() GROUP BY holder`,
      )
      return new Map(rows.map((r) => [r.holder, r.n]))
    }

    // Orders whose events keep coming: each key's values carry its own sequence number.
    const expected = new Map<string, string[]>()
    let written = 0
    const write = async (count: number) => {
      const messages = Array.from({ length: count }, (_, i) => {
        const key = `order-${(written + i) % 24}`
        const sequence = expected.get(key) ?? []
        const value = `${key}:${sequence.length}`
        sequence.push(value)
        expected.set(key, sequence)
        return { topic, key, value }
      })
      await enqueue(db, messages)
      written += count
    }
    const writing = { on: true }
    let writer: Promise<void> = Promise.resolve()
    const startWriting = () => {
      writing.on = true
      writer = (async () => {
        // Paced, so that the stream lasts while the relays settle and one of them stops.
        while (writing.on) {
          await write(10)
          await pace(5)
        }
      })()
    }

    try {
      const a = startRelayProcess({ schema, holder: 'relay-a', shards: 8, leaseMs: 3000 })
      processes.push(a)
      await waitFor(() => a.lines.some((l) => l.joined), { message: 'relay A joined' })
      startWriting()
      const b = startRelayProcess({ schema, holder: 'relay-b', shards: 8, leaseMs: 3000 })
      processes.push(b)
      await waitFor(() => b.lines.some((l) => l.joined), { message: 'relay B joined' })

      await waitFor(
        async () => {
          const held = await holders()
          return held.get('relay-a') === 4 && held.get('relay-b') === 4 && a.published() > 0 && b.published() > 0
        },
        {
          timeoutMs: 30_000,
          message: () =>
            `each relay holds half the shards and publishes (published: A ${a.published()}, B ${b.published()})`,
        },
      )
      const shedByA = a.lines.filter((l) => l.how === 'shed').map((l) => l.shard)
      const claimedByB = b.lines.filter((l) => l.how === 'released').map((l) => l.shard)
      assert.deepEqual([...claimedByB].sort(), [...shedByA].sort(), 'B took what A handed over, without a wait')

      // B stops while the rows keep coming: A takes its shards over at once and publishes the rest.
      const publishedBeforeStop = b.published()
      await b.stop()
      await waitFor(async () => (await holders()).get('relay-a') === 8, {
        timeoutMs: 10_000,
        message: 'relay A holds every shard after B stopped',
      })
      const writtenAtTakeover = written
      await waitFor(() => written >= writtenAtTakeover + 100, { message: 'more rows are written after the takeover' })
      writing.on = false
      await writer

      // A's report of its last batch may reach us after its mark: wait for it too.
      await waitFor(
        async () => seen.length >= written && (await pendingRows(db)) === 0 && a.published() + b.published() >= written,
        {
          timeoutMs: 60_000,
          message: () =>
            `every row is published (seen ${seen.length} of ${written}, reported ${a.published() + b.published()})`,
        },
      )
      assert.equal(seen.length, written, 'each row once')
      assert.deepEqual(valuesByKey(seen), expected, 'each key’s events in sequence order')
      assert.ok(publishedBeforeStop > 0 && b.published() > 0, 'B published a share')
      assert.equal(a.published() + b.published(), written, 'between them, the relays marked every row')
      assert.ok(
        a.lines.filter((l) => l.how === 'released' && typeof l.shard === 'number' && claimedByB.includes(l.shard))
          .length >= claimedByB.length,
        'A took B’s shards back as released (no wait)',
      )
      await a.stop()
    } finally {
      writing.on = false
      await writer.catch(() => {})
      await sub.close()
    }
  })
})

async function pendingRows(db: SqlDatabase): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL')
  return rows[0]?.n ?? 0
}
