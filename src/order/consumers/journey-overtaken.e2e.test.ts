import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { v7 as uuidv7 } from 'uuid'
import { startTestApp } from '../../../test/support/app.ts'
import { pgliteTestDatabase, type TestDatabase, waitFor } from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { DELIVERY_EVENTS_TOPIC, deliveryStreamId, encodeDeliveryEvent } from '../../contracts/delivery/events.ts'
import { DISPATCH_EVENTS_TOPIC, dispatchStreamId, encodeDispatchEvent } from '../../contracts/dispatch/events.ts'
import { createEmbeddedTransport } from '../../platform/transport/embedded.ts'
import type { Transport } from '../../platform/transport/port.ts'
import { orderModule } from '../index.ts'

/**
 * Choreography: the delivery of an order can overtake its dispatch (they travel on different
 * topics). The order records both at once, in the order they happened, instead of waiting for the
 * dispatch through retries: a consumer that waits holds its partition's buffered messages, and under
 * load that stopped the consumer from fetching the dispatch it waited for.
 */
describe('a delivery that overtakes its dispatch (choreography)', () => {
  let database: TestDatabase
  let transport: Transport
  let app: App
  before(async () => {
    database = await pgliteTestDatabase()
    transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 20 })
    // Retries that would take minutes: a test that waited for them would time out.
    app = await startTestApp({
      db: database.db,
      transport,
      modules: [orderModule()],
      env: { SAGA_MODE: 'choreography', KAFKA_RETRY_BACKOFF_MS: '60000' },
      app: { pollIntervalMs: 50 },
    })
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await database?.cleanup()
  })

  const envelope = (aggregateId: string) => ({
    eventId: uuidv7(),
    aggregateId,
    occurredOn: new Date().toISOString(),
    version: 1,
    schemaVersion: 1,
  })

  it('is DELIVERED at once, its history showing the dispatch first; the late dispatch changes nothing', async () => {
    const created = await app.http.inject({
      method: 'POST',
      url: '/api/orders',
      payload: { customerId: 'c-1', items: [{ productId: 'p', quantity: 1, price: 5 }] },
    })
    const orderId = created.json<{ id: string }>().id
    const confirmed = await app.http.inject({
      method: 'POST',
      url: `/api/orders/${orderId}/confirm`,
      payload: { paymentId: `payment-${orderId}` },
    })
    assert.equal(confirmed.statusCode, 200, confirmed.body)

    const shipmentId = `shipment-${orderId}`
    const delivered = {
      ...envelope(deliveryStreamId(orderId)),
      eventType: 'OrderDelivered' as const,
      orderId,
      shipmentId,
    }
    await transport.publish([
      {
        topic: DELIVERY_EVENTS_TOPIC,
        key: orderId,
        value: JSON.stringify(encodeDeliveryEvent(delivered)),
        headers: {},
      },
    ])
    const order = await waitFor(
      async () => {
        const body = (await app.http.inject({ method: 'GET', url: `/api/orders/${orderId}` })).json<{
          status: string
        }>()
        return body.status === 'DELIVERED' ? body : null
      },
      { timeoutMs: 10_000, message: 'the order to be DELIVERED without its dispatch event' },
    )
    assert.equal(order.status, 'DELIVERED')

    const dispatched = {
      ...envelope(dispatchStreamId(orderId)),
      eventType: 'OrderDispatched' as const,
      orderId,
      shipmentId,
      shippingCost: 10,
      currency: 'USD',
    }
    await transport.publish([
      {
        topic: DISPATCH_EVENTS_TOPIC,
        key: orderId,
        value: JSON.stringify(encodeDispatchEvent(dispatched)),
        headers: {},
      },
    ])
    await waitFor(
      async () => {
        const { rows } = await database.db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM inbox WHERE message_id LIKE $1',
          [`%${dispatched.eventId}%`],
        )
        return (rows[0]?.n ?? 0) > 0 ? true : null
      },
      { timeoutMs: 10_000, message: 'the late dispatch to be handled' },
    )
    const history = (await app.http.inject({ method: 'GET', url: `/api/orders/${orderId}/events` })).json<{
      events: { eventType: string; from?: string; to?: string }[]
    }>()
    assert.deepEqual(
      history.events.map((e) => (e.eventType === 'OrderStatusChanged' ? `${e.from}→${e.to}` : e.eventType)),
      ['OrderCreated', 'OrderConfirmed', 'CONFIRMED→DISPATCHED', 'DISPATCHED→DELIVERED'],
    )
    const deadLettered = (await app.runtime.metrics.deadLettered.get()).values.filter((v) => v.value > 0)
    assert.deepEqual(deadLettered, [])
  })
})
