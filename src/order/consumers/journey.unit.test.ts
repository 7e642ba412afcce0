import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { PaymentEvent } from '../../contracts/payment/events.ts'
import { orderCommandFor } from './journey.ts'

const processed = {
  eventId: 'event-1',
  aggregateId: 'payment-order-1',
  occurredOn: '2026-01-01T12:00:00.000Z',
  version: 1,
  schemaVersion: 1,
  eventType: 'PaymentProcessed',
  orderId: 'order-1',
  paymentId: 'payment-order-1',
  customerId: 'customer-1',
  authorizationId: 'auth-1',
  amount: 1750,
  currency: 'USD',
} as PaymentEvent

describe('choreography: what a capture does to the order', () => {
  it('confirms the order when the capture is its total', () => {
    assert.deepEqual(orderCommandFor(processed, { totalAmount: 1750, currency: 'USD' }), {
      commandType: 'ConfirmOrder',
      orderId: 'order-1',
      paymentId: 'payment-order-1',
    })
  })

  it('cancels the order (so the payment service refunds it) when the capture is another amount', () => {
    assert.deepEqual(orderCommandFor(processed, { totalAmount: 5250, currency: 'USD' }), {
      commandType: 'CancelOrder',
      orderId: 'order-1',
      reason: "payment captured 17.50 USD, not the order's total 52.50 USD",
    })
  })
})
