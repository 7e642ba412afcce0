import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { type StatsPostgres, startStatsPostgres } from '../../../test/support/stats-postgres.ts'
import { watchedDatabase } from '../../../test/support/watched-db.ts'
import { sqlDeadLetterStore } from '../dead-letters/store.ts'
import { isAppError } from '../errors.ts'
import { readStream } from '../eventstore/event-store.ts'
import { createLogger } from '../logger.ts'
import { batchScope } from '../sql/batch.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import {
  type Add,
  type Added,
  COUNTERS_TABLE,
  type Counter,
  counter,
  counterOf,
  decodeJob,
  type Job,
  jobCommands,
} from '../testing/counter.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import { startReliableConsumer } from '../transport/reliable-consumer.ts'
import { createCommandHandler, jsonStateTable, NotForBatch } from './command-handler.ts'

/**
 * What a command costs in round trips to the database, counted statement by statement inside its
 * transaction (BEGIN and COMMIT come on top): every statement is a round trip, and round trips are
 * what the hot path pays for, so a change that adds one shows here. Also what the fewer statements
 * must keep: a copy of a consumed message seen before changes nothing and is refused nothing, and a
 * refused message leaves no trace in the inbox.
 */

function roundTrips(name: string, open: () => Promise<TestDatabase>) {
  describe(`round trips of a command on ${name}`, () => {
    let database: TestDatabase
    /** The statements run inside the handler's transactions since the last reset. */
    const statements: string[] = []
    let handler: ReturnType<typeof createCommandHandler<Add, Added, Counter>>

    before(async () => {
      database = await open()
      await migratePlatform(database.db)
      await database.db.exec(COUNTERS_TABLE)
      const real = database.db
      const counting = watchedDatabase(real, {
        inTransaction: (text) => statements.push(text.replace(/\s+/g, ' ').slice(0, 60)),
      })
      handler = createCommandHandler({
        db: counting,
        onCommitted: () => {},
        streamType: 'counter',
        decider: counter,
        stateStore: jsonStateTable('counters', counter.initialState),
        toMessages: (event) => [{ topic: 'counters', key: event.aggregateId, value: JSON.stringify(event) }],
      })
    })
    after(async () => database?.cleanup())

    const count = async <T>(work: () => Promise<T>): Promise<{ value: T; trips: number; seen: string[] }> => {
      statements.length = 0
      const value = await work()
      return { value, trips: statements.length, seen: [...statements] }
    }
    const inboxRows = async (messageId: string) =>
      (await database.db.query('SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2', ['counting', messageId]))
        .rows.length

    it('a consumed command is two statements (load; inbox, events, state and outbox in one); a copy of it is two too and changes nothing', async () => {
      const streamId = uniqueName('counter')
      const inbox = { consumer: 'counting', messageId: uniqueName('message') }
      const first = await count(() => handler.handle(streamId, { type: 'Add', amount: 5 }, { inbox }))
      assert.equal(first.trips, 2, first.seen.join('\n'))
      assert.equal(first.value.duplicate, false)
      assert.equal(first.value.version, 1)

      const copy = await count(() => handler.handle(streamId, { type: 'Add', amount: 5 }, { inbox }))
      assert.equal(copy.trips, 2, copy.seen.join('\n'))
      assert.equal(copy.value.duplicate, true)
      assert.deepEqual(copy.value.state, { total: 5 })
      assert.equal((await readStream(database.db, streamId)).length, 1)
    })

    it('a command from HTTP (no inbox) is two statements too', async () => {
      const streamId = uniqueName('counter')
      await handler.handle(streamId, { type: 'Add', amount: 1 })
      const pinned = await count(() => handler.handle(streamId, { type: 'Add', amount: 2 }, { expectedVersion: 1 }))
      assert.equal(pinned.trips, 2, pinned.seen.join('\n'))
      assert.equal(pinned.value.version, 2)
    })

    it('a copy that the state would now refuse (or that decides nothing) is a duplicate, not a refusal', async () => {
      const streamId = uniqueName('counter')
      const take = { consumer: 'counting', messageId: uniqueName('take') }
      await handler.handle(streamId, { type: 'Add', amount: 3 })
      await handler.handle(streamId, { type: 'Add', amount: -3 }, { inbox: take })
      // Applied once, the same message would now take the counter below zero: its copy is a duplicate.
      const copy = await count(() => handler.handle(streamId, { type: 'Add', amount: -3 }, { inbox: take }))
      assert.equal(copy.value.duplicate, true)
      assert.equal(copy.trips, 2, copy.seen.join('\n'))
      // A copy whose expected version is gone is a duplicate as well.
      const pinned = { consumer: 'counting', messageId: uniqueName('pinned') }
      await handler.handle(streamId, { type: 'Add', amount: 1 }, { inbox: pinned, expectedVersion: 2 })
      await handler.handle(streamId, { type: 'Add', amount: 1 })
      const stale = await handler.handle(streamId, { type: 'Add', amount: 1 }, { inbox: pinned, expectedVersion: 2 })
      assert.equal(stale.duplicate, true)
      // A message that decides nothing is recorded, and its copy is a duplicate.
      const nothing = { consumer: 'counting', messageId: uniqueName('nothing') }
      const once = await count(() => handler.handle(streamId, { type: 'Add', amount: 0 }, { inbox: nothing }))
      assert.deepEqual([once.value.duplicate, once.trips], [false, 2])
      assert.equal(await inboxRows(nothing.messageId), 1)
      assert.equal((await handler.handle(streamId, { type: 'Add', amount: 0 }, { inbox: nothing })).duplicate, true)
      assert.deepEqual(
        (await readStream(database.db, streamId)).map((e) => (e.data as { amount: number }).amount),
        [3, -3, 1, 1],
      )
    })

    it('a batch is two statements whatever its size, and ends as the same commands one at a time would', async () => {
      const [a, b] = [uniqueName('counter'), uniqueName('counter')]
      const add = (streamId: string, amount: number, messageId = uniqueName('message')) => ({
        metadata: { inbox: { consumer: 'counting', messageId } },
        command: { type: 'Add', amount, counter: streamId } as Add,
      })
      const streamOf = (command: Add) => (command as Add & { counter: string }).counter
      await handler.handle(a, { type: 'Add', amount: 10 })
      const repeated = add(b, 7)
      const items = [add(a, 1), add(b, 2), add(a, -11), repeated, add(a, 0), repeated, add(b, 3)]
      const batch = await count(() => handler.handleBatch(items, { streamOf }))
      // inbox and states; events, states and outbox (and BEGIN and COMMIT outside the count)
      assert.equal(batch.trips, 2, batch.seen.join('\n'))
      assert.deepEqual(
        batch.value.map((r) => r && [r.version, r.duplicate, r.events.length]),
        [
          [2, false, 1],
          [1, false, 1],
          [3, false, 1],
          [2, false, 1],
          [3, false, 0],
          [0, true, 0],
          [3, false, 1],
        ],
      )
      assert.deepEqual(
        (await readStream(database.db, a)).map((e) => [e.version, (e.data as { amount: number }).amount]),
        [
          [1, 10],
          [2, 1],
          [3, -11],
        ],
      )
      assert.deepEqual(
        (await readStream(database.db, b)).map((e) => (e.data as { amount: number }).amount),
        [2, 7, 3],
      )
      const states = await database.db.query<{ id: string; version: number; state: Counter }>(
        'SELECT id, version, state FROM counters WHERE id = ANY($1) ORDER BY id',
        [[a, b].sort()],
      )
      assert.deepEqual(Object.fromEntries(states.rows.map((r) => [r.id, [r.version, r.state.total]])), {
        [a]: [3, 0],
        [b]: [3, 12],
      })
      // Redelivered, the whole batch changes nothing.
      const again = await count(() => handler.handleBatch(items, { streamOf }))
      assert.ok(
        again.value.every((r) => r?.duplicate),
        JSON.stringify(again.value),
      )
      assert.equal((await readStream(database.db, a)).length, 3)
    })

    it('a batch holding a refusal or a stale expected version throws and writes nothing', async () => {
      const streamId = uniqueName('counter')
      const streamOf = (command: Add) => (command as Add & { counter: string }).counter
      const ok = {
        metadata: { inbox: { consumer: 'counting', messageId: uniqueName('ok') } },
        command: { type: 'Add', amount: 1, counter: streamId } as Add,
      }
      const refused = {
        metadata: { inbox: { consumer: 'counting', messageId: uniqueName('refused') } },
        command: { type: 'Add', amount: -5, counter: streamId } as Add,
      }
      const stale = {
        metadata: { inbox: { consumer: 'counting', messageId: uniqueName('stale') }, expectedVersion: 7 },
        command: { type: 'Add', amount: 1, counter: streamId } as Add,
      }
      for (const bad of [refused, stale]) {
        await assert.rejects(handler.handleBatch([ok, bad], { streamOf }), (error) => error instanceof NotForBatch)
      }
      assert.equal((await readStream(database.db, streamId)).length, 0)
      assert.equal(await inboxRows(ok.metadata.inbox.messageId), 0)
    })

    it('a refused message is refused every time and leaves nothing in the inbox', async () => {
      const streamId = uniqueName('counter')
      const message = { consumer: 'counting', messageId: uniqueName('refused') }
      for (let attempt = 0; attempt < 2; attempt++) {
        await assert.rejects(handler.handle(streamId, { type: 'Add', amount: -1 }, { inbox: message }), (error) =>
          isAppError(error, 'INVALID_TRANSITION'),
        )
      }
      const gone = { consumer: 'counting', messageId: uniqueName('gone') }
      await assert.rejects(
        handler.handle(uniqueName('counter'), { type: 'Add', amount: 1 }, { inbox: gone, expectedVersion: 3 }),
        (error) => isAppError(error, 'NOT_FOUND'),
      )
      assert.equal(await inboxRows(message.messageId), 0)
      assert.equal(await inboxRows(gone.messageId), 0)
    })
  })
}

