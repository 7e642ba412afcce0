import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { setTimeout as pause } from 'node:timers/promises'
import { joined, kafkaBrokers, uniqueName, waitFor } from '../../../test/support/index.ts'
import { AppError } from '../errors.ts'
import { createLogger } from '../logger.ts'
import { createKafkaTransport } from './kafka.ts'
import type { Subscription, Transport } from './port.ts'
import { startReliableConsumer } from './reliable-consumer.ts'

/**
 * Members join and leave a consumer group while a steady stream of keyed messages flows, and the
 * handler keeps no inbox: whatever the transport hands out twice is done twice. A rebalance must
 * hand back nothing handled, and two members must never handle one partition at the same time.
 */

const PARTITIONS = 6
const KEYS = 24
const MESSAGES = 500
/** About 50 messages a second, so the stream runs for about ten seconds. */
const PUBLISH_EVERY_MS = 20
/** What the handler's work takes: long enough for two members on one partition to overlap. */
const WORK_MS = 8

interface Handling {
  member: string
  partition: number
  key: string
  seq: number
}

describe('a Kafka consumer group rebalancing under a steady stream', () => {
  const transports: Transport[] = []
  after(async () => {
    await Promise.allSettled(transports.map((t) => t.close()))
  })

  const open = async (clientId: string) => {
    const transport = await createKafkaTransport({
      brokers: kafkaBrokers(),
      clientId,
      partitions: PARTITIONS,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 3,
      retryBackoffMs: 100,
      sessionTimeoutMs: 6_000,
    })
    transports.push(transport)
    return transport
  }

  it('hands each message to one member once, in key order, and never lets two members handle one partition at once', async () => {
    const topic = uniqueName('rebalance')
    const groupId = uniqueName('rebalance_group')
    const producer = await open(uniqueName('rebalance_producer'))
    await producer.ensureTopics([topic])

    const handlings: Handling[] = []
    const handledIds = new Set<string>()
    /** Members handling a message of each partition right now. */
    const inFlight = new Map<number, Set<string>>()
    const overlaps: string[] = []

    const members = new Map<string, Subscription>()
    const startMember = async (member: string) => {
      const transport = await open(uniqueName(`rebalance_${member}`))
      const subscription = await transport.subscribe({
        groupId,
        topics: [topic],
        handler: async (message) => {
          const running = inFlight.get(message.partition) ?? new Set<string>()
          inFlight.set(message.partition, running)
          if (running.size > 0) {
            overlaps.push(`partition ${message.partition}: ${member} while ${[...running].join(', ')}`)
          }
          running.add(member)
          const { key, seq } = JSON.parse(message.value) as { key: string; seq: number }
          handlings.push({ member, partition: message.partition, key, seq })
          handledIds.add(`${key}/${seq}`)
          try {
            await pause(WORK_MS)
          } finally {
            running.delete(member)
          }
        },
        onError: (error) => overlaps.push(`${member} stopped: ${error.message}`),
      })
      members.set(member, subscription)
      await joined(subscription)
    }
    const stopMember = async (member: string) => {
      await members.get(member)?.close()
      members.delete(member)
    }
    const handledAtLeast = (n: number) =>
      waitFor(() => handledIds.size >= n, { timeoutMs: 60_000, message: `${n} messages handled` })

    // The load: keyed messages at a steady rate, each key's sequence numbers in publish order.
    const published = (async () => {
      for (let i = 0; i < MESSAGES; i++) {
        const key = `key-${i % KEYS}`
        const seq = Math.floor(i / KEYS)
        await producer.publish([{ topic, key, value: JSON.stringify({ key, seq }) }])
        await pause(PUBLISH_EVERY_MS)
      }
    })()

    await startMember('a')
    await handledAtLeast(60)
    await Promise.all([startMember('b'), startMember('c')])
    await handledAtLeast(180)
    await stopMember('a')
    await handledAtLeast(280)
    await startMember('d')
    await handledAtLeast(380)
    await stopMember('b')
    await published
    await handledAtLeast(MESSAGES)
    // Whatever is handed out twice shows up by the time every member has stopped.
    await Promise.all([...members.keys()].map(stopMember))

    const times = new Map<string, number>()
    for (const h of handlings) times.set(`${h.key}/${h.seq}`, (times.get(`${h.key}/${h.seq}`) ?? 0) + 1)
    const outOfOrder: string[] = []
    for (let k = 0; k < KEYS; k++) {
      const order = handlings.filter((h) => h.key === `key-${k}`).map((h) => h.seq)
      if (order.some((seq, i) => i > 0 && seq <= (order[i - 1] ?? -1))) outOfOrder.push(`key-${k}: ${order.join(',')}`)
    }
    // One assertion over the three properties, so that a failure shows all of what went wrong.
    assert.deepEqual(
      {
        handledTwice: [...times].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`),
        overlaps,
        outOfOrder,
      },
      { handledTwice: [], overlaps: [], outOfOrder: [] },
    )
    assert.equal(times.size, MESSAGES, 'every published message was handled')
    // The scenario did what it says: the work moved between members.
    const byMember = new Set(handlings.map((h) => h.member))
    assert.deepEqual([...byMember].sort(), ['a', 'b', 'c', 'd'])
  })

  it('a reliable consumer waiting for a dependency gives its partitions up at once, and the message goes to the next owner', async () => {
    const topic = uniqueName('rebalance_waiting')
    const groupId = uniqueName('rebalance_waiting_group')
    const producer = await open(uniqueName('rebalance_waiting_producer'))
    await producer.ensureTopics([topic])
    let dependencyUp = false
    const attempts: { member: string; partition: number }[] = []
    const handled: string[] = []
    const inFlight = new Map<number, Set<string>>()
    const overlaps: string[] = []

    const startMember = async (member: string) => {
      const transport = await open(uniqueName(`rebalance_waiting_${member}`))
      // The whole handler call, waits included, counts as handling the partition.
      const watched: Transport = {
        kind: transport.kind,
        ensureTopics: (topics) => transport.ensureTopics(topics),
        publish: (messages, options) => transport.publish(messages, options),
        ping: () => transport.ping(),
        groupLag: (groups) => transport.groupLag(groups),
        readTopic: (name, visit, options) => transport.readTopic(name, visit, options),
        describeLog: (options) => transport.describeLog(options),
        close: () => transport.close(),
        subscribe: (options) =>
          transport.subscribe({
            ...options,
            handler: async (message, context) => {
              const running = inFlight.get(message.partition) ?? new Set<string>()
              inFlight.set(message.partition, running)
              if (running.size > 0) overlaps.push(`partition ${message.partition}: ${member} while ${[...running]}`)
              running.add(member)
              try {
                await options.handler(message, context)
              } finally {
                running.delete(member)
              }
            },
          }),
      }
      const subscription = await startReliableConsumer({
        transport: watched,
        groupId,
        topics: [topic],
        decode: (message) => ({ ok: true, value: message.value }),
        // Long waits: a member that sat them out would hold the rebalance for seconds.
        retry: { max: 3, backoffMs: 2_000 },
        logger: createLogger({ level: process.env.LOG_LEVEL ?? 'silent' }),
        onError: (error) => overlaps.push(`${member} stopped: ${error.message}`),
        handle: async (value, message) => {
          attempts.push({ member, partition: message.partition })
          if (!dependencyUp) throw new AppError('DATABASE_UNAVAILABLE', 'the database is down')
          handled.push(value)
        },
      })
      await joined(subscription)
      return subscription
    }

    const a = await startMember('a')
    const values = Array.from({ length: 4 * PARTITIONS }, (_, i) => `job-${i}`)
    await producer.publish(values.map((value) => ({ topic, key: value, value })))
    const partitionsTried = (member: string) =>
      new Set(attempts.filter((t) => t.member === member).map((t) => t.partition))
    await waitFor(() => partitionsTried('a').size === PARTITIONS, { message: 'a waits on every partition' })
    // b's join needs a's partitions: a's handlers are waiting for the database, and stop for it.
    const b = await startMember('b')
    await waitFor(() => partitionsTried('b').size > 0, {
      message: 'b took partitions over while the database was down',
    })
    dependencyUp = true
    await waitFor(() => new Set(handled).size === values.length, { timeoutMs: 30_000, message: 'every job handled' })
    await Promise.all([a.close(), b.close()])

    assert.deepEqual(overlaps, [])
    assert.deepEqual(handled.toSorted(), values.toSorted(), 'each job handled once')
  })
})
