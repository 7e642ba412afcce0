import assert from 'node:assert/strict'
import { after, before, describe, it, type TestContext } from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import { joined, uniqueName, waitFor } from '../../../test/support/index.ts'
import { logViewsContract } from './contract-log-views.ts'
import { namespaceTransport } from './namespaced.ts'
import type {
  HandlerContext,
  IncomingMessage,
  MessageHandler,
  OutgoingMessage,
  SubscribeOptions,
  Subscription,
  Transport,
} from './port.ts'

/**
 * The behaviour every transport adapter owes the services (see `port.ts`), as one node:test suite.
 * Each adapter's `*.int.test.ts` calls `transportContract` with a setup whose `transport()` opens a
 * NEW transport on the same backing store every call — a new Kafka client, or a new embedded
 * transport on the same database — so a second call stands for a restarted process.
 *
 * Nothing here knows which adapter runs: joins may take seconds (Kafka), so tests rely on
 * `subscription.ready` and wait on conditions with generous timeouts instead of sleeping.
 */

export interface TransportHarness {
  transport: () => Promise<Transport>
  cleanup(): Promise<void>
}

/** Clients a contract test opens, all closed when it ends, whatever happened. */
export interface ContractClients {
  transport(): Promise<Transport>
  subscribe(transport: Transport, options: SubscribeOptions): Promise<Subscription>
  /** Closes a transport, and with it its subscriptions, before the test ends: a restart. */
  close(transport: Transport): Promise<void>
}

const TIMEOUT_MS = 30_000