/**
 * The same costs as PostgreSQL itself counts them (`pg_stat_statements` on a server of the test's
 * own): every statement the server executed, BEGIN and COMMIT included, so nothing the app does
 * outside the counting wrapper above goes unseen. Alone, a consumed command is four round trips; in a
 * consumer's batch or a group commit, the BEGIN and COMMIT are shared.
 */
describe('round trips of a command as PostgreSQL counts them', () => {
  let server: StatsPostgres
  const handlerOn = (db: SqlDatabase) =>
    createCommandHandler({
      db,
      onCommitted: () => {},
      streamType: 'counter',
      decider: counter,
      stateStore: jsonStateTable('counters', counter.initialState),
      toMessages: (event) => [{ topic: 'counters', key: event.aggregateId, value: JSON.stringify(event) }],
    })
  const consumed = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      streamId: uniqueName(`counted-${i}`),
      inbox: { consumer: 'counting', messageId: uniqueName('message') },
    }))
  const explain = (counted: Awaited<ReturnType<StatsPostgres['counted']>>) =>
    counted.byStatement.map((row) => `${row.calls}× ${row.query}`).join('\n')

  /**
   * `items` as one consumer's batch (`handleBatch`, new streams): each applied once, at version 1,
   * in one transaction of four statements, BEGIN and COMMIT included.
   */
  const assertOneBatchOfFour = async (items: Parameters<ReturnType<typeof handlerOn>['handleBatch']>[0]) => {
    const scope = batchScope(server.db)
    const handler = handlerOn(scope.db)
    await server.reset()
    const results = await scope.run(() =>
      handler.handleBatch(items, { streamOf: (command) => (command as Add & { counter: string }).counter }),
    )
    assert.ok(results.every((r) => r?.version === 1 && !r.duplicate))
    const counted = await server.counted()
    assert.equal(counted.transactions, 1, explain(counted))
    assert.equal(counted.statements, 4, explain(counted))
  }

  before(async () => {
    server = await startStatsPostgres()
    await migratePlatform(server.db)
    await server.db.exec(COUNTERS_TABLE)
  })
  after(async () => server?.stop())

  it('a consumed command alone: BEGIN, two statements, COMMIT', async () => {
    const handler = handlerOn(server.db)
    const messages = consumed(10)
    await server.reset()
    for (const m of messages) await handler.handle(m.streamId, { type: 'Add', amount: 1 }, { inbox: m.inbox })
    const counted = await server.counted()
    assert.equal(counted.transactions, 10, explain(counted))
    assert.equal(counted.statements, 10 * 4, explain(counted))
  })

  it('fifty consumed commands in a consumer’s batch: one BEGIN and one COMMIT for all', async () => {
    const scope = batchScope(server.db)
    const handler = handlerOn(scope.db)
    const messages = consumed(50)
    await server.reset()
    await scope.run(async () => {
      for (const m of messages) await handler.handle(m.streamId, { type: 'Add', amount: 1 }, { inbox: m.inbox })
    })
    const counted = await server.counted()
    assert.equal(counted.transactions, 1, explain(counted))
    assert.equal(counted.statements, 50 * 2 + 2, explain(counted))
  })

  it('fifty consumed commands as one batch (handleBatch): four statements in all, BEGIN and COMMIT included', async () => {
    await assertOneBatchOfFour(
      consumed(50).map((m) => ({
        metadata: { inbox: m.inbox },
        command: { type: 'Add', amount: 1, counter: m.streamId } as Add,
      })),
    )
  })

  it('a consumer’s batch that runs no statement (every message of it ignored) costs no transaction', async () => {
    const scope = batchScope(server.db)
    const handler = handlerOn(scope.db)
    await server.reset()
    let committed = false
    const results = await scope.run(async () => {
      scope.afterCommit(() => {
        committed = true
      })
      return handler.handleBatch([], { streamOf: () => 'none' })
    })
    assert.deepEqual(results, [])
    assert.ok(committed, 'what waited for the commit ran')
    const counted = await server.counted()
    assert.equal(counted.transactions, 0, explain(counted))
    assert.equal(counted.statements, 0, explain(counted))
    // One that does run a statement begins its transaction then, and commits it.
    const [message] = consumed(1)
    await scope.run(() =>
      handler.handle(message?.streamId as string, { type: 'Add', amount: 1 }, { inbox: message?.inbox }),
    )
    const after = await server.counted()
    assert.equal(after.transactions, 1, explain(after))
    assert.equal(after.statements, 4, explain(after))
  })

  it('fifty commands whose mappings read their stream first: still four statements, one locked read for all', async () => {
    await assertOneBatchOfFour(
      consumed(50).map((m) => ({
        metadata: { inbox: m.inbox },
        // As a journey's event does: the command depends on the stream's state.
        resolve: async (load: (streamId: string) => Promise<unknown>) => {
          const state = (await load(m.streamId)) as { total: number }
          return { type: 'Add', amount: state.total + 1, counter: m.streamId } as Add
        },
      })),
    )
  })

  it('fifty concurrent commands group-committed: far fewer transactions, two statements each', async () => {
    const scope = batchScope(server.db, { group: { maxInFlight: 1, maxSize: 64 } })
    const handler = handlerOn(scope.db)
    const messages = consumed(50)
    await server.reset()
    const results = await Promise.all(
      messages.map((m) => handler.handle(m.streamId, { type: 'Add', amount: 1 }, { inbox: m.inbox })),
    )
    assert.ok(
      results.every((r) => r.version === 1 && !r.duplicate),
      JSON.stringify([results.filter((r) => r.version !== 1 || r.duplicate), scope.groups]),
    )
    const counted = await server.counted()
    // The first starts alone at once; the others arrive while it runs and share the next one.
    assert.ok(counted.transactions <= 3, explain(counted))
    assert.equal(counted.statements, 50 * 2 + 2 * counted.transactions, explain(counted))
    assert.deepEqual(scope.groups, { transactions: counted.transactions, works: 50, fallbacks: 0 })
  })

  it('fifty concurrent commands from outside a consumer: four statements per transaction whatever its size, each answered alone', async () => {
    const scope = batchScope(server.db, { group: { maxInFlight: 1, maxSize: 64 } })
    const handler = handlerOn(scope.db)
    const shared = uniqueName('counted-shared')
    await handler.handle(shared, { type: 'Add', amount: 1 })
    const streams = Array.from({ length: 40 }, (_, i) => uniqueName(`counted-http-${i}`))
    await server.reset()
    const answers = await Promise.allSettled([
      // One stream per command, …
      ...streams.map((id) => handler.handle(id, { type: 'Add', amount: 2 })),
      // … five on one stream without an expected version (each on the state the one before left), …
      ...Array.from({ length: 5 }, () => handler.handle(shared, { type: 'Add', amount: 1 })),
      // … two that the state refuses, and three that name a version the stream has left.
      handler.handle(shared, { type: 'Add', amount: -100 }),
      handler.handle(uniqueName('counted-empty'), { type: 'Add', amount: -1 }),
      ...Array.from({ length: 3 }, () => handler.handle(shared, { type: 'Add', amount: 1 }, { expectedVersion: 1 })),
    ])
    const counted = await server.counted()
    // The first starts alone at once; the others arrive while it runs and share the next one.
    assert.ok(counted.transactions <= 3, explain(counted))
    assert.equal(counted.statements, 4 * counted.transactions, explain(counted))

    const value = (i: number) => {
      const answer = answers[i]
      assert.equal(answer?.status, 'fulfilled', String((answer as PromiseRejectedResult | undefined)?.reason))
      return (answer as PromiseFulfilledResult<{ version: number; state: Counter }>).value
    }
    for (let i = 0; i < 40; i++) assert.deepEqual([value(i).version, value(i).state], [1, { total: 2 }])
    const sharedVersions = Array.from({ length: 5 }, (_, i) => value(40 + i).version).sort()
    assert.deepEqual(sharedVersions, [2, 3, 4, 5, 6])
    for (const i of [45, 46]) {
      const answer = answers[i] as PromiseRejectedResult
      assert.equal(answer.status, 'rejected')
      assert.ok(isAppError(answer.reason, 'INVALID_TRANSITION'), String(answer.reason))
    }
    for (const i of [47, 48, 49]) {
      const answer = answers[i] as PromiseRejectedResult
      assert.equal(answer.status, 'rejected')
      assert.ok(isAppError(answer.reason, 'VERSION_CONFLICT'), String(answer.reason))
    }
    const events = await readStream(server.db, shared)
    assert.deepEqual(
      events.map((e) => e.version),
      [1, 2, 3, 4, 5, 6],
    )
  })

  it('a consumer that parks keys, in a group with no parked key: its batches read nothing of parked_keys but the group once per assignment', async () => {
    // The messages come from the embedded log on a PGlite of their own: only the consumer's work
    // reaches the counted server.
    const log = await pgliteTestDatabase()
    const transport = await createEmbeddedTransport({ db: log.db, partitions: 3, pollIntervalMs: 50 })
    const scope = batchScope(server.db)
    const handler = handlerOn(scope.db)
    const topic = uniqueName('jobs')
    const groupId = uniqueName('parking-counted')
    let applied = 0
    await server.reset()
    const subscription = await startReliableConsumer({
      transport,
      groupId,
      topics: [topic],
      decode: decodeJob,
      retry: { max: 0, backoffMs: 1 },
      logger: createLogger({ level: 'silent' }),
      batch: { max: 50, run: (work) => scope.run(work) },
      deadLetters: sqlDeadLetterStore(scope.db),
      parkKeys: true,
      handle: async () => {
        throw new Error('every batch goes to handleBatch')
      },
      handleBatch: async (items: readonly { value: Job }[]) => {
        await handler.handleBatch(jobCommands(items, groupId), { streamOf: counterOf })
        scope.afterCommit(() => {
          applied += items.length
        })
      },
    })
    try {
      await transport.publish(
        Array.from({ length: 60 }, (_, i) => {
          const job: Job = { id: uniqueName('job'), counter: uniqueName(`parked-${i % 6}`), amount: 1 }
          return { topic, key: job.counter, value: JSON.stringify(job) }
        }),
      )
      await waitFor(() => applied === 60, { message: 'the 60 jobs applied' })
      const counted = await server.counted()
      const calls = (pattern: RegExp) =>
        counted.byStatement.filter((row) => pattern.test(row.query)).reduce((sum, row) => sum + row.calls, 0)
      assert.equal(calls(/FROM parked_keys\s+WHERE group_id = \$1 AND message_key/), 0, explain(counted))
      // One question per partition reader of the embedded log (each has its own handler signal).
      const asked = calls(/EXISTS \(SELECT \S+ FROM parked_keys WHERE group_id = \$1\)/)
      assert.ok(asked >= 1 && asked <= 3, explain(counted))
      // Every other statement is the batches' own: BEGIN, two statements, COMMIT.
      assert.equal(counted.statements - asked, 4 * counted.transactions, explain(counted))
    } finally {
      await subscription.close()
      await transport.close()
      await log.cleanup()
    }
  })
})

roundTrips('PGlite', pgliteTestDatabase)
roundTrips('PostgreSQL', () => postgresTestDatabase('of_round_trips'))
