import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { v4 as uuidv4 } from 'uuid'
import { type Broker, startBroker } from '../../scripts/kafka.ts'
import { startOrderService, type TestOrderService } from '../../test/support/app.ts'
import {
  follow,
  freePort,
  kafkaBrokers,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../test/support/index.ts'
import { ORDER_COMMANDS_TOPIC } from '../contracts/order/commands.ts'
import { ORDER_EVENTS_TOPIC } from '../contracts/order/events.ts'
import { createReplayJob, REPLAY_HEADER, runReplayJob } from '../platform/es/replay.ts'
import { createLogger } from '../platform/logger.ts'
import { openPglite } from '../platform/sql/pglite.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import { createKafkaTransport, type KafkaTransportOptions } from '../platform/transport/kafka.ts'
import { namespaceTransport } from '../platform/transport/namespaced.ts'
import type { IncomingMessage, Subscription, Transport } from '../platform/transport/port.ts'
import { type DeadLetterRecord, deadLetterTopic } from '../platform/transport/reliable-consumer.ts'
import type { CreateOrder } from './domain/order.ts'
import { orderReplaySource } from './index.ts'

/**
 * The order service on Kafka + PostgreSQL: the seed 001 flow end to end, the outbox closing the gap
 * between commit and publish, commands from `order_commands` applied once, and a broker outage.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })
const retry = { max: 1, backoffMs: 20 }

const kafkaOptions = (brokers: string[]): KafkaTransportOptions => ({
  brokers,
  clientId: uniqueName('orders'),
  partitions: 3,
  replicationFactor: 1,
  requiredAcks: 'all',
  retries: 1,
  retryBackoffMs: 100,
})

const createOrder = (orderId: string, customerId = 'customer-123'): CreateOrder => ({
  commandType: 'CreateOrder',
  orderId,
  customerId,
  restaurantId: 'restaurant-456',
  totalAmount: 4599,
  items: [{ menuItemId: 'item-1', name: 'Pizza', price: 1299, quantity: 2 }],
  currency: 'USD',
})

const eventsOf = (seen: IncomingMessage[], orderId: string) =>
  seen.filter((m) => m.key === orderId).map((m) => JSON.parse(m.value) as Record<string, unknown>)

/** A transport in a process that dies before any publish gets out: every publish fails. */
function dyingTransport(kind: Transport['kind']): Transport {
  return {
    kind,
    ensureTopics: async () => {},
    ping: async () => {
      throw new Error('process killed')
    },
    subscribe: async () => ({ groupId: 'none', ready: Promise.resolve(), close: async () => {}, lag: async () => [] }),
    groupLag: async () => [],
    readTopic: async () => {
      throw new Error('process killed')
    },
    describeLog: async () => {
      throw new Error('process killed')
    },
    publish: async () => {
      throw new Error('process killed before publishing')
    },
    close: async () => {},
  }
}

describe('order service on Kafka and PostgreSQL', () => {
  let database: TestDatabase
  let transport: Transport
  let service: TestOrderService
  let events: { seen: IncomingMessage[]; sub: Subscription }

  before(async () => {
    database = await postgresTestDatabase('of_orders')
    // Topics and groups of this file's own: the shared broker's order_commands and the order
    // service's default group are other files' too, and a member of another file's group would take
    // this file's commands to a database without their orders.
    transport = namespaceTransport(await createKafkaTransport(kafkaOptions(kafkaBrokers())), `${uniqueName('os')}.`)
    service = await startOrderService({ db: database.db, transport, logger, retry, pollIntervalMs: 200 })
    events = await follow(transport, ORDER_EVENTS_TOPIC)
  })
  after(async () => {
    await events?.sub.close()
    await service?.stop()
    await transport?.close()
    await database?.cleanup()
  })

  it("publishes seed 001's OrderCreated keyed by the order id, then OrderConfirmed and OrderCancelled", async () => {
    const orderId = uniqueName('order')
    await service.store.execute(createOrder(orderId))
    await service.store.execute({ commandType: 'ConfirmOrder', orderId, paymentId: 'payment-1' })
    await service.store.execute({ commandType: 'CancelOrder', orderId, reason: 'customer changed their mind' })
    const published = await waitFor(
      () => (eventsOf(events.seen, orderId).length === 3 ? eventsOf(events.seen, orderId) : null),
      {
        message: () => `saw ${eventsOf(events.seen, orderId).length} of 3 events for ${orderId}`,
      },
    )
    assert.deepEqual(
      published.map((e) => [e.eventType, e.version]),
      [
        ['OrderCreated', 1],
        ['OrderConfirmed', 2],
        ['OrderCancelled', 3],
      ],
    )
    const created = published[0] ?? {}
    assert.equal(created.aggregateId, orderId)
    assert.equal(created.customerId, 'customer-123')
    assert.equal(created.restaurantId, 'restaurant-456')
    assert.equal(created.totalAmount, 45.99)
    assert.deepEqual(created.items, [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }])
    assert.match(String(created.eventId), /^[0-9a-f]{8}-[0-9a-f]{4}-7/)
    assert.match(String(created.occurredOn), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
    assert.equal(published[1]?.paymentId, 'payment-1')
    assert.equal(published[2]?.reason, 'customer changed their mind')
    const message = events.seen.find((m) => m.key === orderId)
    assert.equal(message?.headers['event-type'], 'OrderCreated')
    assert.equal(message?.headers['event-id'], created.eventId)
  })

  it('loses nothing when the process dies between commit and publish: the restarted relay publishes the outbox', async () => {
    // A database of its own: the service of this suite must not publish the rows before the "restart".
    const own = await postgresTestDatabase('of_crash')
    try {
      // The first process commits its orders but dies before any publish reaches Kafka.
      const dying = dyingTransport('kafka')
      const doomed = await startOrderService({ db: own.db, transport: dying, logger, retry, pollIntervalMs: 200 })
      const orderIds = Array.from({ length: 5 }, () => uniqueName('crash'))
      for (const orderId of orderIds) await doomed.store.execute(createOrder(orderId))
      await doomed.stop()
      assert.equal(await doomed.relay.pending(), 5, 'the committed events wait in the outbox')

      const restarted = await startOrderService({
        db: own.reopen(),
        transport,
        logger,
        retry,
        pollIntervalMs: 200,
        commandsGroupId: uniqueName('commands'),
      })
      try {
        await waitFor(() => orderIds.every((id) => eventsOf(events.seen, id).length === 1), {
          message: () => `published ${orderIds.filter((id) => eventsOf(events.seen, id).length > 0).length} of 5`,
        })
        // The relay marks rows published once the broker acknowledged them: with its next select,
        // or alone once none came soon (`markWithNextMs`).
        await waitFor(async () => (await restarted.relay.pending()) === 0, { message: 'the outbox rows are marked' })
      } finally {
        await restarted.stop()
      }
    } finally {
      await own.cleanup()
    }
  })

  it('applies each order_commands message once, and dead-letters invalid and rejected commands with the reason', async (t) => {
    const orderId = uniqueName('cmd')
    await service.store.execute(createOrder(orderId))
    const dlq = await follow(transport, deadLetterTopic(ORDER_COMMANDS_TOPIC))
    // Closed whatever happens: an open consumer keeps this file's process alive after a failure.
    t.after(() => dlq.sub.close())
    const confirm = JSON.stringify({
      commandId: uuidv4(),
      commandType: 'ApproveOrder',
      orderId,
      paymentId: 'payment-7',
      issuedOn: new Date().toISOString(),
    })
    // The same command delivered twice, as a saga orchestrator retrying would send it.
    await transport.publish([
      { topic: ORDER_COMMANDS_TOPIC, key: orderId, value: confirm },
      { topic: ORDER_COMMANDS_TOPIC, key: orderId, value: confirm },
      {
        topic: ORDER_COMMANDS_TOPIC,
        key: orderId,
        value: JSON.stringify({
          commandId: uuidv4(),
          commandType: 'ChangeOrderStatus',
          orderId,
          status: 'DELIVERED',
          issuedOn: new Date().toISOString(),
        }),
      },
      // Last: a poison message parks the order's key (its later commands would wait behind it).
      { topic: ORDER_COMMANDS_TOPIC, key: orderId, value: '{"commandType":"ConfirmOrder"' },
    ])
    await waitFor(() => dlq.seen.filter((m) => m.key === orderId).length === 2, {
      message: () => `dead letters for ${orderId}: ${dlq.seen.filter((m) => m.key === orderId).length} of 2`,
    })
    const history = await service.store.history(orderId)
    assert.deepEqual(
      history.map((e) => e.eventType),
      ['OrderCreated', 'OrderConfirmed'],
    )
    const records = dlq.seen.filter((m) => m.key === orderId).map((m) => JSON.parse(m.value) as DeadLetterRecord)
    assert.deepEqual(records.map((r) => r.reason).sort(), ['NOT_JSON', 'REJECTED'])
    const rejected = records.find((r) => r.reason === 'REJECTED')
    assert.equal(rejected?.error.code, 'INVALID_TRANSITION')
    assert.match(rejected?.error.message ?? '', /CONFIRMED/)
  })

  it('skips, without a dead letter, a saga command that reaches an order the customer cancelled meanwhile', async (t) => {
    const orderId = uniqueName('cancelled')
    await service.store.execute(createOrder(orderId))
    await service.store.execute({ commandType: 'CancelOrder', orderId, reason: 'changed my mind' })
    const dlq = await follow(transport, deadLetterTopic(ORDER_COMMANDS_TOPIC))
    // Closed whatever happens: an open consumer keeps this file's process alive after a failure.
    t.after(() => dlq.sub.close())
    const command = (commandType: string, extra: Record<string, unknown>) =>
      JSON.stringify({ commandId: uuidv4(), commandType, orderId, issuedOn: new Date().toISOString(), ...extra })
    const marker = uniqueName('marker')
    await service.store.execute(createOrder(marker))
    await transport.publish([
      { topic: ORDER_COMMANDS_TOPIC, key: orderId, value: command('ApproveOrder', { paymentId: 'payment-8' }) },
      { topic: ORDER_COMMANDS_TOPIC, key: orderId, value: command('ChangeOrderStatus', { status: 'DISPATCHED' }) },
      // A rejected command on another order: once its dead letter is seen, the first two were handled.
      {
        topic: ORDER_COMMANDS_TOPIC,
        key: orderId,
        value: JSON.stringify({
          commandId: uuidv4(),
          commandType: 'ChangeOrderStatus',
          orderId: marker,
          status: 'DELIVERED',
          issuedOn: new Date().toISOString(),
        }),
      },
    ])
    await waitFor(() => dlq.seen.some((m) => m.value.includes(marker)), { message: 'the marker is dead-lettered' })
    assert.deepEqual(
      dlq.seen.filter((m) => m.key === orderId && !m.value.includes(marker)).map((m) => m.value),
      [],
    )
    assert.deepEqual(
      (await service.store.history(orderId)).map((e) => e.eventType),
      ['OrderCreated', 'OrderCancelled'],
    )
  })

  it("replays one order's stored events to order-events on Kafka, marked as replays, in version order", async () => {
    const orderId = uniqueName('replay')
    await service.store.execute(createOrder(orderId))
    await service.store.execute({ commandType: 'ConfirmOrder', orderId, paymentId: 'payment-r' })
    await waitFor(() => eventsOf(events.seen, orderId).length === 2, { message: 'the originals are published' })

    const job = await createReplayJob(database.db, orderReplaySource, { kind: 'stream', streamId: orderId })
    const done = await runReplayJob({ db: database.db, transport, source: orderReplaySource }, job.id)
    assert.equal(done.status, 'completed')
    assert.equal(done.done, 2)

    const replays = () => events.seen.filter((m) => m.key === orderId && m.headers[REPLAY_HEADER] === 'true')
    await waitFor(() => replays().length === 2, { message: () => `saw ${replays().length} of 2 replayed events` })
    const originals = events.seen.filter((m) => m.key === orderId && !m.headers[REPLAY_HEADER])
    assert.deepEqual(
      replays().map((m) => m.value),
      originals.map((m) => m.value),
      'a replay carries exactly the stored events, in version order',
    )
  })
})

describe('order service through a Kafka outage', () => {
  let dir: string
  let broker: Broker | undefined
  let database: TestDatabase
  let transport: Transport
  let reader: Transport
  let service: TestOrderService
  let port: number
  let controllerPort: number

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orderflow-outage-'))
    port = await freePort()
    controllerPort = await freePort()
    broker = await startBroker({ dir, port, controllerPort })
    database = await postgresTestDatabase('of_outage')
    transport = await createKafkaTransport(kafkaOptions([broker.brokers]))
    reader = await createKafkaTransport(kafkaOptions([broker.brokers]))
    service = await startOrderService({ db: database.db, transport, logger, retry, pollIntervalMs: 200 })
  })
  after(async () => {
    await service?.stop()
    await Promise.allSettled([transport?.close(), reader?.close()])
    await broker?.stop()
    await database?.cleanup()
    await rm(dir, { recursive: true, force: true })
  })

  // Its own waits (a broker stop and start, 90 s for the backlog, 60 s for a command) exceed the
  // suite's 120 s per test on a loaded machine, so it has a budget that holds them.
  it('keeps accepting orders while Kafka is down and delivers every event, in order and unaltered, after it returns', {
    timeout: 300_000,
  }, async (t) => {
    const before = Array.from({ length: 3 }, () => uniqueName('before'))
    for (const orderId of before) await service.store.execute(createOrder(orderId))
    await waitFor(async () => (await service.relay.pending()) === 0, { message: 'the first orders are published' })

    await broker?.stop()
    broker = undefined
    const during = Array.from({ length: 10 }, () => uniqueName('during'))
    for (const orderId of during) {
      await service.store.execute(createOrder(orderId))
      await service.store.execute({ commandType: 'ConfirmOrder', orderId, paymentId: `pay-${orderId}` })
    }
    assert.ok((await service.relay.pending()) >= 20, 'the events wait in the outbox while Kafka is down')

    broker = await startBroker({ dir, port, controllerPort })
    const { seen, sub } = await follow(reader, ORDER_EVENTS_TOPIC)
    t.after(() => sub.close())
    const all = [...before, ...during]
    const expected = before.length + during.length * 2
    await waitFor(() => seen.filter((m) => all.includes(m.key)).length >= expected, {
      timeoutMs: 90_000,
      message: () =>
        `received ${seen.filter((m) => all.includes(m.key)).length} of ${expected} events after the restart`,
    })
    // At least once, never reordered, never altered: the relay publishes single attempts and
    // retries one whose answer was lost (the broker was coming back), so an event may be in the log
    // twice. A second copy carries the same eventId, so every consumer's inbox drops it; what must
    // hold is that no position is missing and the first copies come in version order per order.
    const byPosition = new Map<string, Set<string>>()
    const firstSeen: string[] = []
    for (const m of seen.filter((m) => all.includes(m.key))) {
      const body = JSON.parse(m.value) as { version: number; eventId: string }
      const position = `${m.key}@${body.version}`
      if (!byPosition.has(position)) firstSeen.push(position)
      byPosition.set(position, (byPosition.get(position) ?? new Set()).add(body.eventId))
    }
    assert.equal(byPosition.size, expected, `positions: ${[...byPosition.keys()].join(', ')}`)
    for (const [position, eventIds] of byPosition) {
      assert.equal(eventIds.size, 1, `${position} was published as two different events`)
    }
    for (const orderId of all) {
      const versions = firstSeen.filter((p) => p.startsWith(`${orderId}@`)).map((p) => Number(p.split('@')[1]))
      assert.deepEqual(
        versions,
        [...versions].sort((a, b) => a - b),
        `${orderId} in version order`,
      )
    }
    for (const orderId of during) {
      const once = [...new Map(eventsOf(seen, orderId).map((e) => [e.eventId, e])).values()]
      assert.deepEqual(
        once.map((e) => e.eventType),
        ['OrderCreated', 'OrderConfirmed'],
      )
    }

    // The command consumer that was subscribed through the outage reconnected by itself.
    const cancelled = before[0] ?? ''
    await reader.publish([
      {
        topic: ORDER_COMMANDS_TOPIC,
        key: cancelled,
        value: JSON.stringify({
          commandId: uuidv4(),
          commandType: 'CancelOrder',
          orderId: cancelled,
          reason: 'cancelled after the outage',
          issuedOn: new Date().toISOString(),
        }),
      },
    ])
    await waitFor(async () => (await service.store.get(cancelled))?.status === 'CANCELLED', {
      timeoutMs: 60_000,
      message: 'the command consumer applies a command sent after the broker came back',
    })
  })
})

