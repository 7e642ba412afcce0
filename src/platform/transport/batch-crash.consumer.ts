import { writeSync } from 'node:fs'
import { createCommandHandler, jsonStateTable } from '../es/command-handler.ts'
import { createLogger } from '../logger.ts'
import { batchScope } from '../sql/batch.ts'
import { openPglite } from '../sql/pglite.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { openPostgres } from '../sql/postgres.ts'
import { counter, decodeJob, type Job } from '../testing/counter.ts'
import { createEmbeddedTransport } from './embedded.ts'
import { createKafkaTransport } from './kafka.ts'
import type { Transport } from './port.ts'
import { startReliableConsumer } from './reliable-consumer.ts'

/**
 * The batched consumer of `batch-crash.int.test.ts`, and the process that crashes with it.
 *
 * Imported, it is the consumer: counter jobs through the real command handler (inbox, event store,
 * state table, outbox) in batches of one transaction each (`batchScope`). Run as a process, it is
 * the same consumer on the database and transport that its first argument names (JSON, a
 * `CrashRun`), and with `--crash-after-batch-commit` it kills itself (SIGKILL) the moment its first
 * batch of several messages is handled: the batch's transaction has committed, and the transport has
 * not been told yet, so it has not committed the batch's offsets. It first writes the batch's job
 * ids to stdout, one JSON line, for the test to look for them again.
 */

/** A PGlite data directory, or a schema of a PostgreSQL database. */
export type DatabaseLocation = { dataDir: string } | { url: string; schema: string }

export interface CrashRun {
  database: DatabaseLocation
  /** Kafka's brokers; without them, the embedded log in the same database. */
  kafkaBrokers?: string[]
  topic: string
  /** Where the counters' events go, through the outbox (no relay runs: the rows stay). */
  outTopic: string
  groupId: string
}

export const BATCH_MAX = 10

export function openDatabase(location: DatabaseLocation): Promise<SqlDatabase> | SqlDatabase {
  return 'dataDir' in location
    ? openPglite(location.dataDir)
    : openPostgres({ connectionString: location.url, schema: location.schema, max: 4 })
}

export function openTransport(
  db: SqlDatabase,
  kafkaBrokers: string[] | undefined,
  clientId: string,
): Promise<Transport> {
  if (!kafkaBrokers) return createEmbeddedTransport({ db, partitions: 3, pollIntervalMs: 50 })
  return createKafkaTransport({
    brokers: kafkaBrokers,
    clientId,
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
    // A member killed without leaving holds its partitions until its session runs out: the
    // broker's shortest (group.min.session.timeout.ms), so the restarted consumer joins soon.
    sessionTimeoutMs: 6_000,
  })
}

export async function startJobConsumer(options: {
  db: SqlDatabase
  transport: Transport
  groupId: string
  topic: string
  outTopic: string
  /** Without the inbox, only for the control that shows what a redelivery does without it. */
  inbox: boolean
  onHandled?: (jobId: string, duplicate: boolean) => void
}) {
  const { groupId, outTopic } = options
  const scope = batchScope(options.db)
  const handler = createCommandHandler({
    db: scope.db,
    onCommitted: () => {},
    streamType: 'counter',
    decider: counter,
    stateStore: jsonStateTable('counters', counter.initialState),
    toMessages: (event) => [
      {
        topic: outTopic,
        key: event.aggregateId,
        value: JSON.stringify({ version: event.version, amount: event.amount }),
      },
    ],
  })
  return startReliableConsumer({
    transport: options.transport,
    groupId,
    topics: [options.topic],
    decode: decodeJob,
    retry: { max: 1, backoffMs: 10 },
    logger: createLogger({ level: process.env.LOG_LEVEL ?? 'silent' }),
    batch: { max: BATCH_MAX, run: (work) => scope.run(work) },
    handle: async (job) => {
      const result = await handler.handle(
        job.counter,
        { type: 'Add', amount: job.amount },
        options.inbox ? { inbox: { consumer: groupId, messageId: job.id } } : {},
      )
      options.onHandled?.(job.id, result.duplicate)
    },
  })
}

/**
 * The transport as it is, except that a batch handler that resolved for several messages kills the
 * process before the adapter sees it resolve. Both adapters commit a batch's offsets only after its
 * handler resolved, and the reliable consumer resolves only after `batch.run` committed the batch's
 * transaction: this is the one point between the two commits, reached without touching an adapter.
 */
export function crashingAfterBatchCommit(transport: Transport): Transport {
  return {
    kind: transport.kind,
    ensureTopics: (topics) => transport.ensureTopics(topics),
    publish: (messages, options) => transport.publish(messages, options),
    ping: () => transport.ping(),
    groupLag: (groups) => transport.groupLag(groups),
    readTopic: (topic, visit, options) => transport.readTopic(topic, visit, options),
    describeLog: (options) => transport.describeLog(options),
    close: () => transport.close(),
    subscribe(options) {
      const batch = options.batch
      if (!batch) return transport.subscribe(options)
      return transport.subscribe({
        ...options,
        batch: {
          max: batch.max,
          async handle(messages, context) {
            await batch.handle(messages, context)
            // A batch of one is handled without a batch transaction: not the case under test.
            if (messages.length < 2) return
            const ids = messages.map((message) => (JSON.parse(message.value) as Job).id)
            writeSync(1, `${JSON.stringify({ crashedAfterCommitOf: ids })}\n`)
            process.kill(process.pid, 'SIGKILL')
            // A signal to oneself lands before kill() returns; should it not, nothing may commit.
            await new Promise<never>(() => {})
          },
        },
      })
    },
  }
}

if (import.meta.main) {
  const run = JSON.parse(process.argv[2] ?? 'null') as CrashRun | null
  if (!run) throw new Error('the first argument (JSON) names the database, the transport, the topic and the group')
  const db = await openDatabase(run.database)
  const opened = await openTransport(db, run.kafkaBrokers, `${run.groupId}-crashing`)
  const transport = process.argv.includes('--crash-after-batch-commit') ? crashingAfterBatchCommit(opened) : opened
  await startJobConsumer({ db, transport, groupId: run.groupId, topic: run.topic, outTopic: run.outTopic, inbox: true })
}
