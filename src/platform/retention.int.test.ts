import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import {
  joined,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../test/support/index.ts'
import { markHandled } from './inbox/inbox.ts'
import { createMetrics } from './metrics.ts'
import { pruneIdempotencyKeys, pruneInbox, startHousekeeping } from './retention.ts'
import { migratePlatform } from './sql/migrations.ts'
import type { SqlDatabase } from './sql/port.ts'
import { createEmbeddedTransport, pruneEmbeddedLog } from './transport/embedded.ts'
import { partitionForKey } from './transport/partitioner.ts'
import type { IncomingMessage, Transport } from './transport/port.ts'

const DAY_MS = 24 * 60 * 60_000
const silent = { info() {}, warn() {} }

/** A fresh database per test: size retention applies to every partition in the database. */
async function freshDatabase(t: TestContext, open: () => Promise<TestDatabase>): Promise<SqlDatabase> {
  const opened = await open()
  t.after(() => opened.cleanup())
  return opened.db
}

async function embeddedLog(t: TestContext, db: SqlDatabase, partitions = 1): Promise<Transport> {
  const transport = await createEmbeddedTransport({ db, partitions })
  t.after(() => transport.close())
  return transport
}

/** Makes the messages of a partition below `offset` look `ageMs` old. */
async function age(db: SqlDatabase, topic: string, belowOffset: number, ageMs: number) {
  await db.query(
    `UPDATE log_messages SET created_at = now() - $3::double precision * interval '1 millisecond'
      WHERE topic = $1 AND "offset" < $2`,
    [topic, belowOffset, ageMs],
  )
}

async function offsetsOf(db: SqlDatabase, topic: string, partition = 0): Promise<number[]> {
  const { rows } = await db.query<{ offset: string }>(
    // Qualified: a bare "offset" would sort by the text column of the output.
    'SELECT m."offset"::text AS "offset" FROM log_messages m WHERE m.topic = $1 AND m.partition = $2 ORDER BY m."offset"',
    [topic, partition],
  )
  return rows.map((row) => Number(row.offset))
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

function retentionSuite(name: string, open: () => Promise<TestDatabase>) {
  describe(`retention on ${name}`, () => {
    it('prunes log messages past their age in batches, never renumbering offsets', async (t) => {
      const db = await freshDatabase(t, open)
      const transport = await embeddedLog(t, db)
      const topic = uniqueName('retention_age')
      await transport.publish(range(0, 12).map((i) => ({ topic, key: 'k', value: `m-${i}` })))
      await age(db, topic, 7, 8 * DAY_MS)

      const kept = await pruneEmbeddedLog(db, { maxAgeMs: 0, maxBytesPerPartition: 0 })
      assert.equal(kept.deleted, 0, '0 and 0 keep everything')
      const pruned = await pruneEmbeddedLog(db, { maxAgeMs: 7 * DAY_MS, maxBytesPerPartition: 0, batchSize: 3 })
      assert.equal(pruned.deleted, 7)
      assert.deepEqual(await offsetsOf(db, topic), range(7, 12), 'the old prefix is gone, the young messages stay')

      const [next] = await transport.publish([{ topic, key: 'k', value: 'after' }])
      assert.equal(next?.offset, '12', 'offsets keep counting after a prune')

      await age(db, topic, 13, 8 * DAY_MS)
      assert.equal((await pruneEmbeddedLog(db, { maxAgeMs: 7 * DAY_MS, maxBytesPerPartition: 0 })).deleted, 6)
      assert.deepEqual(await offsetsOf(db, topic), [], 'age can empty a partition')
      const [afterEmpty] = await transport.publish([{ topic, key: 'k', value: 'after empty' }])
      assert.equal(afterEmpty?.offset, '13')
    })

    it('keeps the newest messages within the byte budget of each partition', async (t) => {
      const db = await freshDatabase(t, open)
      const transport = await embeddedLog(t, db, 2)
      const topic = uniqueName('retention_size')
      const keyA = 'a'
      const keyB = ['b', 'c', 'd', 'e', 'f'].find((key) => partitionForKey(key, 2) !== partitionForKey(keyA, 2))
      assert.ok(keyB, 'a key for the other partition')
      // key (1 byte) + value (97 bytes) + headers '{}' (2 bytes) = 100 bytes a message.
      const message = (key: string, i: number) => ({ topic, key, value: `${i}`.padEnd(97, 'x') })
      await transport.publish([
        ...range(0, 10).map((i) => message(keyA, i)),
        ...range(0, 5).map((i) => message(keyB, i)),
      ])

      const pruned = await pruneEmbeddedLog(db, { maxAgeMs: 0, maxBytesPerPartition: 350, batchSize: 4 })
      assert.equal(pruned.deleted, 7 + 2)
      assert.deepEqual(await offsetsOf(db, topic, partitionForKey(keyA, 2)), [7, 8, 9], '3 × 100 bytes fit in 350')
      assert.deepEqual(await offsetsOf(db, topic, partitionForKey(keyB, 2)), [2, 3, 4])

      const exact = await pruneEmbeddedLog(db, { maxAgeMs: 0, maxBytesPerPartition: 300 })
      assert.equal(exact.deleted, 0, 'a budget met exactly deletes nothing')

      const tiny = await pruneEmbeddedLog(db, { maxAgeMs: 0, maxBytesPerPartition: 50 })
      assert.equal(tiny.deleted, 4)
      assert.deepEqual(await offsetsOf(db, topic, partitionForKey(keyA, 2)), [9], 'the newest message always stays')
      assert.deepEqual(await offsetsOf(db, topic, partitionForKey(keyB, 2)), [4])
    })

    it('lets a group behind the deleted range continue with the first remaining message, with the right lag', async (t) => {
      const db = await freshDatabase(t, open)
      const transport = await embeddedLog(t, db)
      const topic = uniqueName('retention_group')
      const behind = uniqueName('retention_behind')
      const ahead = uniqueName('retention_ahead')
      await transport.publish(range(0, 20).map((i) => ({ topic, key: 'k', value: `m-${i}` })))
      // Two groups that stopped part-way: one inside what retention deletes, one past it.
      await db.query(
        `INSERT INTO log_group_offsets (group_id, topic, partition, next_offset) VALUES ($1, $3, 0, 3), ($2, $3, 0, 15)`,
        [behind, ahead, topic],
      )
      await age(db, topic, 10, 8 * DAY_MS)
      assert.equal((await pruneEmbeddedLog(db, { maxAgeMs: 7 * DAY_MS, maxBytesPerPartition: 0 })).deleted, 10)

      const seen: IncomingMessage[] = []
      let release!: () => void
      const released = new Promise<void>((resolve) => {
        release = resolve
      })
      const subscription = await transport.subscribe({
        groupId: behind,
        topics: [topic],
        handler: async (message) => {
          await released
          seen.push(message)
        },
      })
      // Released whatever the assertion says: closing the transport waits for the held handler.
      const lagBefore = await joined(subscription)
        .then(() => subscription.lag())
        .finally(release)
      assert.deepEqual(
        lagBefore.map((entry) => entry.lag),
        [10],
        'lag counts only the messages the group can still read',
      )
      await waitFor(async () => (await subscription.lag())[0]?.lag === 0, {
        timeoutMs: 10_000,
        message: () => `the group behind the deleted range read ${seen.length} of 10 remaining messages`,
      })
      assert.deepEqual(
        seen.map((message) => message.offset),
        range(10, 20).map(String),
        'every remaining message once, in order, starting with the first remaining one',
      )
      const { rows } = await db.query<{ next_offset: string }>(
        'SELECT next_offset::text AS next_offset FROM log_group_offsets WHERE group_id = $1',
        [ahead],
      )
      assert.equal(rows[0]?.next_offset, '15', 'a group past the deleted range keeps its position')
    })

    it('prunes inbox entries and idempotency keys past their age, and tolerates a missing table', async (t) => {
      const db = await freshDatabase(t, open)
      assert.deepEqual(await pruneIdempotencyKeys(db, DAY_MS), { deleted: 0 }, 'no idempotency_keys table yet')
      assert.deepEqual(await pruneInbox(db, DAY_MS), { deleted: 0 }, 'no inbox table yet')

      await migratePlatform(db)
      for (const id of range(0, 6)) await markHandled(db, 'consumer', `message-${id}`)
      await db.query(
        `UPDATE inbox SET handled_at = now() - interval '8 days' WHERE message_id IN ('message-0', 'message-1', 'message-2')`,
      )
      await db.query(
        `INSERT INTO idempotency_keys (scope, client, key, request_hash, status, headers, body, created_at)
         SELECT 'test', 'anonymous', 'key-' || i, 'hash', 201, '{}', '{}', now() - (i || ' hours')::interval
           FROM generate_series(0, 47) AS i`,
      )

      assert.deepEqual(await pruneInbox(db, 0), { deleted: 0 }, '0 keeps inbox entries forever')
      assert.deepEqual(await pruneInbox(db, 7 * DAY_MS), { deleted: 3 })
      const inbox = await db.query<{ message_id: string }>('SELECT message_id FROM inbox ORDER BY message_id')
      assert.deepEqual(
        inbox.rows.map((row) => row.message_id),
        ['message-3', 'message-4', 'message-5'],
      )

      assert.deepEqual(await pruneIdempotencyKeys(db, DAY_MS + 30 * 60_000), { deleted: 23 }, 'keys 25 to 47 hours old')
      const keys = await db.query<{ count: string }>('SELECT count(*)::text AS count FROM idempotency_keys')
      assert.equal(keys.rows[0]?.count, '25', 'keys up to 24 hours old stay')
    })

    it('housekeeping reports what each pass deleted, per table', async (t) => {
      const db = await freshDatabase(t, open)
      const transport = await embeddedLog(t, db)
      const topic = uniqueName('retention_housekeeping')
      await transport.publish(range(0, 5).map((i) => ({ topic, key: 'k', value: `m-${i}` })))
      await age(db, topic, 2, 2 * DAY_MS)
      await migratePlatform(db)
      for (const id of range(0, 4)) await markHandled(db, 'consumer', `message-${id}`)
      await db.query(`UPDATE inbox SET handled_at = now() - interval '2 days'`)
      await db.query(
        `INSERT INTO idempotency_keys (scope, client, key, request_hash, status, headers, body, created_at)
         VALUES ('test', 'anonymous', 'old', 'h', 201, '{}', '{}', now() - interval '2 days'),
                ('test', 'anonymous', 'new', 'h', 201, '{}', '{}', now())`,
      )
      // A consumer's retries go with the inbox's retention.
      await db.query(
        `INSERT INTO consumer_retries (group_id, topic, partition, message_offset, message_key, attempt, error, retry_in_ms, failed_at)
         VALUES ('g', 't', 0, '1', 'k', 1, '{"message":"old"}', 10, now() - interval '2 days'),
                ('g', 't', 0, '2', 'k', 1, '{"message":"new"}', 10, now())`,
      )
      const logged: unknown[] = []
      const metrics = createMetrics()
      const housekeeping = startHousekeeping({
        db,
        logger: { info: (fields: unknown) => void logged.push(fields), warn() {} },
        retention: { logMs: DAY_MS, logBytes: 0, idempotencyKeyMs: DAY_MS, inboxMs: DAY_MS },
        embeddedLog: true,
        metrics,
      })
      t.after(() => housekeeping.stop())

      assert.deepEqual(await housekeeping.runOnce(), {
        deleted: { log_messages: 2, inbox: 4, idempotency_keys: 1, consumer_retries: 1 },
      })
      assert.equal(logged.length, 1, 'a pass that deleted something logs it')
      assert.deepEqual(await housekeeping.runOnce(), {
        deleted: { log_messages: 0, inbox: 0, idempotency_keys: 0, consumer_retries: 0 },
      })
      assert.equal(logged.length, 1, 'a pass that deleted nothing stays quiet')
      const counted = await metrics.registry.getSingleMetricAsString('orderflow_retention_deleted_rows_total')
      assert.match(counted, /table="inbox"} 4/)

      const keepForever = startHousekeeping({
        db,
        logger: silent,
        retention: { logMs: 0, logBytes: 0, idempotencyKeyMs: 0, inboxMs: 0 },
        embeddedLog: true,
      })
      t.after(() => keepForever.stop())
      await db.query(`UPDATE log_messages SET created_at = now() - interval '3650 days'`)
      assert.deepEqual(await keepForever.runOnce(), {
        deleted: { log_messages: 0, inbox: 0, idempotency_keys: 0, consumer_retries: 0 },
      })
    })

    it('housekeeping runs on its own, survives a failing pass, and stop() waits for the running one', async (t) => {
      const db = await freshDatabase(t, open)
      await migratePlatform(db)
      const oldEntry = async (id: string) => {
        await markHandled(db, 'consumer', id)
        await db.query(`UPDATE inbox SET handled_at = now() - interval '2 days' WHERE message_id = $1`, [id])
      }
      await oldEntry('first')
      // Injected faults: the first inbox delete fails; later ones can be held at a gate.
      let failNext = true
      let gate: { reached: () => void; open: Promise<void> } | undefined
      const faulty: SqlDatabase = {
        ...db,
        async query<Row>(text: string, params?: unknown[]) {
          if (text.includes('DELETE FROM inbox')) {
            if (failNext) {
              failNext = false
              throw new Error('injected: the database went away')
            }
            if (gate) {
              gate.reached()
              await gate.open
            }
          }
          return db.query<Row>(text, params)
        },
      }
      const warnings: unknown[] = []
      const infos: unknown[] = []
      const housekeeping = startHousekeeping({
        db: faulty,
        logger: {
          info: (fields: unknown) => void infos.push(fields),
          warn: (fields: unknown) => void warnings.push(fields),
        },
        retention: { logMs: DAY_MS, logBytes: 0, idempotencyKeyMs: DAY_MS, inboxMs: DAY_MS },
        // No log tables in this database: the log prune has nothing to do and must not fail.
        embeddedLog: true,
        intervalMs: 20,
      })
      t.after(() => housekeeping.stop())

      await waitFor(() => infos.length > 0, {
        timeoutMs: 10_000,
        message: 'a pass after the failing one pruned the inbox',
      })
      assert.equal(warnings.length, 1, 'the failing pass was logged as a warning, and the schedule went on')
      assert.deepEqual(infos[0], {
        deleted: { log_messages: 0, inbox: 1, idempotency_keys: 0, consumer_retries: 0 },
        durationMs: (infos[0] as { durationMs: number }).durationMs,
      })

      await oldEntry('second')
      let reached!: () => void
      const atGate = new Promise<void>((resolve) => {
        reached = resolve
      })
      let openGate!: () => void
      gate = {
        reached,
        open: new Promise<void>((resolve) => {
          openGate = resolve
        }),
      }
      await atGate
      let stopped = false
      const stopping = housekeeping.stop().then(() => {
        stopped = true
      })
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(stopped, false, 'stop() waits while a pass is deleting')
      openGate()
      await stopping
      const { rowCount } = await db.query('SELECT 1 FROM inbox')
      assert.equal(rowCount, 0, 'the pass that was running when stop() came finished its work')
    })
  })
}

retentionSuite('PGlite', pgliteTestDatabase)
retentionSuite('PostgreSQL', () => postgresTestDatabase('of_retention'))
