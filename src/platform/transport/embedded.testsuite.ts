import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { joined, uniqueName, waitFor } from '../../../test/support/index.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { createEmbeddedTransport } from './embedded.ts'
import { partitionForKey } from './partitioner.ts'
import type { IncomingMessage, Subscription, Transport } from './port.ts'

/**
 * What the embedded transport promises beyond the shared contract (`contract.ts`), run on every
 * database it supports. `database()` gives the database; the caller closes it.
 */
export function embeddedTransportSuite(name: string, database: () => Promise<SqlDatabase>): void {
  describe(`embedded transport on ${name}`, () => {
    let db: SqlDatabase

    before(async () => {
      db = await database()
    })

    it("puts a key in the partition Kafka's Java client would", async (t) => {
      // Hashes from Kafka's own murmur2 tests (UtilsTest), independent of the implementation we use.
      const javaHashes: Record<string, number> = {
        '21': -973932308,
        foobar: -790332482,
        'a-little-bit-long-string': -985981536,
        'a-little-bit-longer-string': -1486304829,
        lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8: -58897971,
        abc: 479470107,
      }
      const transport = await createEmbeddedTransport({ db, partitions: 7 })
      t.after(() => transport.close())
      const topic = uniqueName('embedded_partitioner')
      const positions = await transport.publish(Object.keys(javaHashes).map((key) => ({ topic, key, value: key })))

      Object.entries(javaHashes).forEach(([key, hash], index) => {
        const kafkaPartition = (hash & 0x7fffffff) % 7
        assert.equal(partitionForKey(key, 7), kafkaPartition, `partition of '${key}'`)
        assert.equal(positions[index]?.partition, kafkaPartition, `published partition of '${key}'`)
      })
    })

    it('keeps the partition count a topic was created with', async (t) => {
      const creator = await createEmbeddedTransport({ db, partitions: 5 })
      const other = await createEmbeddedTransport({ db, partitions: 2 })
      t.after(() => Promise.all([creator.close(), other.close()]))
      const topic = uniqueName('embedded_partitions')

      await creator.ensureTopics([topic])
      const positions = await other.publish(
        Array.from({ length: 40 }, (_, i) => ({ topic, key: `key-${i}`, value: `${i}` })),
      )
      const used = new Set(positions.map((position) => position.partition))
      assert.deepEqual(
        [...used].sort(),
        [0, 1, 2, 3, 4],
        'the second transport spreads keys over the 5 partitions the topic has',
      )
    })

    it('never lets two members handle one partition at once while members join and leave', async (t) => {
      const transport = await createEmbeddedTransport({ db })
      t.after(() => transport.close())
      const topic = uniqueName('embedded_rebalance')
      const groupId = uniqueName('embedded_rebalance')
      const running = new Map<number, number>()
      let overlap = 0
      const handled = new Map<string, number>()
      const handler = async (message: IncomingMessage) => {
        const now = (running.get(message.partition) ?? 0) + 1
        running.set(message.partition, now)
        if (now > 1) overlap++
        await new Promise((resolve) => setImmediate(resolve))
        running.set(message.partition, now - 1)
        handled.set(message.value, (handled.get(message.value) ?? 0) + 1)
      }
      const total = 300
      const publishing = (async () => {
        for (let start = 0; start < total; start += 10) {
          await transport.publish(
            Array.from({ length: 10 }, (_, i) => ({ topic, key: `key-${(start + i) % 23}`, value: `m-${start + i}` })),
          )
        }
      })()

      const members: Subscription[] = []
      for (let i = 0; i < 4; i++) {
        members.push(await transport.subscribe({ groupId, topics: [topic], handler }))
        await waitFor(() => handled.size > i * 20, {
          timeoutMs: 10_000,
          message: `messages kept flowing after member ${i} joined`,
        })
      }
      await members[0]?.close()
      await members[2]?.close()
      await publishing

      await waitFor(() => handled.size === total, {
        timeoutMs: 10_000,
        message: () => `handled ${handled.size} of ${total} while the group rebalanced`,
      })
      assert.equal(overlap, 0, 'no partition was handled by two members at once')
      const redelivered = [...handled.values()].filter((count) => count > 1).length
      assert.equal(redelivered, 0, 'clean rebalances commit before handing a partition over: no duplicates')
    })

    it('closing the transport stops its subscriptions but leaves the database open', async (t) => {
      const closed: Transport = await createEmbeddedTransport({ db })
      const other = await createEmbeddedTransport({ db })
      t.after(() => Promise.all([closed.close(), other.close()]))
      const topic = uniqueName('embedded_close')
      const seenByClosed: string[] = []
      const subscription = await closed.subscribe({
        groupId: uniqueName('embedded_close'),
        topics: [topic],
        handler: async (message) => {
          seenByClosed.push(message.value)
        },
      })
      await joined(subscription)
      await closed.close()
      await assert.rejects(closed.publish([{ topic, key: 'k', value: 'v' }]), /closed/)

      // The database still works, and a message the closed transport's group would have read is
      // seen by another group on another transport, but not by the closed subscription.
      await other.publish([{ topic, key: 'k', value: 'after close' }])
      const seenByWitness: string[] = []
      await other.subscribe({
        groupId: uniqueName('embedded_witness'),
        topics: [topic],
        handler: async (message) => {
          seenByWitness.push(message.value)
        },
      })
      await waitFor(() => seenByWitness.includes('after close'), {
        timeoutMs: 10_000,
        message: 'the witness group never saw the message published after the close',
      })
      assert.deepEqual(seenByClosed, [], 'a closed transport hands nothing more to its handlers')
    })
  })
}
