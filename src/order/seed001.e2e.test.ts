import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { consoleConsumerCommand } from '../../scripts/kafka.ts'
import { startTestApp } from '../../test/support/app.ts'
import { kafkaBrokers, postgresTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import { ORDER_EVENTS_TOPIC } from '../contracts/order/events.ts'
import { createLogger } from '../platform/logger.ts'
import { createKafkaTransport } from '../platform/transport/kafka.ts'
import type { Transport } from '../platform/transport/port.ts'
import { orderModule } from './index.ts'

/**
 * Seed 001's "Testing Kafka Integration", step by step, on Kafka + PostgreSQL: post its example
 * order over HTTP, then read `order-events` with Kafka's own console consumer from the beginning
 * with keys printed, and find the OrderCreated event keyed by the order id in the seed's shape;
 * confirm and cancel produce OrderConfirmed and OrderCancelled.
 */

const seed001Body = {
  customerId: 'customer-123',
  restaurantId: 'restaurant-456',
  totalAmount: 45.99,
  items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
}

/** `kafka-console-consumer --topic order-events --from-beginning --property print.key=true`, until `done`. */
async function consoleConsumer(done: (lines: string[]) => boolean, timeoutMs: number): Promise<string[]> {
  const { java, args } = await consoleConsumerCommand([
    '--bootstrap-server',
    kafkaBrokers().join(','),
    '--topic',
    ORDER_EVENTS_TOPIC,
    '--from-beginning',
    '--property',
    'print.key=true',
  ])
  const child = spawn(java, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  let stderr = ''
  let buffered = ''
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the console consumer did not show the events in ${timeoutMs} ms; stderr: ${stderr}`)),
        timeoutMs,
      )
      child.stdout.on('data', (chunk) => {
        buffered += chunk
        const complete = buffered.split('\n')
        buffered = complete.pop() ?? ''
        lines.push(...complete)
        if (done(lines)) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('close', (code) => {
        clearTimeout(timer)
        reject(new Error(`the console consumer exited with ${code}: ${stderr}`))
      })
    })
  } finally {
    child.kill('SIGTERM')
  }
  return lines
}

describe("seed 001's Kafka integration check", () => {
  let database: TestDatabase
  let transport: Transport
  let app: App
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

  before(async () => {
    database = await postgresTestDatabase('of_seed001')
    transport = await createKafkaTransport({
      brokers: kafkaBrokers(),
      clientId: uniqueName('seed001'),
      partitions: 3,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 3,
      retryBackoffMs: 100,
    })
    app = await startTestApp({
      db: database.db,
      transport,
      logger,
      env: { KAFKA_RETRY_MAX: '1' },
      modules: [orderModule({ commandsGroupId: uniqueName('commands') })],
    })
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await database?.cleanup()
  })

  it('shows OrderCreated keyed by the order id, then OrderConfirmed, and OrderCancelled for a cancelled order', async () => {
    const created = await app.http.inject({ method: 'POST', url: '/api/orders', payload: seed001Body })
    assert.equal(created.statusCode, 201, created.body)
    const confirmedId = created.json<{ id: string }>().id
    const confirm = await app.http.inject({
      method: 'POST',
      url: `/api/orders/${confirmedId}/confirm`,
      payload: { paymentId: 'payment-789' },
    })
    assert.equal(confirm.statusCode, 200, confirm.body)

    const second = await app.http.inject({ method: 'POST', url: '/api/orders', payload: seed001Body })
    const cancelledId = second.json<{ id: string }>().id
    const cancel = await app.http.inject({
      method: 'POST',
      url: `/api/orders/${cancelledId}/cancel`,
      payload: { reason: 'restaurant closed' },
    })
    assert.equal(cancel.statusCode, 200, cancel.body)
    await waitFor(async () => (await app.relay.pending()) === 0, { message: 'the outbox is published' })

    const ours = (lines: string[]) =>
      lines.filter((l) => l.startsWith(`${confirmedId}\t`) || l.startsWith(`${cancelledId}\t`))
    const lines = ours(await consoleConsumer((all) => ours(all).length >= 4, 60_000))
    const parsed = lines.map((line) => {
      const [key, value] = line.split('\t')
      return { key, event: JSON.parse(value ?? '{}') as Record<string, unknown> }
    })
    const forOrder = (id: string) => parsed.filter((p) => p.key === id).map((p) => p.event)
    assert.deepEqual(
      forOrder(confirmedId).map((e) => e.eventType),
      ['OrderCreated', 'OrderConfirmed'],
    )
    assert.deepEqual(
      forOrder(cancelledId).map((e) => e.eventType),
      ['OrderCreated', 'OrderCancelled'],
    )

    const orderCreated = forOrder(confirmedId)[0] ?? {}
    for (const field of ['eventId', 'aggregateId', 'occurredOn', 'version', 'eventType']) {
      assert.ok(field in orderCreated, `OrderCreated carries ${field}`)
    }
    assert.equal(orderCreated.aggregateId, confirmedId)
    assert.equal(orderCreated.version, 1)
    assert.equal(orderCreated.customerId, 'customer-123')
    assert.equal(orderCreated.restaurantId, 'restaurant-456')
    assert.equal(orderCreated.totalAmount, 45.99)
    assert.deepEqual(orderCreated.items, seed001Body.items)
    assert.equal(forOrder(confirmedId)[1]?.paymentId, 'payment-789')
    assert.equal(forOrder(cancelledId)[1]?.reason, 'restaurant closed')
  })
})