export function transportContract(name: string, setup: () => Promise<TransportHarness>): void {
  describe(`transport contract: ${name}`, () => {
    let harness: TransportHarness | undefined

    before(async () => {
      harness = await setup()
    })

    after(async () => {
      await harness?.cleanup()
    })

    function clients(t: TestContext): ContractClients {
      const transports = new Set<Transport>()
      const subscriptions = new Map<Subscription, Transport>()
      t.after(async () => {
        await Promise.all([...subscriptions.keys()].map((subscription) => subscription.close()))
        await Promise.all([...transports].map((transport) => transport.close()))
      })
      return {
        async transport(): Promise<Transport> {
          if (!harness) throw new Error('the contract setup failed')
          const transport = await harness.transport()
          transports.add(transport)
          return transport
        },
        async subscribe(transport: Transport, options: SubscribeOptions): Promise<Subscription> {
          const subscription = await transport.subscribe(options)
          subscriptions.set(subscription, transport)
          return subscription
        },
        async close(transport: Transport): Promise<void> {
          transports.delete(transport)
          for (const [subscription, owner] of subscriptions) {
            if (owner === transport) subscriptions.delete(subscription)
          }
          await transport.close()
        },
      }
    }

    logViewsContract(clients)

    it('publish returns, per message, its topic, its key’s partition and increasing offsets', async (t) => {
      const { transport } = clients(t)
      const producer = await transport()
      const topic = uniqueName('contract_positions')
      const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']

      const first = await producer.publish(sequence(topic, keys, 4))
      const second = await producer.publish(sequence(topic, keys, 2))

      assert.equal(first.length, keys.length * 4)
      assert.equal(second.length, keys.length * 2)
      const all = [...first, ...second]
      const keyOf = (index: number) => keys[index % keys.length]
      for (const position of all) {
        assert.equal(position.topic, topic)
        assert.ok(Number.isInteger(position.partition) && position.partition >= 0, `partition ${position.partition}`)
        assert.match(position.offset, /^\d+$/, 'offsets are decimal strings')
      }
      const partitionOfKey = new Map<string | undefined, number>()
      all.forEach((position, index) => {
        const expected = partitionOfKey.get(keyOf(index)) ?? position.partition
        assert.equal(position.partition, expected, `every message of key ${keyOf(index)} lands in one partition`)
        partitionOfKey.set(keyOf(index), position.partition)
      })
      const lastOffset = new Map<number, bigint>()
      for (const position of all) {
        const offset = BigInt(position.offset)
        const previous = lastOffset.get(position.partition)
        assert.ok(
          previous === undefined || offset > previous,
          `offsets of partition ${position.partition} increase in publish order (${previous} then ${offset})`,
        )
        lastOffset.set(position.partition, offset)
      }
    })

    it('delivers key, value, headers (unicode included) and position as published', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_headers')
      const received = recorder()
      const sent: OutgoingMessage[] = [
        {
          topic,
          key: 'clé-🔑',
          value: '{"note":"naïve café – 世界 🚀"}',
          headers: {
            'content-type': 'application/json',
            traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
            'x-unicode': 'Grüße, 世界! 🚀',
            'x-empty': '',
          },
        },
        { topic, key: 'plain', value: 'no headers' },
      ]
      const before = Date.now()
      const positions = await client.publish(sent)
      const publishedAt = Date.now()
      await subscribe(client, { groupId: uniqueName('contract_headers'), topics: [topic], handler: received.handler })

      await waitFor(() => received.messages.length >= 2, {
        timeoutMs: TIMEOUT_MS,
        message: () => `expected 2 messages, received ${received.messages.length}`,
      })
      for (const [index, message] of sent.entries()) {
        const got = received.messages.find((m) => m.key === message.key)
        assert.ok(got, `message with key ${message.key} was delivered`)
        assert.equal(got.value, message.value)
        assert.deepEqual(got.headers, message.headers ?? {})
        assert.deepEqual(
          { topic: got.topic, partition: got.partition, offset: got.offset },
          positions[index],
          'the delivered position is the published one',
        )
        assert.ok(got.timestamp instanceof Date, 'timestamp is a Date')
        const skew = 60_000
        assert.ok(
          got.timestamp.getTime() >= before - skew && got.timestamp.getTime() <= publishedAt + skew,
          `timestamp ${got.timestamp.toISOString()} is the publish time`,
        )
      }
    })

    it('creates a topic that does not exist yet when publishing to it', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_new_on_publish')
      const received = recorder()

      const positions = await client.publish([{ topic, key: 'a', value: 'first' }])
      assert.equal(positions[0]?.topic, topic)
      await subscribe(client, { groupId: uniqueName('contract_new'), topics: [topic], handler: received.handler })

      await waitFor(() => received.values().includes('first'), {
        timeoutMs: TIMEOUT_MS,
        message: () => `the message published to a new topic was not delivered (got ${received.values()})`,
      })
    })

    it('creates a topic that does not exist yet when subscribing to it', async (t) => {
      const { transport, subscribe } = clients(t)
      const consumer = await transport()
      const producer = await transport()
      const topic = uniqueName('contract_new_on_subscribe')
      const received = recorder()

      const subscription = await subscribe(consumer, {
        groupId: uniqueName('contract_new'),
        topics: [topic],
        handler: received.handler,
      })
      await joined(subscription)
      await producer.publish([{ topic, key: 'a', value: 'after subscribe' }])

      await waitFor(() => received.values().includes('after subscribe'), {
        timeoutMs: TIMEOUT_MS,
        message: () => `the message published after subscribing to a new topic was not delivered`,
      })
    })

    it('ensureTopics creates missing topics and is idempotent', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const existing = uniqueName('contract_ensure')
      const fresh = uniqueName('contract_ensure')
      const received = recorder()

      await client.ensureTopics([existing])
      await client.ensureTopics([existing, fresh, fresh])
      await client.ensureTopics([fresh, existing])
      await client.publish([
        { topic: existing, key: 'a', value: 'to existing' },
        { topic: fresh, key: 'a', value: 'to fresh' },
      ])
      await subscribe(client, {
        groupId: uniqueName('contract_ensure'),
        topics: [existing, fresh],
        handler: received.handler,
      })

      await waitFor(() => received.messages.length >= 2, {
        timeoutMs: TIMEOUT_MS,
        message: () => `expected one message from each ensured topic, got ${received.values()}`,
      })
      assert.deepEqual(received.values().sort(), ['to existing', 'to fresh'])
    })

    it('hands the messages of each key to the handler in publish order, one at a time per partition', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_order')
      const keys = Array.from({ length: 12 }, (_, i) => `customer-${i}`)
      const perKey = 15
      const probe = concurrencyProbe()
      const received = recorder(async (message) => {
        probe.enter(message)
        // Yield so that a transport calling the handler concurrently would be caught by the probe.
        await new Promise((resolve) => setImmediate(resolve))
        probe.leave(message)
      })

      // Interleaved keys, several batches: ordering must hold across batches too.
      const messages = sequence(topic, keys, perKey)
      for (let start = 0; start < messages.length; start += 25) {
        await client.publish(messages.slice(start, start + 25))
      }
      await subscribe(client, { groupId: uniqueName('contract_order'), topics: [topic], handler: received.handler })

      await waitFor(() => received.messages.length >= messages.length, {
        timeoutMs: TIMEOUT_MS,
        message: () => `expected ${messages.length} messages, received ${received.messages.length}`,
      })
      for (const key of keys) {
        assert.deepEqual(
          received.seqsOf(key),
          Array.from({ length: perKey }, (_, i) => i),
          `messages of ${key} arrive in publish order`,
        )
      }
      assert.equal(probe.max, 1, 'the handler never runs twice at once for one partition')
    })

    it('delivers every published message at least once, also from concurrent publishers', async (t) => {
      const { transport, subscribe } = clients(t)
      const first = await transport()
      const second = await transport()
      const topic = uniqueName('contract_all')
      const received = recorder()

      // Concurrent publishers on two clients race for the same partitions.
      const batches = Array.from({ length: 6 }, (_, b) =>
        Array.from({ length: 40 }, (_, i): OutgoingMessage => ({ topic, key: `key-${i % 17}`, value: `m-${b}-${i}` })),
      )
      const results = await Promise.all(batches.map((batch, b) => (b % 2 === 0 ? first : second).publish(batch)))
      const positions = results.flat()
      const taken = new Set(positions.map((p) => `${p.partition}/${p.offset}`))
      assert.equal(taken.size, positions.length, 'concurrent publishes never share an offset')

      await subscribe(second, { groupId: uniqueName('contract_all'), topics: [topic], handler: received.handler })
      const expected = batches.flat().map((m) => m.value)
      await waitFor(() => expected.every((value) => received.has(value)), {
        timeoutMs: TIMEOUT_MS,
        message: () => `missing ${expected.filter((value) => !received.has(value)).length} of ${expected.length}`,
      })
    })

    it('redelivers, after a restart, a message whose handler threw; onError is called once', async (t) => {
      const { transport, subscribe, close } = clients(t)
      const producer = await transport()
      const topic = uniqueName('contract_throw')
      const groupId = uniqueName('contract_throw')
      await producer.publish(sequence(topic, ['key-1'], 5))

      const boom = new Error('handler failed on purpose')
      const errors: Error[] = []
      const firstRun = recorder(async (message) => {
        if (seqOf(message) === 2) throw boom
      })
      const crashed = await transport()
      await subscribe(crashed, {
        groupId,
        topics: [topic],
        handler: firstRun.handler,
        onError: (error) => errors.push(error),
      })
      await waitFor(() => errors.length > 0, { timeoutMs: TIMEOUT_MS, message: 'onError was not called' })
      assert.ok(errors[0] === boom || errors[0]?.cause === boom, `onError got the handler's error: ${errors[0]}`)
      assert.deepEqual(firstRun.seqsOf('key-1'), [0, 1, 2], 'the subscription stopped at the failing message')
      await close(crashed)

      const secondRun = recorder()
      const restarted = await transport()
      await subscribe(restarted, { groupId, topics: [topic], handler: secondRun.handler })
      await waitFor(() => secondRun.seqsOf('key-1').includes(4), {
        timeoutMs: TIMEOUT_MS,
        message: () => `after the restart expected up to seq 4, got ${secondRun.seqsOf('key-1')}`,
      })
      const seqs = secondRun.seqsOf('key-1')
      assert.ok(
        (seqs[0] ?? Number.POSITIVE_INFINITY) <= 2,
        `redelivery starts at or before the failed message: ${seqs}`,
      )
      assert.deepEqual(seqs.slice(seqs.indexOf(2)), [2, 3, 4], 'the failed message and the rest follow in order')
      assert.equal(errors.length, 1, 'onError is called exactly once')
    })

    it('with batch, hands a backlog over in batches of at most max, in key order, and a lone message at once', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_batch')
      const keys = distinctKeys(6)
      const perKey = 20
      await client.publish(sequence(topic, keys, perKey))
      const batches: IncomingMessage[][] = []
      const probe = concurrencyProbe()
      const subscription = await subscribe(client, {
        groupId: uniqueName('contract_batch'),
        topics: [topic],
        handler: async () => {
          throw new Error('a batch subscription must not call handler')
        },
        batch: {
          max: 7,
          handle: async (messages) => {
            const [first] = messages
            if (first) probe.enter(first)
            batches.push(messages)
            await new Promise((resolve) => setImmediate(resolve))
            if (first) probe.leave(first)
          },
        },
      })
      const all = () => batches.flat()
      await waitFor(() => all().length >= keys.length * perKey, {
        timeoutMs: TIMEOUT_MS,
        message: () => `got ${all().length} of ${keys.length * perKey} messages`,
      })
      assert.ok(
        batches.every((b) => b.length >= 1 && b.length <= 7),
        `batch sizes ${batches.map((b) => b.length)}`,
      )
      assert.ok(
        batches.every((b) => b.every((m) => m.topic === b[0]?.topic && m.partition === b[0]?.partition)),
        'a batch holds one partition',
      )
      assert.ok(
        batches.some((b) => b.length > 1),
        'a backlog is handed over in batches of more than one',
      )
      assert.equal(probe.max, 1, 'one batch at a time per partition')
      for (const key of keys) {
        const seqs = all()
          .filter((m) => m.key === key)
          .map(seqOf)
        assert.deepEqual(
          seqs,
          Array.from({ length: perKey }, (_, i) => i),
          `key ${key} in order, once`,
        )
      }
      // Once the backlog is gone, a message that arrives alone comes as a batch of one.
      const before = batches.length
      await client.publish([{ topic, key: 'late', value: 'late#0' }])
      await waitFor(() => batches.length > before, { timeoutMs: TIMEOUT_MS, message: 'the lone message came' })
      assert.deepEqual(
        batches.slice(before).map((b) => b.map((m) => m.value)),
        [['late#0']],
      )
      await subscription.close()
    })

    it('with batch, a handler that throws commits what it said was handled; the rest is redelivered', async (t) => {
      const { transport, subscribe, close } = clients(t)
      const producer = await transport()
      const topic = uniqueName('contract_batch_throw')
      const groupId = uniqueName('contract_batch_throw')
      await producer.publish(sequence(topic, ['key-1'], 6))
      const errors: Error[] = []
      const seen: number[] = []
      const crashed = await transport()
      await subscribe(crashed, {
        groupId,
        topics: [topic],
        handler: async () => {},
        onError: (error) => errors.push(error),
        batch: {
          max: 10,
          handle: async (messages, context) => {
            for (const message of messages) {
              if (seqOf(message) === 3) throw new Error('batch failed on purpose at seq 3')
              seen.push(seqOf(message))
              context.handled(message)
            }
          },
        },
      })
      await waitFor(() => errors.length > 0, { timeoutMs: TIMEOUT_MS, message: 'onError was not called' })
      assert.deepEqual(seen, [0, 1, 2])
      await close(crashed)

      const secondRun = recorder()
      const restarted = await transport()
      await subscribe(restarted, { groupId, topics: [topic], handler: secondRun.handler })
      await waitFor(() => secondRun.seqsOf('key-1').includes(5), {
        timeoutMs: TIMEOUT_MS,
        message: () => `after the restart expected up to seq 5, got ${secondRun.seqsOf('key-1')}`,
      })
      assert.deepEqual(secondRun.seqsOf('key-1'), [3, 4, 5], 'handled messages are committed, the rest redelivered')
    })

    it('redelivers, after a restart, a message in flight when its transport was closed', async (t) => {
      const { transport, subscribe, close } = clients(t)
      const producer = await transport()
      const topic = uniqueName('contract_crash')
      const groupId = uniqueName('contract_crash')
      await producer.publish(sequence(topic, ['key-1'], 3))

      const gate = latch()
      const firstRun = recorder(async (message) => {
        if (seqOf(message) === 1) await gate.promise
      })
      const crashing = await transport()
      await subscribe(crashing, { groupId, topics: [topic], handler: firstRun.handler, onError: () => {} })
      await waitFor(() => firstRun.seqsOf('key-1').includes(1), {
        timeoutMs: TIMEOUT_MS,
        message: 'the handler never got message 1',
      })
      // The process goes down mid-handler: the handler fails while the transport shuts down.
      const closing = close(crashing)
      gate.fail(new Error('interrupted by shutdown'))
      await closing

      const secondRun = recorder()
      const restarted = await transport()
      await subscribe(restarted, { groupId, topics: [topic], handler: secondRun.handler })
      await waitFor(() => secondRun.seqsOf('key-1').includes(2), {
        timeoutMs: TIMEOUT_MS,
        message: () => `after the restart expected seq 1 and 2, got ${secondRun.seqsOf('key-1')}`,
      })
      const seqs = secondRun.seqsOf('key-1')
      assert.deepEqual(seqs.slice(seqs.indexOf(1)), [1, 2], `the interrupted message is redelivered: ${seqs}`)
    })

    it('a restarted consumer resumes from its committed position', async (t) => {
      const { transport, subscribe, close } = clients(t)
      const producer = await transport()
      const topic = uniqueName('contract_resume')
      const groupId = uniqueName('contract_resume')
      // The same keys before and after the restart: a message redelivered from before the commit
      // would come, in its partition, ahead of the new ones we wait for.
      const keys = ['a', 'b', 'c', 'd', 'e']
      const before = sequence(topic, keys, 2)
      await producer.publish(before)

      const firstRun = recorder()
      const consumer = await transport()
      await subscribe(consumer, { groupId, topics: [topic], handler: firstRun.handler })
      await waitFor(() => firstRun.messages.length >= before.length, {
        timeoutMs: TIMEOUT_MS,
        message: () => `expected ${before.length} messages before the restart, got ${firstRun.messages.length}`,
      })
      await close(consumer)

      const later = keys.map((key): OutgoingMessage => ({ topic, key, value: `${key}#2` }))
      await producer.publish(later)
      const secondRun = recorder()
      const restarted = await transport()
      await subscribe(restarted, { groupId, topics: [topic], handler: secondRun.handler })
      await waitFor(() => later.every((m) => secondRun.has(m.value)), {
        timeoutMs: TIMEOUT_MS,
        message: () => `expected the ${later.length} new messages after the restart, got ${secondRun.values()}`,
      })
      assert.deepEqual(
        secondRun.values().sort(),
        later.map((m) => m.value).sort(),
        'after a clean close only the messages published since are delivered',
      )
    })

    it('subscription.close waits for the in-flight handler and commits its message', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_close')
      const groupId = uniqueName('contract_close')
      await client.publish([{ topic, key: 'a', value: 'slow' }])

      const gate = latch()
      let entered = false
      let finished = false
      const subscription = await subscribe(client, {
        groupId,
        topics: [topic],
        handler: async () => {
          entered = true
          await gate.promise
          finished = true
        },
      })
      await waitFor(() => entered, { timeoutMs: TIMEOUT_MS, message: 'the handler was never called' })
      let closed = false
      const closing = subscription.close().then(() => {
        closed = true
      })
      // A full publish round trip gives a close that does not wait the time to resolve.
      await client.publish([{ topic: uniqueName('contract_close_tick'), key: 'tick', value: 'tick' }])
      assert.equal(closed, false, 'close() resolved while the handler was still running')
      gate.open()
      await closing
      assert.equal(finished, true, 'close() resolved after the handler finished')

      await client.publish([{ topic, key: 'a', value: 'next' }])
      const afterwards = recorder()
      await subscribe(client, { groupId, topics: [topic], handler: afterwards.handler })
      await waitFor(() => afterwards.has('next'), {
        timeoutMs: TIMEOUT_MS,
        message: () => `the message after the close was not delivered (got ${afterwards.values()})`,
      })
      assert.deepEqual(afterwards.values(), ['next'], 'the message handled during close was committed')
    })

    it('a slow handler holds back its partition: one message handed over at a time', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_backpressure')
      const total = 60
      await client.publish(sequence(topic, ['hot-key'], total))

      const gate = latch()
      const probe = concurrencyProbe()
      const slow = recorder(async (message) => {
        probe.enter(message)
        await gate.promise
        probe.leave(message)
      })
      const witness = recorder()
      await subscribe(client, { groupId: uniqueName('contract_slow'), topics: [topic], handler: slow.handler })
      // Another group reading the same partition freely shows the messages were there to be read.
      await subscribe(client, { groupId: uniqueName('contract_witness'), topics: [topic], handler: witness.handler })

      await waitFor(() => witness.messages.length >= total && slow.messages.length >= 1, {
        timeoutMs: TIMEOUT_MS,
        message: () => `witness got ${witness.messages.length}/${total}, slow handler ${slow.messages.length}`,
      })
      assert.equal(slow.messages.length, 1, 'while the handler is blocked no further message is handed over')
      assert.equal(probe.max, 1)

      gate.open()
      await waitFor(() => slow.messages.length >= total, {
        timeoutMs: TIMEOUT_MS,
        message: () => `after releasing the handler expected ${total} messages, got ${slow.messages.length}`,
      })
      assert.deepEqual(
        slow.seqsOf('hot-key'),
        Array.from({ length: total }, (_, i) => i),
      )
      assert.equal(probe.max, 1, 'the handler never ran twice at once for the partition')
    })

    it('each consumer group receives every message', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_fanout')
      const messages = sequence(topic, ['a', 'b', 'c', 'd'], 5)
      await client.publish(messages)
      const groups = [recorder(), recorder()]
      for (const group of groups) {
        await subscribe(client, { groupId: uniqueName('contract_fanout'), topics: [topic], handler: group.handler })
      }
      await waitFor(() => groups.every((group) => messages.every((m) => group.has(m.value))), {
        timeoutMs: TIMEOUT_MS,
        message: () => `groups received ${groups.map((group) => group.messages.length)} of ${messages.length}`,
      })
    })

    it('two members of one group split the partitions and handle every message once between them', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_split')
      const groupId = uniqueName('contract_split')
      await client.ensureTopics([topic])
      const members = [recorder(), recorder()]
      const subscriptions = []
      for (const member of members) {
        subscriptions.push(await subscribe(client, { groupId, topics: [topic], handler: member.handler }))
      }
      await Promise.all(subscriptions.map((subscription) => joined(subscription)))

      // A warm-up round first: on Kafka the first member may still be finishing the fetch it began
      // before the second joined (at-least-once across a rebalance, allowed); the split is judged on
      // what comes after the group has settled.
      const warmUp = sequence(topic, distinctKeys(30), 1).map((m) => ({ ...m, value: `warm-up ${m.value}` }))
      await client.publish(warmUp)
      await waitFor(() => warmUp.every((m) => members.some((member) => member.has(m.value))), {
        timeoutMs: TIMEOUT_MS,
        message: 'the warm-up round is handled',
      })
      const settled = members.map((member) => member.messages.length)
      const after = (member: (typeof members)[number], i: number) =>
        member.messages.slice(settled[i]).filter((m) => !m.value.startsWith('warm-up'))

      const messages = sequence(topic, distinctKeys(30), 2)
      await client.publish(messages)
      const handledValues = () => members.flatMap((member, i) => after(member, i).map((m) => m.value))
      await waitFor(() => messages.every((m) => handledValues().includes(m.value)), {
        timeoutMs: TIMEOUT_MS,
        message: () => `the members handled ${handledValues().length} of ${messages.length} messages`,
      })

      const [a, b] = members.map((member, i) => new Set(member.messages.slice(settled[i]).map((m) => m.partition)))
      assert.ok(a && a.size > 0, 'the first member received messages')
      assert.ok(b && b.size > 0, 'the second member received messages')
      assert.deepEqual(
        [...a].filter((partition) => b.has(partition)),
        [],
        'no partition is read by both members',
      )
      assert.equal(handledValues().length, messages.length, 'no message was handled twice')
    })

    it('when a member leaves, the remaining member takes over its partitions', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_leave')
      const groupId = uniqueName('contract_leave')
      await client.ensureTopics([topic])
      const stays = recorder()
      const leaves = recorder()
      const staying = await subscribe(client, { groupId, topics: [topic], handler: stays.handler })
      const leaving = await subscribe(client, { groupId, topics: [topic], handler: leaves.handler })
      await Promise.all([joined(staying), joined(leaving)])

      const keys = distinctKeys(30)
      const first = sequence(topic, keys, 1)
      await client.publish(first)
      const handled = () => [...stays.values(), ...leaves.values()]
      await waitFor(() => first.every((m) => handled().includes(m.value)), {
        timeoutMs: TIMEOUT_MS,
        message: () => `before the leave the members handled ${handled().length} of ${first.length}`,
      })
      assert.ok(leaves.messages.length > 0, 'the leaving member owned partitions before it left')

      await leaving.close()
      const second = keys.map((key): OutgoingMessage => ({ topic, key, value: `${key}#1` }))
      await client.publish(second)
      await waitFor(() => second.every((m) => stays.has(m.value)), {
        timeoutMs: TIMEOUT_MS,
        message: () =>
          `after the leave the remaining member got ${second.filter((m) => stays.has(m.value)).length} of ${second.length}`,
      })
      assert.ok(
        second.every((m) => !leaves.has(m.value)),
        'a member that left receives nothing more',
      )
    })

    it('reports lag: what the group has not committed yet, and zero once everything is handled', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_lag')
      await client.ensureTopics([topic])
      let release: () => void = () => {}
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      let handled = 0
      const subscription = await subscribe(client, {
        groupId: uniqueName('contract_lag'),
        topics: [topic],
        handler: async () => {
          handled++
          if (handled > 5) await gate
        },
      })
      await joined(subscription)
      await client.publish(Array.from({ length: 20 }, (_, i) => ({ topic, key: 'one-key', value: `m${i}` })))
      const total = async () => (await subscription.lag()).reduce((sum, p) => sum + p.lag, 0)
      let last = -1
      await waitFor(
        async () => {
          last = await total()
          return last >= 14
        },
        { timeoutMs: TIMEOUT_MS, message: () => `lag while the handler is held: ${last}, expected at least 14` },
      )
      release()
      await waitFor(
        async () => {
          last = await total()
          return handled === 20 && last === 0
        },
        { timeoutMs: TIMEOUT_MS, message: () => `lag after handling ${handled} of 20: ${last}, expected 0` },
      )
    })

    it('groupLag: per group and topic, what the group has not committed; a group that never committed is absent', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      // Through the prefix wrapper, as a deployment with KAFKA_TOPIC_PREFIX asks: names go in and
      // come back without the prefix, while the adapter underneath takes them as given.
      const prefix = `${uniqueName('contract_ns')}.`
      const namespaced = namespaceTransport(client, prefix)
      const topic = uniqueName('contract_group_lag')
      const groupId = uniqueName('contract_group_lag')
      const idleGroupId = uniqueName('contract_group_lag_idle')
      const neverGroupId = uniqueName('contract_group_lag_never')
      const laterValues = new Set<string>()
      const hold = latch()
      const handled = recorder(async (message, { signal }) => {
        if (laterValues.has(message.value)) await held(hold.promise, signal)
      })
      const idle = recorder((_, { signal }) => held(hold.promise, signal))
      try {
        // The first messages go to one partition; later ones land on others too, where the group
        // never committed: those count from the log's start.
        const first = sequence(topic, ['first'], 3)
        await namespaced.publish(first)
        await subscribe(namespaced, { groupId, topics: [topic], handler: handled.handler, onError: () => {} })
        await subscribe(namespaced, { groupId: idleGroupId, topics: [topic], handler: idle.handler, onError: () => {} })
        const groups = [groupId, idleGroupId, neverGroupId]
        let answer: unknown
        await waitFor(
          async () => {
            answer = await namespaced.groupLag(groups)
            return idle.messages.length > 0 && isDeepStrictEqual(answer, [{ group: groupId, topic, lag: 0 }])
          },
          { timeoutMs: TIMEOUT_MS, message: () => `once caught up: ${JSON.stringify(answer)}` },
        )

        const later = sequence(topic, distinctKeys(6), 1).map((m) => ({ ...m, value: `later ${m.value}` }))
        for (const m of later) laterValues.add(m.value)
        await namespaced.publish(later)
        await waitFor(
          async () => {
            answer = await namespaced.groupLag(groups)
            return (
              handled.messages.some((m) => laterValues.has(m.value)) &&
              isDeepStrictEqual(answer, [{ group: groupId, topic, lag: later.length }])
            )
          },
          { timeoutMs: TIMEOUT_MS, message: () => `while ${later.length} are held: ${JSON.stringify(answer)}` },
        )
        assert.deepEqual(
          await client.groupLag([`${prefix}${groupId}`, `${prefix}${idleGroupId}`, groupId]),
          [{ group: `${prefix}${groupId}`, topic: `${prefix}${topic}`, lag: later.length }],
          'the adapter itself names the group and topic as they are on the log',
        )
      } finally {
        hold.open()
      }
    })

    it('a member whose handler throws leaves the group and its message goes to the remaining member', async (t) => {
      const { transport, subscribe } = clients(t)
      const client = await transport()
      const topic = uniqueName('contract_failover')
      const groupId = uniqueName('contract_failover')
      await client.ensureTopics([topic])

      const healthy = recorder()
      const errors: Error[] = []
      let failedOn: string | undefined
      const failing = recorder(async (message) => {
        failedOn ??= message.value
        throw new Error(`cannot handle ${message.value}`)
      })
      const first = await subscribe(client, { groupId, topics: [topic], handler: healthy.handler })
      const second = await subscribe(client, {
        groupId,
        topics: [topic],
        handler: failing.handler,
        onError: (error) => errors.push(error),
      })
      await Promise.all([joined(first), joined(second)])

      const messages = sequence(topic, distinctKeys(30), 2)
      await client.publish(messages)
      await waitFor(() => messages.every((m) => healthy.has(m.value)), {
        timeoutMs: TIMEOUT_MS,
        message: () =>
          `the healthy member handled ${healthy.messages.length} of ${messages.length}; failing member failed on ${failedOn}`,
      })
      assert.ok(failedOn, 'the failing member was handed a message')
      assert.ok(healthy.has(failedOn), 'the message the failing member threw on was redelivered to the other member')
      const perPartition = Map.groupBy(failing.messages, (message) => message.partition)
      for (const [partition, handed] of perPartition) {
        assert.equal(handed.length, 1, `the failing member stopped at its first failure (partition ${partition})`)
      }
      assert.equal(errors.length, 1, 'onError was called once')
    })
  })
}

