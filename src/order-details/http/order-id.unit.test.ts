import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { orderIdOf } from './routes.ts'

/** Which order a message on a topic is about, for `GET /getAllOrderIdsFromTopic`. */
describe('orderIdOf', () => {
  it("takes an order event's aggregateId (order-events), and no other event's", () => {
    const event = { eventId: 'e', aggregateId: 'order-1', eventType: 'OrderCreated', version: 1, customerId: 'c' }
    assert.equal(orderIdOf(JSON.stringify(event)), 'order-1')
    const payment = { ...event, aggregateId: 'payment-order-1', eventType: 'PaymentProcessed' }
    assert.equal(orderIdOf(JSON.stringify(payment)), undefined)
  })

  it('takes a top-level orderId, and the order of the message a dead letter holds', () => {
    assert.equal(orderIdOf(JSON.stringify({ commandType: 'ConfirmOrder', orderId: 'order-2' })), 'order-2')
    const deadLetter = {
      originalTopic: 'order_commands',
      reason: 'REJECTED',
      payload: JSON.stringify({ commandType: 'ConfirmOrder', orderId: 'order-3' }),
    }
    assert.equal(orderIdOf(JSON.stringify(deadLetter)), 'order-3')
    assert.equal(orderIdOf(JSON.stringify({ ...deadLetter, payload: '{not json' })), undefined)
    assert.equal(orderIdOf('{not json'), undefined)
    assert.equal(orderIdOf('null'), undefined)
  })
})
