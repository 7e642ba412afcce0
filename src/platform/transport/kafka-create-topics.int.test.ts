import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { Admin } from '@platformatic/kafka'
import { kafkaBrokers, uniqueName, waitFor } from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { createKafkaTransport, MissingTopicsError } from './kafka.ts'
import type { IncomingMessage, Transport } from './port.ts'

/**
 * KAFKA_CREATE_TOPICS=off (the app's default on Kafka): a process does not create the topics it
 * uses. A publish to a missing topic fails naming it and the command that creates it; a
 * subscription waits, retrying, and joins once the topic exists, as after `orderflow topics apply`.
 */
describe('a Kafka transport that may not create topics', () => {
  const opened: Transport[] = []
  const admin = new Admin({ clientId: uniqueName('create-topics-admin'), bootstrapBrokers: kafkaBrokers() })
  const created: string[] = []
  const lines: string[] = []
  const logger = createLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(line) } })
  const transport = async (createTopics: boolean) => {
    const t = await createKafkaTransport({
      brokers: kafkaBrokers(),
      clientId: uniqueName('create-topics'),
      partitions: 2,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 1,
      retryBackoffMs: 50,
      maxReconnectDelayMs: 500,
      createTopics,
      logger,
    })
    opened.push(t)
    return t
  }

  after(async () => {
    await Promise.allSettled(opened.map((t) => t.close()))
    if (created.length > 0) await admin.deleteTopics({ topics: created }).catch(() => {})
    await admin.close()
  })

  it('refuses to publish to a missing topic, naming it and `topics apply`, and creates nothing', async () => {
    const topic = uniqueName('missing-publish')
    const strict = await transport(false)
    await assert.rejects(
      strict.publish([{ topic, key: 'k', value: 'v' }]),
      (error: unknown) =>
        error instanceof MissingTopicsError &&
        error.topics.includes(topic) &&
        error.message.includes('npm run orderflow -- topics apply') &&
        error.message.includes('KAFKA_CREATE_TOPICS=on'),
    )
    assert.equal((await admin.listTopics()).includes(topic), false, 'the topic was not created')
  })

  it('holds a subscription until the topic exists, then reads it; a permissive transport creates it', async () => {
    const topic = uniqueName('missing-subscribe')
    const strict = await transport(false)
    const received: IncomingMessage[] = []
    const subscription = await strict.subscribe({
      groupId: uniqueName('create-topics-group'),
      topics: [topic],
      handler: async (message) => {
        received.push(message)
      },
    })
    let joined = false
    void subscription.ready.then(() => {
      joined = true
    })
    // It asks the cluster and finds no topic, again and again, saying what to do, and creates nothing.
    const waits = () => lines.filter((line) => line.includes('waits for its topics') && line.includes(topic))
    await waitFor(() => waits().length >= 2, { message: 'the subscription says twice that it waits for its topic' })
    assert.match(waits()[0] ?? '', /npm run orderflow -- topics apply/)
    assert.equal(joined, false)
    assert.equal((await admin.listTopics()).includes(topic), false, 'the topic was not created')
    // What `topics apply` does, here by a transport allowed to create topics.
    const permissive = await transport(true)
    await permissive.ensureTopics([topic])
    created.push(topic)
    await subscription.ready
    await strict.publish([{ topic, key: 'k', value: 'after apply' }])
    await waitFor(() => received.some((m) => m.value === 'after apply'), {
      message: 'the subscription reads the topic once it exists',
    })
  })
})