/** `count` messages per key, interleaved across keys; values are `key#seq`. */
function sequence(topic: string, keys: string[], count: number): OutgoingMessage[] {
  const messages: OutgoingMessage[] = []
  for (let seq = 0; seq < count; seq++) {
    for (const key of keys) messages.push({ topic, key, value: `${key}#${seq}` })
  }
  return messages
}

function distinctKeys(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `key-${i}`)
}

function seqOf(message: IncomingMessage): number {
  return Number(message.value.slice(message.value.lastIndexOf('#') + 1))
}

/** Records every message handed to the handler (before `then` runs, so a throwing handler counts). */
function recorder(then?: MessageHandler) {
  const messages: IncomingMessage[] = []
  return {
    messages,
    handler: async (message: IncomingMessage, context: HandlerContext) => {
      messages.push(message)
      await then?.(message, context)
    },
    values: () => messages.map((m) => m.value),
    has: (value: string) => messages.some((m) => m.value === value),
    seqsOf: (key: string) => messages.filter((m) => m.key === key).map(seqOf),
  }
}

/** Highest number of handler calls running at once for any one partition. */
function concurrencyProbe() {
  const running = new Map<string, number>()
  const probe = {
    max: 0,
    enter(message: IncomingMessage) {
      const key = `${message.topic}/${message.partition}`
      const now = (running.get(key) ?? 0) + 1
      running.set(key, now)
      probe.max = Math.max(probe.max, now)
    },
    leave(message: IncomingMessage) {
      const key = `${message.topic}/${message.partition}`
      running.set(key, (running.get(key) ?? 1) - 1)
    },
  }
  return probe
}

/** Waits for `promise`, or throws once `signal` aborts (the member gives the partition up). */
function held(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    signal.addEventListener('abort', () => reject(signal.reason), { once: true })
    promise.then(resolve, reject)
  })
}

/** A promise the test settles: `open()` lets waiting handlers go on, `fail()` makes them throw. */
function latch() {
  let open: () => void = () => {}
  let fail: (error: Error) => void = () => {}
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve
    fail = reject
  })
  // Nobody may be waiting when it fails; that must not count as an unhandled rejection.
  promise.catch(() => {})
  return { promise, open, fail }
}
