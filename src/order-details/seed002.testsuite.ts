import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { v7 as uuidv7 } from 'uuid'
import { startTestApp } from '../../test/support/app.ts'
import { follow, uniqueName, waitFor } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import { shippingCostFor } from '../contracts/shipping.ts'
import { SHOP_ORDER_EVENTS_TOPIC } from '../contracts/shop/events.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import type { Transport } from '../platform/transport/port.ts'
import type { DeadLetterRecord } from '../platform/transport/reliable-consumer.ts'
import { shopModule } from '../shop/index.ts'
import { orderDetailsModule } from './index.ts'

/**
 * Seed 002 as its README documents it, end to end through HTTP and `orders.events`, on whichever
 * log and database the caller brings: the four curl examples (statuses and bodies), its 409 and
 * 404s, and the consumer's promises (out-of-order buffering that survives a restart, duplicates
 * ignored, poison messages dead-lettered while the partition keeps flowing).
 */

export interface Seed002Setup {
  db: SqlDatabase
  transport: Transport
  /** Configuration the app reads (e.g. KAFKA_BROKERS and KAFKA_TOPIC_PREFIX for the topic reader). */
  env: Record<string, string>
  cleanup(): Promise<void>
}

type Json = Record<string, unknown>

interface OrderDetails {
  order: {
    orderId: string
    customerId: string
    orderDate: string
    items: { itemId: string; name: string; price: number; quantity: number }[]
    totalAmount: number
    currency: string
    status: string
  }
  shippingCost: number
}

