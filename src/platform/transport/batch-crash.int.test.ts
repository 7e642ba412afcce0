import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  follow,
  joined,
  kafkaBrokers,
  postgresTestDatabase,
  type TestDatabase,
  testDatabaseUrl,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { readStream } from '../eventstore/event-store.ts'
import { migratePlatform } from '../sql/migrations.ts'
import { openPglite } from '../sql/pglite.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { COUNTERS_TABLE, type Job } from '../testing/counter.ts'
import {
  BATCH_MAX,
  type CrashRun,
  type DatabaseLocation,
  openTransport,
  startJobConsumer,
} from './batch-crash.consumer.ts'
import { deadLetterTopic } from './reliable-consumer.ts'

/**
 * At-least-once across a crash: a consumer process is killed (SIGKILL) right after its first batch's
 * transaction committed and before its transport committed the batch's offsets. A fresh consumer of
 * the same group gets the batch again, and the inbox makes the second delivery change nothing: one
 * event, one outbox row and one inbox row per message, each counter at the sum of its jobs, nothing
 * dead-lettered. Each run checks that the batch really came again (so it cannot pass without a
 * redelivery).
 *
 * Without the inbox the same run must fail, and the control below shows it does: the command
 * handler would decide `Add` again on the counter's current state (a counter accepts any positive
 * amount), so every redelivered message would append a second event, write a second outbox row and
 * add its amount twice, and "one event per message" and "total = sum" would both break.
 */

const consumerScript = resolve(import.meta.dirname, 'batch-crash.consumer.ts')
const COUNTERS = 6
const JOBS_PER_COUNTER = 15

interface Backend {
  /** What the crashing process opens. */
  location: DatabaseLocation
  kafkaBrokers?: string[]
  /** This process's connection; PGlite's directory is single-process, so it is let go for the child. */
  open(): Promise<SqlDatabase>
  release(db: SqlDatabase): Promise<void>
  cleanup(): Promise<void>
}

