import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { kafkaBrokers, pgliteTestDatabase, type TestDatabase, uniqueName } from '../../../test/support/index.ts'
import { createEmbeddedTransport } from './embedded.ts'
import { createKafkaTransport } from './kafka.ts'
import { namespaceTransport } from './namespaced.ts'
import type { IncomingMessage, Transport } from './port.ts'
import { embeddedTopicReader, kafkaTopicReader, type TopicReader } from './topic-reader.ts'

/**
 * The topic reader on both logs: every message of every partition from the start, nothing created
 * for a topic that does not exist, the transport's topic prefix applied.
 */
function topicReaderSuite(name: string, setup: () => Promise<{ transport: Transport; reader: TopicReader }>) {
  describe(`topic reader: ${name}`, () => {
    let transport: Transport
    let reader: TopicReader

    before(async () => {
      ;({ transport, reader } = await setup())
    })

    it('visits every message of every partition, from the beginning, and says the read was complete', async () => {
      const topic = uniqueName('reader_all')
      // 7 keys over 3 partitions, several messages each; one more topic partition may stay empty.
      const sent = Array.from({ length: 40 }, (_, i) => ({ topic, key: `key-${i % 7}`, value: `m-${i}` }))
      await transport.publish(sent.slice(0, 20))
      await transport.publish(sent.slice(20))

      const seen: IncomingMessage[] = []
      const result = await reader.read(topic, (message) => seen.push(message), { timeoutMs: 20_000 })

      assert.deepEqual(result, { complete: true })
      assert.deepEqual(seen.map((m) => m.value).sort(), sent.map((m) => m.value).sort())
      assert.ok(
        seen.every((m) => m.topic === topic),
        'messages carry the topic as the service names it',
      )
      for (const key of new Set(sent.map((m) => m.key))) {
        const values = seen.filter((m) => m.key === key).map((m) => m.value)
        const expected = sent.filter((m) => m.key === key).map((m) => m.value)
        assert.deepEqual(values, expected, `messages of ${key} come in publish order`)
      }
    })

    it('answers null for a topic that does not exist, and does not create it', async () => {
      const topic = uniqueName('reader_missing')
      const visited: IncomingMessage[] = []
      assert.equal(await reader.read(topic, (m) => visited.push(m), { timeoutMs: 10_000 }), null)
      assert.equal(await reader.read(topic, (m) => visited.push(m), { timeoutMs: 10_000 }), null, 'still missing')
      assert.equal(visited.length, 0)
    })

    it('reads an existing empty topic as complete with nothing in it', async () => {
      const topic = uniqueName('reader_empty')
      await transport.ensureTopics([topic])
      const visited: IncomingMessage[] = []
      assert.deepEqual(await reader.read(topic, (m) => visited.push(m), { timeoutMs: 10_000 }), { complete: true })
      assert.equal(visited.length, 0)
    })
  })
}

let database: TestDatabase | undefined
const transports: Transport[] = []
after(async () => {
  await Promise.allSettled(transports.map((t) => t.close()))
  await database?.cleanup()
})

topicReaderSuite('embedded on PGlite, with a topic prefix', async () => {
  database = await pgliteTestDatabase()
  const prefix = `${uniqueName('ns')}.`
  const raw = await createEmbeddedTransport({ db: database.db })
  transports.push(raw)
  return { transport: namespaceTransport(raw, prefix), reader: embeddedTopicReader(database.db, { prefix }) }
})

topicReaderSuite('kafka, with a topic prefix', async () => {
  const prefix = `${uniqueName('ns')}.`
  const clientId = uniqueName('reader')
  const raw = await createKafkaTransport({
    brokers: kafkaBrokers(),
    clientId,
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
  })
  transports.push(raw)
  return {
    transport: namespaceTransport(raw, prefix),
    reader: kafkaTopicReader({ brokers: kafkaBrokers(), clientId, prefix }),
  }
})
