import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { checkDeciderProperties } from '../../platform/testing/decider-properties.ts'
import { type OrderCommand, type OrderStatus, orderDecider, subtotalOf } from './order.ts'

/**
 * The order decider under random command sequences: totals always add up, versions are contiguous,
 * a rejected command changes nothing, and terminal orders stay terminal.
 */

const ORDER_ID = 'order-prop'
const statuses: OrderStatus[] = ['PENDING', 'CONFIRMED', 'DISPATCHED', 'DELIVERED', 'CANCELLED']

const item = fc.record({
  productId: fc.constantFrom('p-1', 'p-2', 'p-3'),
  price: fc.integer({ min: 0, max: 100_000 }),
  quantity: fc.integer({ min: 1, max: 20 }),
})
const items = fc.array(item, { minLength: 1, maxLength: 5 })

const command: fc.Arbitrary<OrderCommand> = fc.oneof(
  fc.record({
    commandType: fc.constant('CreateOrder' as const),
    orderId: fc.constant(ORDER_ID),
    customerId: fc.constant('c-1'),
    items,
    totalAmount: fc.option(fc.integer({ min: 0, max: 5_000_000 }), { nil: undefined }),
    currency: fc.constant('USD'),
  }),
  fc.record({
    commandType: fc.constant('UpdateOrderDetails' as const),
    orderId: fc.constant(ORDER_ID),
    items: fc.option(items, { nil: undefined }),
    notes: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
  }),
  fc.record({
    commandType: fc.constant('ConfirmOrder' as const),
    orderId: fc.constant(ORDER_ID),
    paymentId: fc.constantFrom('pay-1', 'pay-2'),
  }),
  fc.record({
    commandType: fc.constant('CancelOrder' as const),
    orderId: fc.constant(ORDER_ID),
    reason: fc.constantFrom('changed my mind', 'out of stock'),
  }),
  fc.record({
    commandType: fc.constant('ChangeOrderStatus' as const),
    orderId: fc.constant(ORDER_ID),
    status: fc.constantFrom(...statuses),
    paymentId: fc.option(fc.constantFrom('pay-1', 'pay-2'), { nil: undefined }),
    reason: fc.option(fc.constantFrom('late'), { nil: undefined }),
  }),
)

describe('the order decider, for any sequence of commands', () => {
  it('keeps totals exact, versions contiguous and terminal orders terminal', () => {
    let terminalAt: { status: OrderStatus; events: number } | undefined
    checkDeciderProperties({
      decider: orderDecider,
      command,
      aggregateId: ORDER_ID,
      invariant(order, history) {
        if (history.length === 1) terminalAt = undefined
        if (!order) return
        assert.equal(order.subtotal, subtotalOf(order.items), 'the subtotal is the items')
        assert.ok(order.totalAmount >= order.subtotal, 'the total never falls below the items')
        assert.ok(statuses.includes(order.status))
        if (terminalAt)
          assert.equal(history.length, terminalAt.events, `nothing happens to a ${terminalAt.status} order`)
        if (order.status === 'CANCELLED' || order.status === 'DELIVERED') {
          terminalAt ??= { status: order.status, events: history.length }
        }
        if (order.status === 'CONFIRMED' || order.status === 'DISPATCHED' || order.status === 'DELIVERED') {
          assert.ok(order.paymentId, 'a confirmed order names its payment')
        }
      },
    })
  })
})
