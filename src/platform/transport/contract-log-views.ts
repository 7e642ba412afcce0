import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import { uniqueName, waitFor } from '../../../test/support/index.ts'
import type { ContractClients } from './contract.ts'
import { namespaceTransport } from './namespaced.ts'
import type { IncomingMessage, LogDescription, OutgoingMessage } from './port.ts'

/**
 * The contract's part on what an operator sees of the log (`readTopic`, `describeLog`), run by
 * `transportContract` for every adapter. Kept beside `contract.ts` so that file stays readable.
 * Descriptions are always asked under a prefix of the test's own: the Kafka broker is shared.
 */

const TIMEOUT_MS = 30_000

export function logViewsContract(clients: (t: TestContext) => ContractClients): void {
  describe('operator views of the log', () => {
    it('readTopic answers null for a topic that does not exist, and does not create it', async (t) => {
      const client = await clients(t).transport()
      const topic = uniqueName('contract_read_missing')
      const visited: IncomingMessage[] = []
      assert.equal(await client.readTopic(topic, (m) => visited.push(m), { timeoutMs: TIMEOUT_MS }), null)
      assert.equal(
        await client.readTopic(topic, (m) => visited.push(m), { timeoutMs: TIMEOUT_MS }),
        null,
        'still missing after a read',
      )
      assert.deepEqual((await client.describeLog({ prefix: topic })).topics, [], 'the log has no such topic')
      assert.equal(visited.length, 0)
    })

    it('readTopic visits every message of every partition once, in offset order per partition', async (t) => {
      const client = await clients(t).transport()
      const topic = uniqueName('contract_read_all')
      // 7 keys over the partitions, several messages each, in two publishes.
      const sent: OutgoingMessage[] = Array.from({ length: 40 }, (_, i) => ({
        topic,
        key: `key-${i % 7}`,
        value: `m-${i}`,
        headers: { 'x-seq': String(i) },
      }))
      const positions = [...(await client.publish(sent.slice(0, 20))), ...(await client.publish(sent.slice(20)))]

      const seen: IncomingMessage[] = []
      const result = await client.readTopic(topic, (m) => seen.push(m), { timeoutMs: TIMEOUT_MS })

      assert.deepEqual(result, { complete: true })
      assert.equal(seen.length, sent.length, 'each message once')
      assert.ok(
        seen.every((m) => m.topic === topic && !Number.isNaN(m.timestamp.getTime())),
        'messages name the topic as asked, with their timestamp',
      )
      const shown = (m: { partition: number; offset: string; key: string; value: string; headers?: object }) => ({
        partition: m.partition,
        offset: m.offset,
        key: m.key,
        value: m.value,
        headers: m.headers,
      })
      const published = positions.map((p, i) => shown({ ...(sent[i] as OutgoingMessage), ...p }))
      for (const partition of new Set(positions.map((p) => p.partition))) {
        assert.deepEqual(
          seen.filter((m) => m.partition === partition).map(shown),
          published
            .filter((m) => m.partition === partition)
            .sort((a, b) => (BigInt(a.offset) < BigInt(b.offset) ? -1 : 1)),
          `partition ${partition}: every message as published, in offset order`,
        )
      }
    })

    it('readTopic reads an existing empty topic as complete, with nothing in it', async (t) => {
      const client = await clients(t).transport()
      const topic = uniqueName('contract_read_empty')
      await client.ensureTopics([topic])
      const visited: IncomingMessage[] = []
      assert.deepEqual(await client.readTopic(topic, (m) => visited.push(m), { timeoutMs: TIMEOUT_MS }), {
        complete: true,
      })
      assert.equal(visited.length, 0)
    })

    it('a namespaced transport reads its own topic by its short name', async (t) => {
      const client = await clients(t).transport()
      const prefix = `${uniqueName('contract_ns')}.`
      const namespaced = namespaceTransport(client, prefix)
      const topic = uniqueName('contract_read_ns')
      await namespaced.publish([
        { topic, key: 'a', value: 'one' },
        { topic, key: 'b', value: 'two' },
      ])

      const seen: IncomingMessage[] = []
      assert.deepEqual(await namespaced.readTopic(topic, (m) => seen.push(m), { timeoutMs: TIMEOUT_MS }), {
        complete: true,
      })
      assert.deepEqual(seen.map((m) => m.value).sort(), ['one', 'two'])
      assert.ok(
        seen.every((m) => m.topic === topic),
        'named as the service names it',
      )
      const onTheLog: IncomingMessage[] = []
      await client.readTopic(`${prefix}${topic}`, (m) => onTheLog.push(m), { timeoutMs: TIMEOUT_MS })
      assert.deepEqual(
        onTheLog.map((m) => m.topic),
        [`${prefix}${topic}`, `${prefix}${topic}`],
        'on the log the topic is under the prefix',
      )
      assert.equal(await client.readTopic(topic, () => {}, { timeoutMs: TIMEOUT_MS }), null, 'and not without it')
    })

    it('describeLog: a topic’s partitions and end offsets, a group’s committed offsets and lag; a namespaced transport shows only its own, without the prefix', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const prefix = `${uniqueName('contract_ns')}.`
      const namespaced = namespaceTransport(client, prefix)
      const topic = uniqueName('contract_describe')
      const groupId = uniqueName('contract_describe')
      const first = await namespaced.publish([0, 1, 2, 3].map((n) => ({ topic, key: 'one-key', value: `first-${n}` })))
      const handled: IncomingMessage[] = []
      const subscription = await subscribe(namespaced, {
        groupId,
        topics: [topic],
        handler: async (message) => {
          handled.push(message)
        },
      })
      await waitFor(() => handled.length >= first.length, {
        timeoutMs: TIMEOUT_MS,
        message: () => `the group handled ${handled.length} of ${first.length}`,
      })
      // Leaving commits what was handled; what comes later is the group's lag.
      await subscription.close()
      const later = await namespaced.publish([0, 1, 2].map((n) => ({ topic, key: 'one-key', value: `later-${n}` })))
      const partition = later[0]?.partition ?? -1
      const end = Number(later.at(-1)?.offset) + 1
      const committedAt = Number(first.at(-1)?.offset) + 1

      let description: LogDescription | undefined
      const found = () => {
        const group = description?.groups.find((g) => g.group === groupId)
        return {
          partitions: description?.topics.find((tp) => tp.name === topic)?.partitions,
          group,
          committed: group?.committed.find((c) => c.topic === topic && c.partition === partition)?.offset,
        }
      }
      await waitFor(
        async () => {
          description = await namespaced.describeLog()
          const { partitions, group, committed } = found()
          const endOffset = partitions?.find((p) => p.partition === partition)?.endOffset
          // A member that left is gone from the group (the embedded log does not say).
          return endOffset === end && committed === committedAt && (group?.members ?? []).length === 0
        },
        { timeoutMs: TIMEOUT_MS, message: () => `the log as described: ${JSON.stringify(description)}` },
      )
      const { partitions = [], committed = -1 } = found()
      assert.deepEqual(
        partitions.map((p) => p.partition),
        partitions.map((_, i) => i),
        'every partition, in order',
      )
      assert.deepEqual(
        partitions.filter((p) => p.endOffset > 0),
        [{ partition, endOffset: end }],
        'the end offset where messages were published, 0 elsewhere',
      )
      assert.equal(end - committed, later.length, 'the lag: what came after the group left')
      assert.deepEqual(
        description?.topics.map((tp) => tp.name),
        [topic],
        'only the transport’s own topics, named without the prefix',
      )
      assert.deepEqual(
        description?.groups.map((g) => [g.group, g.committed.map((c) => c.topic)]),
        [[groupId, [topic]]],
        'only its own groups, named without the prefix',
      )

      const raw = await client.describeLog({ prefix })
      assert.deepEqual(
        [raw.topics.map((tp) => tp.name), raw.groups.map((g) => [g.group, g.committed.map((c) => c.topic)])],
        [[`${prefix}${topic}`], [[`${prefix}${groupId}`, [`${prefix}${topic}`]]]],
        'the adapter itself names topics and groups as they are on the log',
      )
    })
  })
}
