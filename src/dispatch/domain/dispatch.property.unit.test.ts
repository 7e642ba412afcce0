import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { checkDeciderProperties } from '../../platform/testing/decider-properties.ts'
import { type DispatchCommand, dispatchDecider } from './dispatch.ts'

/** The dispatch decider under any sequence of commands: an order ships at most once. */
const ORDER_ID = 'order-prop'

const command: fc.Arbitrary<DispatchCommand> = fc.oneof(
  fc.record({
    commandType: fc.constant('QuoteShipment' as const),
    orderId: fc.constant(ORDER_ID),
    orderAmount: fc.integer({ min: 0, max: 1_000_000 }),
    currency: fc.option(fc.constant('USD'), { nil: undefined }),
  }),
  fc.record({
    commandType: fc.constant('DispatchOrder' as const),
    orderId: fc.constant(ORDER_ID),
    orderAmount: fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined }),
    currency: fc.option(fc.constant('USD'), { nil: undefined }),
  }),
)

describe('the dispatch decider, for any sequence of commands', () => {
  it('dispatches at most once, with a non-negative shipping cost and contiguous versions', () => {
    checkDeciderProperties({
      decider: dispatchDecider,
      command,
      aggregateId: `dispatch-${ORDER_ID}`,
      invariant(shipment, history) {
        const dispatched = history.filter((e) => e.eventType === 'OrderDispatched')
        assert.ok(dispatched.length <= 1, 'one dispatch at most')
        if (shipment?.dispatched) assert.ok(shipment.dispatched.shippingCost >= 0)
      },
    })
  })
})
