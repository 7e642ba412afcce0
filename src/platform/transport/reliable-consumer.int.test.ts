import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import {
  follow,
  joined,
  kafkaBrokers,
  pgliteTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { createMetrics } from '../metrics.ts'
import { createEmbeddedTransport } from './embedded.ts'
import { createKafkaTransport } from './kafka.ts'
import type { IncomingMessage, Transport } from './port.ts'
import { type DeadLetterRecord, type Decoded, deadLetterTopic, startReliableConsumer } from './reliable-consumer.ts'

/**
 * Retries, dead letters and poison messages behave the same on every transport: the same cases run
 * on the embedded log and on the real Kafka broker.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

interface Job {
  id: number
  failTimes?: number
  permanent?: boolean
}

function decodeJob(message: IncomingMessage): Decoded<Job> {
  try {
    const value = JSON.parse(message.value) as Partial<Job>
    if (typeof value.id !== 'number') return { ok: false, reason: 'INVALID_EVENT', message: 'id: must be a number' }
    return { ok: true, value: value as Job }
  } catch {
    return { ok: false, reason: 'NOT_JSON', message: 'message is not JSON' }
  }
}

function suite(name: string, open: () => Promise<{ transport: Transport; cleanup(): Promise<void> }>) {
  describe(`reliable consumer on ${name}`, () => {
    let transport: Transport
    let cleanup: () => Promise<void>
    before(async () => {
      ;({ transport, cleanup } = await open())
    })
    after(async () => cleanup())

    it('retries a failing handler with backoff, dead-letters it with the error once retries are spent, and keeps the partition flowing', async () => {
      const topic = uniqueName('jobs')
      const attempts = new Map<number, number>()
      const handled: number[] = []
      const metrics = createMetrics()
      const subscription = await startReliableConsumer({
        transport,
        groupId: uniqueName('workers'),
        topics: [topic],
        decode: decodeJob,
        retry: { max: 3, backoffMs: 20 },
        logger,
        metrics,
        handle: async (job) => {
          const n = (attempts.get(job.id) ?? 0) + 1
          attempts.set(job.id, n)
          if (n <= (job.failTimes ?? 0)) throw new Error(`job ${job.id} failed on attempt ${n}`)
          handled.push(job.id)
        },
      })
      const { seen: dlq, sub: dlqReader } = await follow(transport, deadLetterTopic(topic))
      await joined(subscription)
      // Same key: one partition, so job 3 is only reached if the partition keeps flowing past job 2.
      await transport.publish([
        { topic, key: 'k', value: JSON.stringify({ id: 1, failTimes: 2 }) },
        { topic, key: 'k', value: JSON.stringify({ id: 2, failTimes: 10 }) },
        { topic, key: 'k', value: JSON.stringify({ id: 3 }) },
      ])
      await waitFor(() => handled.includes(3) && dlq.length === 1, {
        message: () => `handled=${handled} dlq=${dlq.length}`,
      })
      assert.deepEqual(handled, [1, 3])
      assert.equal(attempts.get(1), 3, 'job 1 succeeds on its third attempt')
      assert.equal(attempts.get(2), 4, 'job 2 is tried once and retried 3 times')
      const record = JSON.parse(dlq[0]?.value ?? '{}') as DeadLetterRecord
      assert.equal(record.originalTopic, topic)
      assert.equal(record.key, 'k')
      assert.equal(record.reason, 'RETRIES_EXHAUSTED')
      assert.equal(record.attempts, 4)
      assert.equal(record.error.message, 'job 2 failed on attempt 4')
      assert.match(record.error.stack ?? '', /Error: job 2 failed/)
      assert.equal(JSON.parse(record.payload).id, 2)
      assert.ok(!Number.isNaN(Date.parse(record.failedAt)))
      assert.equal(typeof record.partition, 'number')
      assert.match(record.offset, /^\d+$/)
      assert.equal(dlq[0]?.headers['dlq-reason'], 'RETRIES_EXHAUSTED')
      const metricsText = await metrics.registry.metrics()
      assert.match(metricsText, /orderflow_handler_retries_total\{[^}]*\} 5/)
      assert.match(metricsText, /orderflow_dead_letters_total\{[^}]*reason="RETRIES_EXHAUSTED"[^}]*\} 1/)
      await subscription.close()
      await dlqReader.close()
    })

    it('sends poison messages to the dead-letter topic at once, without retries, with the reason', async () => {
      const topic = uniqueName('jobs')
      const calls: number[] = []
      const subscription = await startReliableConsumer({
        transport,
        groupId: uniqueName('workers'),
        topics: [topic],
        decode: decodeJob,
        retry: { max: 3, backoffMs: 5_000 },
        logger,
        handle: async (job) => void calls.push(job.id),
      })
      const { seen: dlq, sub: dlqReader } = await follow(transport, deadLetterTopic(topic))
      await joined(subscription)
      await transport.publish([
        { topic, key: 'p', value: 'this is not json' },
        { topic, key: 'p', value: JSON.stringify({ nope: true }) },
        { topic, key: 'p', value: JSON.stringify({ id: 7 }) },
      ])
      // The backoff is 5 s: finishing well before it proves no retry happened.
      await waitFor(() => calls.includes(7) && dlq.length === 2, {
        timeoutMs: 4_000,
        message: () => `calls=${calls} dlq=${dlq.length}`,
      })
      const reasons = dlq.map((m) => (JSON.parse(m.value) as DeadLetterRecord).reason).sort()
      assert.deepEqual(reasons, ['INVALID_EVENT', 'NOT_JSON'])
      const notJson = dlq.map((m) => JSON.parse(m.value) as DeadLetterRecord).find((r) => r.reason === 'NOT_JSON')
      assert.equal(notJson?.payload, 'this is not json')
      assert.equal(notJson?.attempts, 0)
      assert.deepEqual(calls, [7])
      await subscription.close()
      await dlqReader.close()
    })

    it('dead-letters a permanently rejected message without retrying it', async () => {
      const topic = uniqueName('jobs')
      let calls = 0
      const subscription = await startReliableConsumer({
        transport,
        groupId: uniqueName('workers'),
        topics: [topic],
        decode: decodeJob,
        retry: { max: 3, backoffMs: 5_000 },
        logger,
        isPermanent: (error) => error.message.startsWith('rejected'),
        handle: async () => {
          calls++
          throw new Error('rejected: cannot confirm an order that is CANCELLED')
        },
      })
      const { seen: dlq, sub: dlqReader } = await follow(transport, deadLetterTopic(topic))
      await joined(subscription)
      await transport.publish([{ topic, key: 'r', value: JSON.stringify({ id: 1 }) }])
      await waitFor(() => dlq.length === 1, { timeoutMs: 4_000, message: 'the rejection is dead-lettered' })
      const record = JSON.parse(dlq[0]?.value ?? '{}') as DeadLetterRecord
      assert.equal(record.reason, 'REJECTED')
      assert.equal(record.attempts, 1)
      assert.equal(calls, 1)
      await subscription.close()
      await dlqReader.close()
    })

    it('keeps retrying a dead letter it cannot write, with an error log and a metric, and never stops or loses the message', async () => {
      const topic = uniqueName('jobs')
      await transport.ensureTopics([topic, deadLetterTopic(topic)])
      // Fault injection: dead-letter publishes fail until the "broker" comes back.
      let deadLetterTopicDown = true
      let refused = 0
      const flaky: Transport = {
        ...transport,
        kind: transport.kind,
        ensureTopics: (topics) => transport.ensureTopics(topics),
        subscribe: (options) => transport.subscribe(options),
        groupLag: (groups) => transport.groupLag(groups),
        readTopic: (name, visit, options) => transport.readTopic(name, visit, options),
        describeLog: (options) => transport.describeLog(options),
        close: async () => {},
        publish: async (messages) => {
          if (deadLetterTopicDown && messages.some((m) => m.topic.endsWith('-dlq'))) {
            refused++
            throw new Error('dead-letter topic unavailable')
          }
          return transport.publish(messages)
        },
      }
      const metrics = createMetrics()
      const handled: number[] = []
      let stopped: Error | undefined
      const subscription = await startReliableConsumer({
        transport: flaky,
        groupId: uniqueName('workers'),
        topics: [topic],
        decode: decodeJob,
        retry: { max: 0, backoffMs: 1 },
        logger,
        metrics,
        maxWaitMs: 50,
        handle: async (job) => {
          if (job.permanent) throw new Error('handler always fails')
          handled.push(job.id)
        },
        onError: (error) => {
          stopped = error
        },
      })
      const { seen: dlq, sub: dlqReader } = await follow(transport, deadLetterTopic(topic))
      await joined(subscription)
      await transport.publish([
        { topic, key: 'k', value: JSON.stringify({ id: 42, permanent: true }) },
        { topic, key: 'k', value: JSON.stringify({ id: 43 }) },
      ])
      await waitFor(() => refused >= 3, { message: 'the dead letter is retried' })
      assert.equal(handled.length, 0, 'the partition waits for the dead letter: nothing after it is handled first')
      const failures = (await metrics.deadLetterFailures.get()).values.reduce((sum, v) => sum + v.value, 0)
      assert.ok(failures >= 3, `orderflow_dead_letter_failures_total counts the failures (${failures})`)

      deadLetterTopicDown = false
      await waitFor(() => dlq.length === 1 && handled.includes(43), {
        message: 'the dead letter is written and 43 handled',
      })
      assert.equal(
        (JSON.parse(dlq[0]?.value ?? '{}') as DeadLetterRecord).payload,
        JSON.stringify({ id: 42, permanent: true }),
      )
      assert.equal(stopped, undefined, 'the consumer never stopped')
      assert.equal(subscription.health().state, 'running')
      await subscription.close()
      await dlqReader.close()
    })

    it('dead-letters an oversized message within the size limit, with its hash, and keeps the partition flowing', async () => {
      const topic = uniqueName('jobs')
      const handled: number[] = []
      const subscription = await startReliableConsumer({
        transport,
        groupId: uniqueName('workers'),
        topics: [topic],
        decode: decodeJob,
        retry: { max: 0, backoffMs: 1 },
        logger,
        handle: async (job) => void handled.push(job.id),
      })
      const { seen: dlq, sub: dlqReader } = await follow(transport, deadLetterTopic(topic))
      await joined(subscription)
      // 700 KB of quotes: accepted by the broker, but every one doubles when escaped into JSON.
      const huge = '"'.repeat(700_000)
      await transport.publish([
        { topic, key: 'k', value: huge },
        { topic, key: 'k', value: JSON.stringify({ id: 7 }) },
      ])
      await waitFor(() => handled.includes(7), {
        timeoutMs: 30_000,
        message: 'the message after the oversized one is handled',
      })
      await waitFor(() => dlq.length === 1, { message: 'the oversized message is dead-lettered' })
      const raw = dlq[0]?.value ?? ''
      assert.ok(Buffer.byteLength(raw) <= 900_000, `the record is ${Buffer.byteLength(raw)} bytes`)
      const record = JSON.parse(raw) as DeadLetterRecord
      assert.equal(record.reason, 'NOT_JSON')
      assert.equal(record.payloadTruncated, true)
      assert.equal(record.payloadBytes, 700_000)
      assert.equal(record.payloadSha256, createHash('sha256').update(huge).digest('hex'))
      assert.ok(huge.startsWith(record.payload) && record.payload.length > 0)
      await subscription.close()
      await dlqReader.close()
    })

    it('holds the partition while a dependency is down, retrying past the retry limit, and never dead-letters the message', async () => {
      const topic = uniqueName('jobs')
      let databaseDown = true
      let attempts = 0
      const handled: number[] = []
      const metrics = createMetrics()
      const subscription = await startReliableConsumer({
        transport,
        groupId: uniqueName('workers'),
        topics: [topic],
        decode: decodeJob,
        retry: { max: 1, backoffMs: 5 },
        logger,
        metrics,
        maxWaitMs: 20,
        handle: async (job) => {
          attempts++
          if (databaseDown)
            throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
          handled.push(job.id)
        },
      })
      const { seen: dlq, sub: dlqReader } = await follow(transport, deadLetterTopic(topic))
      await joined(subscription)
      await transport.publish([{ topic, key: 'k', value: JSON.stringify({ id: 5 }) }])
      await waitFor(() => attempts >= 6, { message: 'the handler is tried again and again' })
      assert.equal(subscription.health().state, 'waiting-for-dependency')
      const waiting = (await metrics.consumerWaiting.get()).values.find((v) => v.labels.topic === topic)
      assert.equal(waiting?.value, 1)

      databaseDown = false
      await waitFor(() => handled.includes(5), { message: 'job 5 is handled once the database is back' })
      assert.equal(dlq.length, 0, 'nothing was dead-lettered for the outage')
      assert.equal(subscription.health().state, 'running')
      assert.equal((await metrics.consumerWaiting.get()).values.find((v) => v.labels.topic === topic)?.value, 0)
      await subscription.close()
      await dlqReader.close()
    })

    it('reports a handler that hangs: stalled in health() and said in the log', async () => {
      const topic = uniqueName('jobs')
      const warnings: string[] = []
      const recording = createLogger({
        level: 'warn',
        destination: { write: (line: string) => void warnings.push(line) },
      })
      let release: () => void = () => {}
      const hung = new Promise<void>((resolve) => {
        release = resolve
      })
      const subscription = await startReliableConsumer({
        transport,
        groupId: uniqueName('workers'),
        topics: [topic],
        decode: decodeJob,
        retry: { max: 0, backoffMs: 1 },
        logger: recording,
        stallAfterMs: 200,
        handle: () => hung,
      })
      await joined(subscription)
      await transport.publish([{ topic, key: 'k', value: JSON.stringify({ id: 1 }) }])
      await waitFor(() => subscription.health().state === 'stalled', { message: 'the consumer reports itself stalled' })
      await waitFor(() => warnings.some((w) => w.includes('the partition is stalled')), {
        message: 'a stall warning is logged',
      })
      release()
      await waitFor(() => subscription.health().state === 'running', {
        message: 'running again once the handler returns',
      })
      await subscription.close()
    })

    it('closes promptly while it waits for a dependency, and the message is delivered again after a restart', async () => {
      const topic = uniqueName('jobs')
      const groupId = uniqueName('workers')
      let attempts = 0
      const first = await startReliableConsumer({
        transport,
        groupId,
        topics: [topic],
        decode: decodeJob,
        retry: { max: 0, backoffMs: 1 },
        logger,
        handle: async () => {
          attempts++
          throw Object.assign(new Error('Connection terminated unexpectedly'), { code: '57P01' })
        },
      })
      await joined(first)
      await transport.publish([{ topic, key: 'x', value: JSON.stringify({ id: 42 }) }])
      await waitFor(() => attempts >= 1, { message: 'the handler ran' })
      await first.close()

      const redelivered: number[] = []
      const second = await startReliableConsumer({
        transport,
        groupId,
        topics: [topic],
        decode: decodeJob,
        retry: { max: 0, backoffMs: 1 },
        logger,
        handle: async (job) => void redelivered.push(job.id),
      })
      await waitFor(() => redelivered.includes(42), { timeoutMs: 30_000, message: 'job 42 is redelivered' })
      await second.close()
    })
  })
}

suite('the embedded log (PGlite)', async () => {
  const database: TestDatabase = await pgliteTestDatabase()
  const transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
  return {
    transport,
    async cleanup() {
      await transport.close()
      await database.cleanup()
    },
  }
})

suite('Kafka', async () => {
  const transport = await createKafkaTransport({
    brokers: kafkaBrokers(),
    clientId: uniqueName('reliable'),
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
  })
  return { transport, cleanup: () => transport.close() }
})
