import assert from 'node:assert/strict'
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

    it('stops without committing when the dead letter cannot be written, and redelivers after restart', async () => {
      const topic = uniqueName('jobs')
      const groupId = uniqueName('workers')
      await transport.ensureTopics([topic, deadLetterTopic(topic)])
      // Fault injection: a transport whose dead-letter publishes fail, as when the broker is gone.
      const broken: Transport = {
        ...transport,
        kind: transport.kind,
        ensureTopics: (topics) => transport.ensureTopics(topics),
        subscribe: (options) => transport.subscribe(options),
        close: async () => {},
        publish: async (messages) => {
          if (messages.some((m) => m.topic.endsWith('-dlq'))) throw new Error('dead-letter topic unavailable')
          return transport.publish(messages)
        },
      }
      let stopped: Error | undefined
      const first = await startReliableConsumer({
        transport: broken,
        groupId,
        topics: [topic],
        decode: decodeJob,
        retry: { max: 0, backoffMs: 1 },
        logger,
        handle: async () => {
          throw new Error('handler always fails')
        },
        onError: (error) => {
          stopped = error
        },
      })
      await joined(first)
      await transport.publish([{ topic, key: 'x', value: JSON.stringify({ id: 42 }) }])
      await waitFor(() => stopped, { message: 'the consumer reports that it stopped' })
      assert.match(stopped?.message ?? '', /dead-letter topic unavailable/)
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
