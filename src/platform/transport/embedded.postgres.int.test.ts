import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { joined, postgresTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { transportContract } from './contract.ts'
import { embeddedTransportSuite } from './embedded.testsuite.ts'
import { createEmbeddedTransport } from './embedded.ts'
import type { IncomingMessage } from './port.ts'

/** One schema for the file, dropped at the end; a "restart" is a new transport on it. */
let opened: Promise<TestDatabase> | undefined
const database = () => {
  opened ??= postgresTestDatabase('of_transport')
  return opened
}

after(async () => {
  await (await opened)?.cleanup()
})

transportContract('embedded on PostgreSQL', async () => {
  const { db } = await database()
  // The schema outlives the suite: the file-level `after` drops it.
  return { transport: () => createEmbeddedTransport({ db }), cleanup: async () => {} }
})

embeddedTransportSuite('PostgreSQL', async () => (await database()).db)

describe('embedded transport on PostgreSQL, several processes', () => {
  it('sees messages another process writes into the same database, and offsets stay unique', async (t) => {
    const { db, reopen } = await database()
    // Separate pools stand for separate processes: nothing in memory tells the consumer about
    // the writes, only the poll of the partition heads.
    const consumer = await createEmbeddedTransport({ db, pollIntervalMs: 50 })
    const writers = await Promise.all([0, 1, 2].map(() => createEmbeddedTransport({ db: reopen() })))
    t.after(() => Promise.all([consumer, ...writers].map((transport) => transport.close())))
    const topic = uniqueName('embedded_processes')
    const received: IncomingMessage[] = []
    const subscription = await consumer.subscribe({
      groupId: uniqueName('embedded_processes'),
      topics: [topic],
      handler: async (message) => {
        received.push(message)
      },
    })
    await joined(subscription)

    const results = await Promise.all(
      writers.flatMap((writer, w) =>
        [0, 1, 2, 3].map((b) =>
          writer.publish(
            Array.from({ length: 25 }, (_, i) => ({ topic, key: `key-${i % 7}`, value: `${w}-${b}-${i}` })),
          ),
        ),
      ),
    )
    const positions = results.flat()
    const byPartition = Map.groupBy(positions, (position) => position.partition)
    for (const [partition, inPartition] of byPartition) {
      const offsets = inPartition.map((position) => BigInt(position.offset)).sort((a, b) => (a < b ? -1 : 1))
      assert.deepEqual(
        offsets,
        offsets.map((_, i) => BigInt(i)),
        `partition ${partition} has offsets 0..n-1 without gaps or duplicates`,
      )
    }

    await waitFor(() => received.length >= positions.length, {
      timeoutMs: 10_000,
      message: () => `the consumer saw ${received.length} of ${positions.length} messages written by other pools`,
    })
    assert.equal(new Set(received.map((m) => m.value)).size, positions.length)
  })
  it('a process that publishes too reads every message in order, also those another process wrote in between', async (t) => {
    const { db, reopen } = await database()
    // The reader's own publishes are kept in memory for its readers (embedded-tail.ts); the other
    // process's land between them, so its memory has gaps that only the database can fill.
    const local = await createEmbeddedTransport({ db, partitions: 1, pollIntervalMs: 50 })
    const other = await createEmbeddedTransport({ db: reopen(), partitions: 1 })
    t.after(() => Promise.all([local.close(), other.close()]))
    const topic = uniqueName('embedded_tail')
    const received: string[] = []
    const subscription = await local.subscribe({
      groupId: uniqueName('embedded_tail'),
      topics: [topic],
      handler: async (message) => {
        received.push(message.value)
      },
    })
    await joined(subscription)
    const sent: string[] = []
    for (let round = 0; round < 6; round++) {
      const writer = round % 3 === 1 ? other : local
      const values = Array.from({ length: 4 }, (_, i) => `${round}-${i}`)
      await writer.publish(values.map((value) => ({ topic, key: 'one-key', value })))
      sent.push(...values)
      // Half the rounds wait for the reader to reach the head, so it reads from memory there.
      if (round % 2 === 0)
        await waitFor(() => received.length === sent.length, {
          timeoutMs: 10_000,
          message: 'the reader reached the head',
        })
    }
    await waitFor(() => received.length >= sent.length, {
      timeoutMs: 10_000,
      message: () => `the reader saw ${received.length} of ${sent.length}: ${received.join(' ')}`,
    })
    assert.deepEqual(received, sent, 'every message once, in the order of its offsets')
  })
})
