import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  follow,
  joined,
  kafkaBrokers,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { watchedDatabase } from '../../../test/support/watched-db.ts'
import { AppError } from '../errors.ts'
import { createCommandHandler, jsonStateTable } from '../es/command-handler.ts'
import { readStream } from '../eventstore/event-store.ts'
import { createLogger } from '../logger.ts'
import { batchScope } from '../sql/batch.ts'
import { migratePlatform } from '../sql/migrations.ts'
import { COUNTERS_TABLE, counter, counterOf, decodeJob, type Job, jobCommands } from '../testing/counter.ts'
import { createEmbeddedTransport } from './embedded.ts'
import { createKafkaTransport } from './kafka.ts'
import { partitionForKey } from './partitioner.ts'
import type { Transport } from './port.ts'
import { type DeadLetterRecord, deadLetterTopic, startReliableConsumer } from './reliable-consumer.ts'

/**
 * A partition's backlog in one transaction (`batch`), with the real command handler and inbox:
 * good messages share a transaction; a batch holding poison, a refused command or a stale expected
 * version is handled again one message at a time, so only those are dead-lettered and every other
 * message is applied once, in order.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

function suite(
  name: string,
  open: () => Promise<{ database: TestDatabase; transport: Transport; cleanup(): Promise<void> }>,
) {
  describe(`a consumer's batches on ${name}`, () => {
    let database: TestDatabase
    let transport: Transport
    let cleanup: () => Promise<void>
    /** Transactions begun on the database itself (a batch is one, whatever joins it). */
    let transactions = 0
    let scope: ReturnType<typeof batchScope>

    before(async () => {
      ;({ database, transport, cleanup } = await open())
      await migratePlatform(database.db)
      await database.db.exec(COUNTERS_TABLE)
      const real = database.db
      const counting = watchedDatabase(real, {
        transaction: () => {
          transactions++
        },
      })
      scope = batchScope(counting)
    })
    after(async () => cleanup())

    /** Batches `handleBatch` applied in one statement per table (not handed back one by one). */
    let bulkApplied = 0
    /** The counters' command handler over the batch scope's database, as a declared service's. */
    const counterHandler = () =>
      createCommandHandler({
        db: scope.db,
        onCommitted: () => {},
        streamType: 'counter',
        decider: counter,
        stateStore: jsonStateTable('counters', counter.initialState),
        toMessages: () => [],
      })
    /**
     * A consumer of counter jobs: with `bulk`, a batch goes to the handler's `handleBatch` (one
     * statement per table for the whole batch) before the one-by-one path, as a declared service's.
     */
    const start = async (topic: string, groupId: string, bulk = false) => {
      const handler = counterHandler()
      const subscription = await startReliableConsumer({
        transport,
        groupId,
        topics: [topic],
        decode: decodeJob,
        retry: { max: 1, backoffMs: 10 },
        logger,
        batch: { max: 50, run: (work) => scope.run(work) },
        ...(bulk
          ? {
              handleBatch: async (items: readonly { value: Job }[]) => {
                await handler.handleBatch(jobCommands(items, groupId), { streamOf: counterOf })
                bulkApplied++
              },
            }
          : {}),
        handle: async (job) => {
          await handler.handle(
            job.counter,
            { type: 'Add', amount: job.amount },
            {
              inbox: { consumer: groupId, messageId: job.id },
              ...(job.expectedVersion !== undefined ? { expectedVersion: job.expectedVersion } : {}),
            },
          )
        },
      })
      await joined(subscription)
      return subscription
    }
    const amounts = async (counterId: string) =>
      (await readStream(database.db, counterId)).map((e) => (e.data as { amount: number }).amount)

    for (const bulk of [false, true]) {
      const how = bulk ? ', one statement per table' : ''
      it(`applies a backlog of good messages in one transaction per batch${how}, each once and in order`, async () => {
        const topic = uniqueName('batch_jobs')
        const groupId = uniqueName('batch_workers')
        const counterId = uniqueName('counter')
        await transport.publish(
          Array.from({ length: 30 }, (_, i) => ({
            topic,
            key: counterId,
            value: JSON.stringify({ id: `${counterId}-${i}`, counter: counterId, amount: i + 1 }),
          })),
        )
        const before = transactions
        const bulkBefore = bulkApplied
        const subscription = await start(topic, groupId, bulk)
        let applied = 0
        await waitFor(
          async () => {
            applied = (await amounts(counterId)).length
            return applied === 30
          },
          {
            message: () => `applied ${applied} of 30`,
          },
        )
        await subscription.close()
        assert.deepEqual(
          await amounts(counterId),
          Array.from({ length: 30 }, (_, i) => i + 1),
        )
        const used = transactions - before
        assert.ok(used < 30, `30 messages of a backlog took ${used} transactions, not one each`)
        if (bulk) assert.ok(bulkApplied > bulkBefore, 'no batch went through handleBatch')
      })

      for (const withPoison of [false, true]) {
        it(`a batch with ${withPoison ? 'poison, ' : ''}a refused command and a stale version commits the others and dead-letters only those${how}`, async () => {
          const topic = uniqueName('batch_mixed')
          const groupId = uniqueName('batch_mixed')
          const counterId = uniqueName('counter')
          const job = (n: number, extra: Partial<Job> = {}) => ({
            topic,
            key: counterId,
            value: JSON.stringify({ id: `${counterId}-${n}`, counter: counterId, amount: 1, ...extra }),
          })
          const { seen: dead, sub: deadReader } = await follow(transport, deadLetterTopic(topic))
          await transport.publish([
            job(0),
            job(1),
            ...(withPoison ? [{ topic, key: counterId, value: 'not json at all' }] : [job(2)]),
            job(3),
            job(4, { amount: -100 }),
            job(5),
            job(6, { expectedVersion: 1 }),
            job(7),
          ])
          const subscription = await start(topic, groupId, bulk)
          let applied = 0
          await waitFor(
            async () => {
              applied = (await amounts(counterId)).length
              return applied === (withPoison ? 5 : 6) && dead.length === (withPoison ? 3 : 2)
            },
            {
              message: () => `applied ${applied}, ${dead.length} dead letters`,
            },
          )
          await subscription.close()
          await deadReader.close()
          assert.deepEqual(await amounts(counterId), withPoison ? [1, 1, 1, 1, 1] : [1, 1, 1, 1, 1, 1])
          const records = dead.map((m) => JSON.parse(m.value) as DeadLetterRecord)
          assert.deepEqual(
            records.map((r) => [r.reason, r.error.code ?? null]),
            [
              ...(withPoison ? [['NOT_JSON', 'POISON_MESSAGE']] : []),
              ['REJECTED', 'INVALID_TRANSITION'],
              ['REJECTED', 'VERSION_CONFLICT'],
            ],
          )
          const inbox = await database.db.query<{ message_id: string }>(
            'SELECT message_id FROM inbox WHERE consumer = $1 ORDER BY message_id',
            [groupId],
          )
          assert.deepEqual(
            inbox.rows.map((r) => r.message_id),
            (withPoison ? [0, 1, 3, 5, 7] : [0, 1, 2, 3, 5, 7]).map((n) => `${counterId}-${n}`),
            'refused messages leave nothing in the inbox',
          )
        })
      }
    }

    it("partitions' batches that arrive while another runs share the next transaction; a refusal costs only its own partition's batch", async () => {
      const topic = uniqueName('batch_merged')
      const groupId = uniqueName('batch_merged')
      // Three keys in each of the topic's three partitions (the transports' own partitioner).
      const counters: string[] = []
      const perPartition = [0, 0, 0]
      while (counters.length < 9) {
        const counterId = uniqueName('counter')
        const partition = partitionForKey(counterId, 3)
        if ((perPartition[partition] ?? 0) >= 3) continue
        perPartition[partition] = (perPartition[partition] ?? 0) + 1
        counters.push(counterId)
      }
      const refused = counters[0] as string
      await transport.publish(
        counters.flatMap((counterId) =>
          Array.from({ length: 5 }, (_, i) => ({
            topic,
            key: counterId,
            value: JSON.stringify({
              id: `${counterId}-${i}`,
              counter: counterId,
              amount: counterId === refused && i === 2 ? -100 : 1,
            }),
          })),
        ),
      )
      const handler = counterHandler()
      // Partitions whose batches reached the consumer (decoded first, then queued for a transaction).
      const arrived = new Set<number>()
      let refusedIn = -1
      const oneByOne = new Set<number>()
      /** The partitions of each `handleBatch` call, in order. */
      const calls: number[][] = []
      const { seen: dead, sub: deadReader } = await follow(transport, deadLetterTopic(topic))
      const subscription = await startReliableConsumer({
        transport,
        groupId,
        topics: [topic],
        decode: (message) => {
          arrived.add(message.partition)
          if (message.key === refused) refusedIn = message.partition
          return decodeJob(message)
        },
        retry: { max: 0, backoffMs: 10 },
        logger,
        batch: { max: 50, run: (work) => scope.run(work), shareTransactions: true },
        handleBatch: async (items) => {
          // The first transaction is held until the other partitions' batches wait behind it.
          if (calls.length === 0)
            await waitFor(() => arrived.size === 3, { message: () => `${arrived.size} partitions` })
          calls.push([...new Set(items.map(({ message }) => message.partition))])
          await handler.handleBatch(jobCommands(items, groupId), { streamOf: counterOf })
        },
        handle: async (job, message) => {
          oneByOne.add(message.partition)
          await handler.handle(
            job.counter,
            { type: 'Add', amount: job.amount },
            { inbox: { consumer: groupId, messageId: job.id } },
          )
        },
      })
      await joined(subscription)
      const applied = async () => (await Promise.all(counters.map(amounts))).map((list) => list.length)
      let counts: number[] = []
      await waitFor(
        async () => {
          counts = await applied()
          return counts.reduce((a, b) => a + b, 0) === 44 && dead.length === 1
        },
        { message: () => `applied ${counts.join(', ')}; ${dead.length} dead letters` },
      )
      await subscription.close()
      await deadReader.close()
      assert.deepEqual(counts, [4, 5, 5, 5, 5, 5, 5, 5, 5], 'every message but the refused one, once')
      assert.ok(
        calls.some((partitions) => partitions.length > 1),
        `no transaction held more than one partition's batch: ${JSON.stringify(calls)}`,
      )
      assert.equal((JSON.parse(dead[0]?.value ?? '{}') as DeadLetterRecord).reason, 'REJECTED')
      // The refused message's partition went one by one; the other partitions' batches committed as
      // batches, the ones that had shared its transaction too.
      assert.deepEqual([...oneByOne], [refusedIn], "only the refused key's partition was handled one by one")
    })

    it('a transaction that throws inside a batch, even when its caller catches it, rolls the batch back', async () => {
      let ranAlone = 0
      await assert.rejects(
        scope.run(async () => {
          await scope.db.query('INSERT INTO counters (id, version, state, updated_at) VALUES ($1, 1, $2, now())', [
            'rolled-back',
            '{}',
          ])
          await scope.db
            .transaction(async () => {
              throw new AppError('INVALID_TRANSITION', 'refused inside the batch')
            })
            .catch(() => {})
          scope.afterCommit(() => {
            ranAlone++
          })
        }),
        /inside the batch failed/,
      )
      const { rows } = await database.db.query("SELECT 1 FROM counters WHERE id = 'rolled-back'")
      assert.equal(rows.length, 0)
      assert.equal(ranAlone, 0, 'callbacks for after the commit are dropped with the batch')
    })
  })
}

suite('the embedded log on PGlite', async () => {
  const database = await pgliteTestDatabase()
  const transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
  return {
    database,
    transport,
    async cleanup() {
      await transport.close()
      await database.cleanup()
    },
  }
})

suite('Kafka and PostgreSQL', async () => {
  const database = await postgresTestDatabase('of_batch')
  const transport = await createKafkaTransport({
    brokers: kafkaBrokers(),
    clientId: uniqueName('batch'),
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
  })
  return {
    database,
    transport,
    async cleanup() {
      await transport.close()
      await database.cleanup()
    },
  }
})
