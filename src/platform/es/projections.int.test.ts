import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { watchedDatabase } from '../../../test/support/watched-db.ts'
import { createLogger } from '../logger.ts'
import { migratePlatform } from '../sql/migrations.ts'
import { type Add, type Added, COUNTERS_TABLE, type Counter, counter } from '../testing/counter.ts'
import { createCommandHandler, jsonStateTable } from './command-handler.ts'
import { type ProjectionRunner, startProjections } from './projections.ts'

/**
 * Who wakes a projection: a commit that appended events of a stream type it reads, or one that
 * does not say what it wrote (another process's, a writer that does not know). A commit of other
 * stream types' events, or of outbox rows alone, does not: at low rates, where nothing batches,
 * each such wake-up was a transaction that read nothing (a checkpoint locked, the events after it
 * read, nothing found).
 */
describe('projections are woken by the commits they read', () => {
  let database: TestDatabase
  let runner: ProjectionRunner
  /** Passes of the runner over the projection (a checkpoint read each). */
  let passes = 0
  const applied: string[] = []
  const handler = (streamType: string) =>
    createCommandHandler<Add, Added, Counter>({
      db: database.db,
      onCommitted: (written) => runner.notify(written.streamTypes),
      streamType,
      decider: counter,
      stateStore: jsonStateTable('counters', counter.initialState),
      toMessages: () => [],
    })

  before(async () => {
    database = await pgliteTestDatabase()
    await migratePlatform(database.db)
    await database.db.exec(COUNTERS_TABLE)
    const real = database.db
    const counting = watchedDatabase(real, {
      inTransaction: (text) => {
        if (text.includes('FROM projection_checkpoints WHERE name = $1 FOR UPDATE')) passes++
      },
    })
    runner = startProjections({
      db: counting,
      logger: createLogger({ level: 'silent' }),
      // Only wake-ups run it: a poll in the middle would be counted as one.
      pollIntervalMs: 600_000,
      projections: [
        {
          name: uniqueName('counted'),
          streamTypes: ['counter'],
          async handle(_tx, events) {
            for (const event of events) applied.push(event.streamId)
          },
          async truncate() {},
        },
      ],
    })
    await waitFor(async () => (passes >= 1 ? true : null), { message: () => 'the first pass of the runner' })
  })
  after(async () => {
    await runner?.stop()
    await database?.cleanup()
  })

  it('a commit of another stream type, or of outbox rows alone, does not wake it; one of its own does', async () => {
    const before = passes
    const others = handler('tally')
    for (let i = 0; i < 3; i++) await others.handle(uniqueName('tally'), { type: 'Add', amount: 1 })
    runner.notify([])
    const mine = uniqueName('counter')
    await handler('counter').handle(mine, { type: 'Add', amount: 2 })
    await waitFor(async () => (applied.includes(mine) ? true : null), { message: () => 'the counter applied' })
    // Woken by the other stream type's three commits and the outbox rows, the runner would have
    // passed four more times (each wake-up while it waits starts a pass).
    assert.equal(passes - before, 1, `passes since the first: ${passes - before}`)
  })

  it('a commit that does not say what it wrote wakes it', async () => {
    const before = passes
    runner.notify()
    await waitFor(async () => (passes > before ? true : null), { message: () => 'a pass after notify()' })
  })
})