/** Runs the consumer process until it kills itself after a batch commit; the ids of that batch. */
async function crashingConsumer(run: CrashRun): Promise<string[]> {
  const child = spawn(process.execPath, [consumerScript, JSON.stringify(run), '--crash-after-batch-commit'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  const exited = new Promise<NodeJS.Signals | number | null>((done) =>
    child.once('exit', (code, signal) => done(signal ?? code)),
  )
  try {
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, {
      timeoutMs: 60_000,
      message: () => `the consumer process never crashed after a batch; stdout: ${stdout}; stderr: ${stderr}`,
    })
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  const how = await exited
  assert.equal(how, 'SIGKILL', `the consumer process ended by ${how}, not its own SIGKILL; stderr: ${stderr}`)
  const report = JSON.parse(stdout.trim()) as { crashedAfterCommitOf: string[] }
  return report.crashedAfterCommitOf
}

function suite(name: string, setup: () => Promise<Backend>) {
  describe(`a crash between a batch's commit and its offset commit, on ${name}`, () => {
    let backend: Backend

    before(async () => {
      backend = await setup()
      const db = await backend.open()
      await migratePlatform(db)
      await db.exec(COUNTERS_TABLE)
      await backend.release(db)
    })
    after(async () => backend?.cleanup())

    /**
     * Publishes a backlog, lets the consumer process crash after its first batch commit, then runs
     * a fresh consumer of the same group until every message is handled and the crashed batch came
     * again. Returns what the test asserts on.
     */
    const crashAndRestart = async (inbox: boolean) => {
      const topic = uniqueName('crash_jobs')
      const outTopic = uniqueName('crash_out')
      const groupId = uniqueName('crash_workers')
      const counterIds = Array.from({ length: COUNTERS }, () => uniqueName('counter'))
      const jobs: Job[] = counterIds.flatMap((counterId) =>
        Array.from({ length: JOBS_PER_COUNTER }, (_, i) => ({
          id: `${counterId}-${i}`,
          counter: counterId,
          amount: i + 1,
        })),
      )

      // The backlog is all there before the consumer starts, so it is taken in batches.
      let db = await backend.open()
      let transport = await openTransport(db, backend.kafkaBrokers, uniqueName('crash_publisher'))
      await transport.ensureTopics([topic, deadLetterTopic(topic)])
      await transport.publish(jobs.map((job) => ({ topic, key: job.counter, value: JSON.stringify(job) })))
      await transport.close()
      await backend.release(db)

      const crashed = await crashingConsumer({
        database: backend.location,
        ...(backend.kafkaBrokers ? { kafkaBrokers: backend.kafkaBrokers } : {}),
        topic,
        outTopic,
        groupId,
      })
      assert.ok(crashed.length > 1 && crashed.length <= BATCH_MAX, `the crashed batch held ${crashed.length} messages`)

      db = await backend.open()
      const inboxIds = async () =>
        new Set(
          (
            await db.query<{ message_id: string }>('SELECT message_id FROM inbox WHERE consumer = $1', [groupId])
          ).rows.map((row) => row.message_id),
        )
      const appliedBeforeRestart = await inboxIds()
      const notCommitted = crashed.filter((id) => !appliedBeforeRestart.has(id))
      assert.deepEqual(notCommitted, [], "the crashed batch's transaction committed before the crash")

      transport = await openTransport(db, backend.kafkaBrokers, uniqueName('crash_restarted'))
      const handledAgain = new Map<string, boolean[]>()
      const subscription = await startJobConsumer({
        db,
        transport,
        groupId,
        topic,
        outTopic,
        inbox,
        onHandled: (id, duplicate) => handledAgain.set(id, [...(handledAgain.get(id) ?? []), duplicate]),
      })
      await joined(subscription)
      await waitFor(
        () =>
          crashed.every((id) => handledAgain.has(id)) &&
          jobs.every((job) => appliedBeforeRestart.has(job.id) || handledAgain.has(job.id)),
        {
          timeoutMs: 30_000,
          message: () =>
            `after the restart, ${handledAgain.size} messages handled; ` +
            `${crashed.filter((id) => !handledAgain.has(id)).length} of the crashed batch's ${crashed.length} not seen again`,
        },
      )
      // Waits for the batch in flight, and its transaction, to finish.
      await subscription.close()

      const events = new Map<string, number[]>()
      for (const counterId of counterIds) {
        events.set(
          counterId,
          (await readStream(db, counterId)).map((event) => (event.data as { amount: number }).amount),
        )
      }
      const { rows: counters } = await db.query<{ id: string; version: number; state: { total: number } }>(
        `SELECT id, version, state FROM counters WHERE id = ANY($1::text[])`,
        [counterIds],
      )
      const [outbox] = (
        await db.query<{ rows: string }>('SELECT count(*)::text AS rows FROM outbox WHERE topic = $1', [outTopic])
      ).rows
      const inboxRows = (await inboxIds()).size

      // Absence, waited for on a condition: a marker written after everything else reaches the
      // dead-letter topic's reader only once every earlier dead letter has.
      const marker = uniqueName('marker')
      const { seen: dead, sub: deadReader } = await follow(transport, deadLetterTopic(topic))
      await transport.publish([{ topic: deadLetterTopic(topic), key: marker, value: marker }])
      await waitFor(() => dead.some((message) => message.key === marker), {
        message: 'the marker reached the dead-letter topic',
      })
      await deadReader.close()
      await transport.close()
      await backend.release(db)

      return {
        jobs,
        counterIds,
        crashed,
        appliedBeforeRestart,
        handledAgain,
        events,
        counters,
        outboxRows: Number(outbox?.rows),
        inboxRows,
        deadLetters: dead.filter((message) => message.key !== marker),
      }
    }

    it('redelivers the crashed batch, and the inbox makes the redelivery change nothing', async () => {
      const run = await crashAndRestart(true)
      const { jobs, crashed, appliedBeforeRestart, handledAgain } = run

      // The redelivery happened: the crashed batch, and perhaps more that was handled and not
      // committed yet, came to the new consumer; every one of them was one it had applied already.
      const redelivered = [...handledAgain.keys()].filter((id) => appliedBeforeRestart.has(id))
      assert.ok(redelivered.length >= crashed.length, `${redelivered.length} redelivered, ${crashed.length} crashed`)
      for (const id of crashed) assert.ok(handledAgain.has(id), `${id} of the crashed batch came again`)
      for (const [id, outcomes] of handledAgain) {
        assert.deepEqual(
          outcomes,
          outcomes.map(() => appliedBeforeRestart.has(id)),
          `${id}: a duplicate exactly when it was applied before the crash`,
        )
      }

      // Every message applied exactly once, in order.
      for (const counterId of run.counterIds) {
        const amounts = jobs.filter((job) => job.counter === counterId).map((job) => job.amount)
        assert.deepEqual(run.events.get(counterId), amounts, `${counterId}: one event per job, in order`)
        const state = run.counters.find((row) => row.id === counterId)
        assert.deepEqual(
          state && { version: state.version, total: state.state.total },
          { version: amounts.length, total: amounts.reduce((a, b) => a + b, 0) },
          `${counterId}: state`,
        )
      }
      assert.equal(run.outboxRows, jobs.length, 'one outbox row per message')
      assert.equal(run.inboxRows, jobs.length, 'one inbox row per message')
      assert.deepEqual(
        run.deadLetters.map((message) => message.value),
        [],
        'nothing dead-lettered',
      )
    })

    it('control: without the inbox, the same redelivery applies the crashed batch twice', async () => {
      const run = await crashAndRestart(false)
      const twice = [...run.handledAgain.keys()].filter((id) => run.appliedBeforeRestart.has(id))
      assert.ok(twice.length >= run.crashed.length)
      const events = [...run.events.values()].reduce((sum, amounts) => sum + amounts.length, 0)
      assert.equal(events, run.jobs.length + twice.length, 'a second event for every redelivered message')
      assert.equal(run.outboxRows, run.jobs.length + twice.length, 'a second outbox row for every redelivered message')
    })
  })
}

suite('the embedded log on PGlite (a data directory the two processes take in turn)', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'orderflow-batch-crash-'))
  return {
    location: { dataDir },
    open: () => openPglite(dataDir),
    release: (db) => db.close(),
    cleanup: () => rm(dataDir, { recursive: true, force: true }),
  }
})

/** A fresh schema, which the consumer process reaches by name. */
async function postgresBackend(kafka: string[] | undefined): Promise<Backend> {
  const database: TestDatabase = await postgresTestDatabase('of_batch_crash')
  const { rows } = await database.db.query<{ schema: string }>('SELECT current_schema() AS schema')
  const schema = rows[0]?.schema
  if (!schema) throw new Error('the test schema is not on the search path')
  return {
    location: { url: testDatabaseUrl, schema },
    ...(kafka ? { kafkaBrokers: kafka } : {}),
    open: async () => database.db,
    release: async () => {},
    cleanup: () => database.cleanup(),
  }
}

suite('the embedded log on PostgreSQL', () => postgresBackend(undefined))

suite('Kafka and PostgreSQL', () => postgresBackend(kafkaBrokers()))