export function seed002Suite(name: string, setup: () => Promise<Seed002Setup>, timeoutMs = 30_000): void {
  describe(`seed 002 on ${name}`, () => {
    let context: Seed002Setup
    let app: App
    const groupId = uniqueName('order-details')

    const start = () =>
      startTestApp({
        db: context.db,
        transport: context.transport,
        env: context.env,
        modules: [shopModule(), orderDetailsModule({ groupId })],
        app: { pollIntervalMs: 100 },
      })

    before(async () => {
      context = await setup()
      app = await start()
    })
    after(async () => {
      await app?.close()
      await context?.cleanup()
    })

    const request = async (method: 'GET' | 'POST' | 'PUT', url: string, payload?: Json) => {
      const response = await app.http.inject({ method, url, ...(payload ? { payload } : {}) })
      return { status: response.statusCode, body: response.json<Json>(), headers: response.headers }
    }
    const details = (orderId: string) => request('GET', `/order-details?orderId=${encodeURIComponent(orderId)}`)
    const statusOf = async (orderId: string) => {
      const response = await details(orderId)
      return response.status === 200 ? (response.body as unknown as OrderDetails).order.status : undefined
    }
    const waitForStatus = (orderId: string, status: string) =>
      waitFor(async () => (await statusOf(orderId)) === status, {
        timeoutMs,
        message: () => `order ${orderId} did not reach status ${status}`,
      })
    const waitForPending = (orderId: string, count: number) =>
      waitFor(
        async () => {
          const response = await details(orderId)
          return response.status === 404 && response.body.pendingStatusUpdates === count
        },
        { timeoutMs, message: () => `${count} status update(s) for ${orderId} were not buffered` },
      )

    /** What another producer would write to orders.events, keyed by the order id. */
    const produce = (key: string, value: Json | string) =>
      context.transport.publish([
        { topic: SHOP_ORDER_EVENTS_TOPIC, key, value: typeof value === 'string' ? value : JSON.stringify(value) },
      ])
    const created = (orderId: string, customerId = 'CUST-EXTERNAL') => ({
      eventType: 'ORDER_CREATED',
      eventId: uuidv7(),
      orderId,
      order: {
        orderId,
        customerId,
        orderDate: '2024-01-18T12:00:00Z',
        items: [{ itemId: 'ITEM-1', name: 'Item 1', price: 150, quantity: 1 }],
        totalAmount: 150,
        currency: 'USD',
        status: 'created',
      },
    })
    const statusUpdated = (orderId: string, status: string) => ({
      eventType: 'ORDER_STATUS_UPDATED',
      eventId: uuidv7(),
      orderId,
      status,
    })

    it("answers the README's four curl examples as documented", async () => {
      const create = await request('POST', '/create-order', { order_id: '123', number_of_items: 3 })
      assert.equal(create.status, 200, JSON.stringify(create.body))
      assert.deepEqual(create.body, { message: 'order created and published successfully', orderId: 'ORD-123' })

      const update = await request('PUT', '/update-order', { order_id: 'ORD-123', status: 'confirmed' })
      assert.equal(update.status, 200, JSON.stringify(update.body))
      assert.deepEqual(update.body, { message: 'order status updated and published successfully', orderId: 'ORD-123' })

      await waitForStatus('ORD-123', 'confirmed')
      const shown = await details('ORD-123')
      assert.equal(shown.status, 200)
      const { order, shippingCost } = shown.body as unknown as OrderDetails
      assert.deepEqual(Object.keys(shown.body).sort(), ['order', 'shippingCost'])
      assert.deepEqual(Object.keys(order).sort(), [
        'currency',
        'customerId',
        'items',
        'orderDate',
        'orderId',
        'status',
        'totalAmount',
      ])
      assert.equal(order.orderId, 'ORD-123')
      assert.match(order.customerId, /^CUST-/)
      assert.ok(!Number.isNaN(Date.parse(order.orderDate)), `orderDate ${order.orderDate} is a date`)
      assert.equal(order.items.length, 3, 'number_of_items items')
      const total = order.items.reduce((sum, item) => sum + Math.round(item.price * 100) * item.quantity, 0)
      assert.equal(Math.round(order.totalAmount * 100), total, 'the total is what the items add up to')
      assert.equal(order.currency, 'USD')
      assert.equal(order.status, 'confirmed')
      assert.equal(shippingCost, shippingCostFor(total) / 100, "shipping follows the dispatch service's rule")

      const ids = await waitFor(
        async () => {
          const listed = await request('GET', '/getAllOrderIdsFromTopic?topicName=orders.events')
          assert.equal(listed.status, 200, JSON.stringify(listed.body))
          return (listed.body.orderIds as string[]).includes('ORD-123') ? listed.body : undefined
        },
        { timeoutMs, message: 'ORD-123 was not listed from orders.events' },
      )
      assert.equal(ids.topicName, 'orders.events')
      assert.deepEqual(Object.keys(ids).sort(), ['orderIds', 'topicName'])
    })

    it('answers 409 for an order id used before, 404 for unknown orders and topics, 400 naming what is wrong', async () => {
      const first = await request('POST', '/create-order', { order_id: 'dup-1', number_of_items: 1 })
      assert.equal(first.status, 200)
      const again = await request('POST', '/create-order', { order_id: 'dup-1', number_of_items: 2 })
      assert.equal(again.status, 409)
      assert.match(String(again.body.detail), /ORD-dup-1 already exists/)

      const unknownUpdate = await request('PUT', '/update-order', { order_id: 'ORD-nope', status: 'confirmed' })
      assert.equal(unknownUpdate.status, 404)
      assert.match(String(unknownUpdate.body.detail), /ORD-nope/)

      const badStatus = await request('PUT', '/update-order', { order_id: 'ORD-dup-1', status: 'teleported' })
      assert.equal(badStatus.status, 400)
      const statusError = (badStatus.body.errors as { field: string; message: string }[]).find(
        (e) => e.field === 'status',
      )
      assert.match(String(statusError?.message), /created, confirmed, shipped, delivered, cancelled/)

      const badCount = await request('POST', '/create-order', { order_id: '9', number_of_items: 0 })
      assert.equal(badCount.status, 400)
      assert.ok((badCount.body.errors as { field: string }[]).some((e) => e.field === 'number_of_items'))

      assert.equal((await details('ORD-never')).status, 404)
      const noId = await request('GET', '/order-details')
      assert.equal(noId.status, 400)
      assert.ok((noId.body.errors as { field: string }[]).some((e) => e.field === 'orderId'))

      const unknownTopic = await request('GET', `/getAllOrderIdsFromTopic?topicName=${uniqueName('no_such_topic')}`)
      assert.equal(unknownTopic.status, 404, JSON.stringify(unknownTopic.body))
      const badTopic = await request('GET', '/getAllOrderIdsFromTopic?topicName=not%20a%20topic')
      assert.equal(badTopic.status, 400)
    })

    it('buffers a status update that arrives before its ORDER_CREATED and applies it when the order arrives', async () => {
      const orderId = `ORD-${uniqueName('early')}`
      await produce(orderId, statusUpdated(orderId, 'shipped'))
      await waitForPending(orderId, 1)
      await produce(orderId, created(orderId))
      await waitForStatus(orderId, 'shipped')
      assert.equal((await details(orderId)).body.pendingStatusUpdates, undefined)
    })

    it('dead-letters a garbage message with the reason and keeps the partition flowing', async () => {
      const orderId = `ORD-${uniqueName('after-garbage')}`
      const dlq = await follow(context.transport, `${SHOP_ORDER_EVENTS_TOPIC}-dlq`, 'dlq-reader')
      try {
        // Same key: the valid message is behind the garbage on the same partition.
        await produce(orderId, '{this is not json')
        await produce(orderId, created(orderId))
        await waitForStatus(orderId, 'created')
        const record = await waitFor(
          () =>
            dlq.seen.map((m) => JSON.parse(m.value) as DeadLetterRecord).find((r) => r.payload === '{this is not json'),
          { timeoutMs, message: 'the garbage message was not dead-lettered' },
        )
        assert.equal(record.reason, 'NOT_JSON')
        assert.equal(record.originalTopic, SHOP_ORDER_EVENTS_TOPIC)
      } finally {
        await dlq.sub.close()
      }
    })

    it('lists its dead-letter topic like any other: empty from the start, then the orders of its dead letters', async () => {
      const dlqTopic = `${SHOP_ORDER_EVENTS_TOPIC}-dlq`
      // The consumer creates its dead-letter topic when it starts (on Kafka in the background).
      await waitFor(
        async () => (await request('GET', `/getAllOrderIdsFromTopic?topicName=${dlqTopic}`)).status === 200,
        {
          timeoutMs,
          message: `${dlqTopic} is not listed`,
        },
      )
      const orderId = `ORD-${uniqueName('dead-lettered')}`
      // JSON naming an order, but not a valid ORDER_CREATED: dead-lettered for its schema.
      await produce(orderId, { eventType: 'ORDER_CREATED', eventId: uuidv7(), orderId })
      await waitFor(
        async () => {
          const listed = await request('GET', `/getAllOrderIdsFromTopic?topicName=${dlqTopic}`)
          return (listed.body.orderIds as string[] | undefined)?.includes(orderId)
        },
        { timeoutMs, message: `${orderId} is not listed on ${dlqTopic}` },
      )
    })

    it('ignores a duplicate ORDER_CREATED', async () => {
      const orderId = `ORD-${uniqueName('twice')}`
      await produce(orderId, created(orderId, 'CUST-FIRST'))
      await produce(orderId, created(orderId, 'CUST-SECOND'))
      // Behind both creates on the partition: once it shows, both creates were handled.
      await produce(orderId, statusUpdated(orderId, 'delivered'))
      await waitForStatus(orderId, 'delivered')
      const { order } = (await details(orderId)).body as unknown as OrderDetails
      assert.equal(order.customerId, 'CUST-FIRST', 'the first ORDER_CREATED stands')
    })

    it('keeps a buffered status update across a restart', async () => {
      const orderId = `ORD-${uniqueName('restart')}`
      await produce(orderId, statusUpdated(orderId, 'cancelled'))
      await waitForPending(orderId, 1)

      await app.close()
      app = await start()

      await produce(orderId, created(orderId))
      await waitForStatus(orderId, 'cancelled')
    })
  })
}
