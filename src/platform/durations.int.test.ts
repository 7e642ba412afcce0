import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import {
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../test/support/index.ts'
import { watchedDatabase } from '../../test/support/watched-db.ts'
import { cachedFor } from '../dashboard/tables.ts'
import { deadLetterConsole } from '../dead-letters/application/console.ts'
import { sqlDeadLetterStore } from './dead-letters/store.ts'
import { createReplayJob, getReplayJob, type ReplaySource, runReplayJob } from './es/replay.ts'
import { appendToStream, type NewEvent } from './eventstore/event-store.ts'
import { migratePlatform } from './sql/migrations.ts'
import { createEmbeddedTransport } from './transport/embedded.ts'
import type { IncomingMessage, Transport } from './transport/port.ts'

/**
 * Waits, paces and caches are timed by a monotonic clock (`performance.now()`). A wall clock that
 * steps (NTP, a VM restored from a snapshot, an operator) must not fail a replay that is waiting
 * for a transaction, hold a paced redrive for the hour the clock went back, or keep the dashboard's
 * readings for that hour. (The transport's own durations: `transport/wall-clock.int.test.ts`.)
 */

const realNow = Date.now
const HOUR_MS = 3_600_000
const stepWallClock = (byMs: number) => {
  Date.now = () => realNow() + byMs
}
afterEach(() => {
  Date.now = realNow
})

const event = (): NewEvent => ({
  eventId: randomUUID(),
  eventType: 'ThingHappened',
  schemaVersion: 1,
  occurredOn: new Date().toISOString(),
  data: {},
  metadata: {},
})

describe('a replay waiting for a transaction that hides the events it covers (PostgreSQL)', () => {
  let database: TestDatabase
  let transport: Transport
  const streamType = uniqueName('thing')
  const source: ReplaySource = {
    streamType,
    topics: [uniqueName('things')],
    toMessages: (e) => [{ topic: source.topics[0] as string, key: e.streamId, value: JSON.stringify(e.data) }],
  }

  before(async () => {
    database = await postgresTestDatabase()
    await migratePlatform(database.db)
    transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 20 })
  })
  after(async () => {
    await transport?.close()
    await database?.cleanup()
  })

  /**
   * Starts a transaction that takes a transaction id and stays open, then commits an event after it:
   * readers see nothing past the open transaction's id until it ends. Returns its release.
   */
  const hideBehindAnOpenTransaction = async (): Promise<{ release(): Promise<void> }> => {
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let began!: () => void
    const open = new Promise<void>((resolve) => {
      began = resolve
    })
    const transaction = database.db.transaction(async (tx) => {
      await tx.query('SELECT pg_current_xact_id()')
      began()
      await held
    })
    await open
    await appendToStream(database.db, { id: uniqueName('stream'), type: streamType, expectedVersion: 0 }, [event()])
    return {
      async release() {
        release()
        await transaction
      },
    }
  }

  it('fails after its stall timeout, saying why, while the transaction stays open', async () => {
    const hiding = await hideBehindAnOpenTransaction()
    try {
      const job = await createReplayJob(database.db, source, { kind: 'all' })
      await assert.rejects(
        runReplayJob({ db: database.db, transport, source }, job.id, { stallTimeoutMs: 300 }),
        /held back by a database transaction that has been running/,
      )
    } finally {
      await hiding.release()
    }
  })

  it('goes on waiting when the wall clock steps an hour ahead, and completes once the transaction ends', async () => {
    const hiding = await hideBehindAnOpenTransaction()
    const job = await createReplayJob(database.db, source, { kind: 'all' })
    assert.equal(job.total, 2) // the first test's event and this one's, both committed
    // The replay's database, which tells when the replay has found the events it waits for (it
    // counts what is left after it published what it could read): it is then waiting.
    let waiting = false
    const db = watchedDatabase(database.db, {
      query: (text) => {
        if (text.includes('SELECT count(*)::text AS n FROM es_events')) waiting = true
      },
    })
    const outcome = runReplayJob({ db, transport, source }, job.id, { stallTimeoutMs: 10_000 }).catch(
      (error: unknown) => error,
    )
    try {
      await waitFor(async () => waiting && (await getReplayJob(database.db, job.id))?.done === 1, {
        message: 'the replay published what it could read and waits for the rest',
      })
      stepWallClock(HOUR_MS)
      // Longer than a few polls, so that a stall check by the wall clock would have run and failed.
      const early = await Promise.race([
        outcome,
        new Promise((resolve) => setTimeout(() => resolve('still waiting'), 400)),
      ])
      assert.equal(early, 'still waiting')
    } finally {
      await hiding.release()
    }
    const result = (await outcome) as { status?: string; done?: number }
    assert.ok(!(result instanceof Error), `the replay failed: ${(result as unknown as Error).message}`)
    assert.equal(result.status, 'completed')
    assert.equal(result.done, 2)
  })
})

describe('a paced bulk redrive when the wall clock steps back an hour (PGlite)', () => {
  let database: TestDatabase
  let transport: Transport

  before(async () => {
    database = await pgliteTestDatabase()
    await migratePlatform(database.db)
    transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 20 })
  })
  after(async () => {
    await transport?.close()
    await database?.cleanup()
  })

  it('keeps its pace instead of waiting for the clock to catch up', async () => {
    const topic = uniqueName('things')
    const groupId = uniqueName('redrive_clock')
    await transport.ensureTopics([topic, `${topic}-dlq`])
    const store = sqlDeadLetterStore(database.db)
    for (let i = 0; i < 4; i++) {
      const message: IncomingMessage = {
        topic,
        partition: 0,
        offset: String(i),
        key: `key-${i}`,
        value: '{}',
        headers: {},
        timestamp: new Date(),
      }
      await store.record(
        {
          groupId,
          message,
          reason: 'RETRIES_EXHAUSTED',
          error: { message: 'failed' },
          attempts: 1,
          failedAt: new Date().toISOString(),
          payload: '{}',
          payloadTruncated: false,
          payloadBytes: 2,
          dlq: { topic: `${topic}-dlq` },
        },
        { park: false },
      )
    }
    const deadLetters = deadLetterConsole({ db: database.db, transport })
    const redriven = deadLetters
      .redriveMany(
        { group: groupId, reason: 'RETRIES_EXHAUSTED', to: 'topic', dryRun: false, ratePerSecond: 20 },
        {
          actor: 'operator-1',
          // After the first redrive the clock goes back an hour: the next is due 50 ms later, not an hour.
          onProgress: (p) => {
            if (p.done === 1) stepWallClock(-HOUR_MS)
          },
        },
      )
      .then((action) => action.status)
    const status = await waitFor(() => Promise.race([redriven, new Promise<null>((r) => setTimeout(r, 50, null))]), {
      timeoutMs: 10_000,
      message: 'the paced redrive of four dead letters to finish',
    })
    assert.equal(status, 'completed')
  })
})

describe('a reading cached for a period when the wall clock steps back an hour', () => {
  it('is read again once the period has passed', async () => {
    let reads = 0
    const read = cachedFor(50, async () => ++reads)
    assert.equal(await read(), 1)
    assert.equal(await read(), 1)
    stepWallClock(-HOUR_MS)
    await waitFor(async () => (await read()) === 2, { timeoutMs: 5_000, message: () => `${reads} reads` })
  })
})