describe('order service on the embedded default (PGlite on disk + the embedded log)', () => {
  it('loses nothing when the process dies between commit and publish: the restarted process publishes the outbox', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orderflow-crash-'))
    try {
      // The first "process": its commands commit, but it dies before its relay publishes anything.
      const first = await openPglite(dir)
      const dying = dyingTransport('embedded')
      const doomed = await startOrderService({ db: first, transport: dying, logger, retry, pollIntervalMs: 50 })
      const orderIds = Array.from({ length: 5 }, () => uniqueName('crash'))
      for (const orderId of orderIds) await doomed.store.execute(createOrder(orderId))
      await doomed.stop()
      await first.close()

      // The restarted process opens the same directory and publishes what the outbox holds.
      const db = await openPglite(dir)
      const transport = await createEmbeddedTransport({ db, partitions: 3, pollIntervalMs: 50 })
      const restarted = await startOrderService({ db, transport, logger, retry, pollIntervalMs: 50 })
      try {
        const { seen } = await follow(transport, ORDER_EVENTS_TOPIC)
        await waitFor(() => orderIds.every((id) => eventsOf(seen, id).length === 1), {
          message: () => `published ${orderIds.filter((id) => eventsOf(seen, id).length > 0).length} of 5`,
        })
        for (const orderId of orderIds) {
          const [event] = eventsOf(seen, orderId)
          assert.equal(event?.eventType, 'OrderCreated')
          assert.equal(event?.version, 1)
        }
        // Marked with the relay's next select, or alone once none came soon (`markWithNextMs`).
        await waitFor(async () => (await restarted.relay.pending()) === 0, { message: 'the outbox rows are marked' })
      } finally {
        await restarted.stop()
        await transport.close()
        await db.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
