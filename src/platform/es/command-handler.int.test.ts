import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { postgresTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { isAppError } from '../errors.ts'
import { readStream } from '../eventstore/event-store.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { isTransactionConflict } from '../sql/unavailable.ts'
import { createCommandHandler, jsonStateTable, type StateStore } from './command-handler.ts'
import { accept, type Decider } from './decider.ts'

/**
 * The two kinds of command the handler runs, meeting on one stream (case 5 of issue 13): one with
 * an expected version (HTTP If-Match) takes no row lock; one without takes the state row `FOR
 * UPDATE`. Since a command writes its events, state and messages in one statement, the first waits
 * for the row there and answers VERSION_CONFLICT, without the deadlock the two used to meet in.
 * A real deadlock with another writer of the stream still happens, and PostgreSQL aborts the
 * handler's transaction with 40P01: the handler runs it again before its caller sees anything.
 */

type Add = { type: 'Add'; amount: number }
type Added = { eventType: 'Added'; amount: number }
type Counter = { total: number }

const counter: Decider<Add, Added, Counter> = {
  initialState: () => ({ total: 0 }),
  decide: (command) => accept({ eventType: 'Added', amount: command.amount }),
  evolve: (state, event) => ({ total: state.total + event.amount }),
}

/**
 * The real state table, with one pause: the locking command, once it holds the row, waits until
 * it is released, which makes the two meet in the deadlock every time rather than by chance.
 */
function interleaved(): { store: StateStore<Counter>; locked: Promise<void>; release: () => void } {
  const table = jsonStateTable<Counter>('counters', counter.initialState)
  let onLocked: () => void = () => {}
  let release: () => void = () => {}
  const locked = new Promise<void>((resolve) => {
    onLocked = resolve
  })
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  let armed = true
  return {
    locked,
    release,
    store: {
      ...table,
      async load(tx, streamId, options) {
        const loaded = await table.load(tx, streamId, options)
        if (options?.lock && armed) {
          armed = false
          onLocked()
          await released
        }
        return loaded
      },
    },
  }
}

describe('the command handler on PostgreSQL deadlocks', () => {
  let database: TestDatabase
  let db: SqlDatabase
  /** Every error a transaction failed with, to see the deadlock that the callers did not. */
  const failures: unknown[] = []

  before(async () => {
    database = await postgresTestDatabase('of_deadlock')
    await migratePlatform(database.db)
    await database.db.exec(
      'CREATE TABLE counters (id text PRIMARY KEY, version integer NOT NULL, state jsonb NOT NULL, updated_at timestamptz NOT NULL)',
    )
    const real = database.db
    db = {
      ...real,
      dialect: real.dialect,
      query: (text, params) => real.query(text, params),
      exec: (text) => real.exec(text),
      close: () => real.close(),
      transaction: (work) =>
        real.transaction(work).catch((error: unknown) => {
          failures.push(error)
          throw error
        }),
    }
  })
  after(async () => database.cleanup())

  const counterHandler = (stateStore: StateStore<Counter>, maxDeadlockRetries?: number) =>
    createCommandHandler({
      db,
      onCommitted: () => {},
      streamType: 'counter',
      decider: counter,
      stateStore,
      toMessages: () => [],
      ...(maxDeadlockRetries === undefined ? {} : { maxDeadlockRetries }),
    })
  const amounts = async (streamId: string) =>
    (await readStream(database.db, streamId)).map((e) => (e.data as { amount: number }).amount)
  /** Waits until a session of the database other than the asking one waits for a lock. */
  const someoneWaitsForALock = (message: string) =>
    waitFor(
      async () => {
        const { rows } = await database.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
        )
        return (rows[0]?.n ?? 0) > 0
      },
      { message },
    )

  it('a command with an expected version meeting a locking one on its row: no deadlock, it answers VERSION_CONFLICT', async () => {
    const streamId = uniqueName('counter')
    await counterHandler(jsonStateTable('counters', counter.initialState)).handle(streamId, {
      type: 'Add',
      amount: 100,
    })
    const { store, locked, release } = interleaved()
    const handler = counterHandler(store)
    failures.length = 0
    // The locking command holds the row; the pinned one's write statement (events, state, outbox
    // in one) waits for the row; then the locking one goes on and commits first.
    const locking = handler.handle(streamId, { type: 'Add', amount: 10 })
    await locked
    const pinned = handler.handle(streamId, { type: 'Add', amount: 1 }, { expectedVersion: 1 })
    await someoneWaitsForALock('the pinned command waits for the locked row')
    release()
    const [pinnedOutcome, lockingOutcome] = await Promise.allSettled([pinned, locking])
    assert.equal(lockingOutcome.status, 'fulfilled', String((lockingOutcome as PromiseRejectedResult).reason))
    assert.equal(pinnedOutcome.status, 'rejected')
    assert.ok(isAppError((pinnedOutcome as PromiseRejectedResult).reason, 'VERSION_CONFLICT'))
    assert.deepEqual(await amounts(streamId), [100, 10])
    assert.deepEqual(
      failures.filter((e) => isTransactionConflict(e)),
      [],
    )
  })

  /**
   * A real deadlock with another writer of the stream: it appends the stream's next event (holding
   * its (stream, version) key) and, before it commits, wants the state row the handler's command
   * holds, while the command, holding the row, waits to append at the same version.
   */
  const deadlock = async (maxDeadlockRetries?: number) => {
    const streamId = uniqueName('counter')
    const table = jsonStateTable('counters', counter.initialState)
    await counterHandler(table).handle(streamId, { type: 'Add', amount: 100 })
    const handler = counterHandler(table, maxDeadlockRetries)
    failures.length = 0
    let outcome: Promise<PromiseSettledResult<unknown>> | undefined
    const ROLLED_BACK = new Error('the other writer rolls back')
    await database.db
      .transaction(async (tx) => {
        await tx.query(
          `INSERT INTO es_events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata, occurred_on)
           VALUES ($1, 'counter', 2, gen_random_uuid(), 'Added', 1, '{"amount": 5}', '{}', now())`,
          [streamId],
        )
        const command = handler.handle(streamId, { type: 'Add', amount: 10 })
        outcome = command.then(
          (value) => ({ status: 'fulfilled', value }),
          (reason: unknown) => ({ status: 'rejected', reason }),
        )
        await someoneWaitsForALock("the command waits for the other writer's event")
        // The command began waiting first, so it is the one PostgreSQL aborts (40P01).
        await tx.query('SELECT 1 FROM counters WHERE id = $1 FOR UPDATE', [streamId])
        throw ROLLED_BACK
      })
      .catch((error: unknown) => {
        if (error !== ROLLED_BACK) throw error
      })
    return {
      outcome: (await outcome) as PromiseSettledResult<unknown>,
      events: await amounts(streamId),
      deadlocks: failures.filter((e) => isTransactionConflict(e)),
    }
  }

  it('runs the deadlock victim again: the command commits, its caller never sees the deadlock', async () => {
    const { outcome, events, deadlocks } = await deadlock()
    assert.ok(deadlocks.length >= 1, 'PostgreSQL detected a deadlock')
    assert.equal((deadlocks[0] as { code?: string }).code, '40P01')
    assert.equal(outcome.status, 'fulfilled', String((outcome as PromiseRejectedResult).reason))
    assert.deepEqual(events, [100, 10])
  })

  it('without retries the caller gets the 40P01 (what the retries take away)', async () => {
    const { outcome, events } = await deadlock(0)
    assert.equal(outcome.status, 'rejected')
    assert.equal(((outcome as PromiseRejectedResult).reason as { code?: string }).code, '40P01')
    assert.deepEqual(events, [100])
  })
})
