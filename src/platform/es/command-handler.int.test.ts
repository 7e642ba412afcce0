import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { postgresTestDatabase, type TestDatabase, uniqueName } from '../../../test/support/index.ts'
import { isAppError } from '../errors.ts'
import { readStream } from '../eventstore/event-store.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { isTransactionConflict } from '../sql/unavailable.ts'
import { createCommandHandler, jsonStateTable, type StateStore } from './command-handler.ts'
import { accept, type Decider } from './decider.ts'

/**
 * A real PostgreSQL deadlock between the two kinds of command the handler runs (case 5 of issue 13):
 * one with an expected version (HTTP If-Match) takes no row lock, appends its event and then waits
 * for the state row; one without takes the state row `FOR UPDATE` and then waits for the event's
 * (stream, version) key. PostgreSQL aborts one of them with 40P01; the handler runs it again before
 * its caller sees anything.
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
 * The real state table, with one pause: the pinned command's first save waits until the locking
 * command holds the row, which makes the two meet in the deadlock every time rather than by chance.
 */
function interleaved(): { store: StateStore<Counter>; locked: Promise<void>; atSave: Promise<void> } {
  const table = jsonStateTable<Counter>('counters', counter.initialState)
  let onLocked: () => void = () => {}
  let onSave: () => void = () => {}
  const locked = new Promise<void>((resolve) => {
    onLocked = resolve
  })
  const atSave = new Promise<void>((resolve) => {
    onSave = resolve
  })
  let armed = true
  return {
    locked,
    atSave,
    store: {
      async load(tx, streamId, options) {
        const loaded = await table.load(tx, streamId, options)
        if (options?.lock) onLocked()
        return loaded
      },
      async save(tx, streamId, state, version) {
        if (armed) {
          armed = false
          onSave()
          await locked
        }
        await table.save(tx, streamId, state, version)
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

  const race = async (maxDeadlockRetries?: number) => {
    const streamId = uniqueName('counter')
    const plain = createCommandHandler({
      db,
      onCommitted: () => {},
      streamType: 'counter',
      decider: counter,
      stateStore: jsonStateTable('counters', counter.initialState),
      toMessages: () => [],
    })
    await plain.handle(streamId, { type: 'Add', amount: 100 })
    const { store, atSave } = interleaved()
    const handler = createCommandHandler({
      db,
      onCommitted: () => {},
      streamType: 'counter',
      decider: counter,
      stateStore: store,
      toMessages: () => [],
      ...(maxDeadlockRetries === undefined ? {} : { maxDeadlockRetries }),
    })
    failures.length = 0
    const pinned = handler.handle(streamId, { type: 'Add', amount: 1 }, { expectedVersion: 1 })
    await atSave
    const locking = handler.handle(streamId, { type: 'Add', amount: 10 })
    const [pinnedOutcome, lockingOutcome] = await Promise.allSettled([pinned, locking])
    const events = (await readStream(database.db, streamId)).map((e) => (e.data as { amount: number }).amount)
    return { pinnedOutcome, lockingOutcome, events, deadlocks: failures.filter((e) => isTransactionConflict(e)) }
  }

  it('runs the deadlock victim again: each command commits or answers VERSION_CONFLICT, none sees the deadlock', async () => {
    const { pinnedOutcome, lockingOutcome, events, deadlocks } = await race()

    assert.ok(deadlocks.length >= 1, 'PostgreSQL detected a deadlock')
    assert.equal((deadlocks[0] as { code?: string }).code, '40P01')
    assert.equal(lockingOutcome.status, 'fulfilled', String((lockingOutcome as PromiseRejectedResult).reason))
    if (pinnedOutcome.status === 'rejected') {
      assert.ok(isAppError(pinnedOutcome.reason, 'VERSION_CONFLICT'), String(pinnedOutcome.reason))
      assert.deepEqual(events, [100, 10])
    } else {
      // The locking command was the victim: it ran again on the pinned command's state.
      assert.deepEqual(events, [100, 1, 10])
    }
  })

  it('without retries the caller gets the 40P01 (what the retries take away)', async () => {
    const { pinnedOutcome, lockingOutcome } = await race(0)

    const rejected = [pinnedOutcome, lockingOutcome].flatMap((o) => (o.status === 'rejected' ? [o.reason] : []))
    assert.equal(rejected.length, 1)
    assert.equal((rejected[0] as { code?: string } | undefined)?.code, '40P01')
  })
})
