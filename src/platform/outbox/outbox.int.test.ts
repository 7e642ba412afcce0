import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import type { SqlDatabase } from '../sql/port.ts'
import type { OutgoingMessage, Transport } from '../transport/port.ts'
import { createOutboxSignal, enqueue, migrateOutbox, prunePublished, startOutboxRelay } from './outbox.ts'

/** The relay on its own: order on the wire, batching, retry after failures, one relay at a time. */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

/** A transport that records what it is asked to publish, and fails while `down` is set. */
function recordingTransport() {
  const published: OutgoingMessage[] = []
  const batches: number[] = []
  const state = { down: false }
  const transport: Transport = {
    kind: 'embedded',
    ensureTopics: async () => {},
    subscribe: async () => {
      throw new Error('not used')
    },
    close: async () => {},
    publish: async (messages) => {
      if (state.down) throw new Error('broker unreachable')
      published.push(...messages)
      batches.push(messages.length)
      return messages.map((m, i) => ({
        topic: m.topic,
        partition: 0,
        offset: String(published.length - messages.length + i),
      }))
    },
  }
  return { transport, published, batches, state }
}

function suite(name: string, open: () => Promise<TestDatabase>) {
  describe(`outbox relay on ${name}`, () => {
    let database: TestDatabase
    let db: SqlDatabase
    before(async () => {
      database = await open()
      db = database.db
      await migrateOutbox(db)
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
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_outbox'))
