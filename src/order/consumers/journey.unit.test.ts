import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { DeliveryEvent } from '../../contracts/delivery/events.ts'
import type { DispatchEvent } from '../../contracts/dispatch/events.ts'
import type { PaymentEvent } from '../../contracts/payment/events.ts'
import { orderCommandFor, whenRefused } from './journey.ts'

/** Choreography: what the order service does with a journey event the order refuses. */

const ORDER_ID = 'order-1'
const envelope = { eventId: 'event-1', occurredOn: '2026-01-01T12:00:00.000Z', version: 1, schemaVersion: 1 }
const processed = {
  ...envelope,
  aggregateId: `payment-${ORDER_ID}`,
  eventType: 'PaymentProcessed',
  orderId: ORDER_ID,
  paymentId: `payment-${ORDER_ID}`,
  amount: 100,
  currency: 'USD',
  customerId: 'customer-1',
  authorizationId: 'auth-1',
} as PaymentEvent
const dispatched = {
  ...envelope,
  aggregateId: `dispatch-${ORDER_ID}`,
  eventType: 'OrderDispatched',
  orderId: ORDER_ID,
  shipmentId: `shipment-${ORDER_ID}`,
  shippingCost: 2,
  currency: 'USD',
} as DispatchEvent
const delivered = {
  ...envelope,
  aggregateId: `delivery-${ORDER_ID}`,
  eventType: 'OrderDelivered',
  orderId: ORDER_ID,
  shipmentId: `shipment-${ORDER_ID}`,
} as DeliveryEvent

const commandOf = (event: PaymentEvent | DispatchEvent | DeliveryEvent) => {
  const command = orderCommandFor(event)
  assert.ok(command)
  return command
}

describe('order journey (choreography): late events', () => {
  it('leaves a cancelled order cancelled when its payment is captured late (payment refunds it)', () => {
    const outcome = whenRefused(commandOf(processed), 'CANCELLED')
    assert.equal(outcome.action, 'skip')
  })

  it('keeps a cancelled order cancelled when it is dispatched or delivered late, and warns: goods went out', () => {
    for (const event of [dispatched, delivered]) {
      const outcome = whenRefused(commandOf(event), 'CANCELLED')
      assert.equal(outcome.action, 'skip', event.eventType)
      assert.ok(outcome.action === 'skip' && outcome.warn, event.eventType)
      assert.match(outcome.action === 'skip' ? outcome.why : '', /goods went out for a cancelled order/)
    }
  })

  it('records the dispatch of a delivery that overtook it, rather than wait for it', () => {
    assert.deepEqual(commandOf(delivered), {
      commandType: 'ChangeOrderStatus',
      orderId: 'order-1',
      status: 'DELIVERED',
      recordsDispatch: true,
    })
  })

  it('dead-letters a refusal no race explains', () => {
    assert.deepEqual(whenRefused(commandOf(dispatched), 'PENDING'), { action: 'dead-letter' })
    assert.deepEqual(whenRefused(commandOf(processed), 'DELIVERED'), { action: 'dead-letter' })
    assert.deepEqual(whenRefused(commandOf(delivered), null), { action: 'dead-letter' })
  })
})

describe('choreography: what a capture does to the order', () => {
  const captured = { ...processed, amount: 1750, currency: 'USD' } as PaymentEvent

  it('confirms the order when the capture is its total', () => {
    assert.deepEqual(orderCommandFor(captured, { totalAmount: 1750, currency: 'USD' }), {
      commandType: 'ConfirmOrder',
      orderId: 'order-1',
      paymentId: 'payment-order-1',
    })
  })

  it('cancels the order (so the payment service refunds it) when the capture is another amount', () => {
    assert.deepEqual(orderCommandFor(captured, { totalAmount: 5250, currency: 'USD' }), {
      commandType: 'CancelOrder',
      orderId: 'order-1',
      reason: "payment captured 17.50 USD, not the order's total 52.50 USD",
    })
  })
})
