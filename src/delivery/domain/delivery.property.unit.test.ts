import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { checkDeciderProperties } from '../../platform/testing/decider-properties.ts'
import { type DeliveryCommand, deliveryDecider } from './delivery.ts'

/** The delivery decider under any sequence of commands: delivered once, and only what was scheduled. */
const ORDER_ID = 'order-prop'

const command: fc.Arbitrary<DeliveryCommand> = fc.oneof(
  fc.record({
    commandType: fc.constant('ScheduleDelivery' as const),
    orderId: fc.constant(ORDER_ID),
    shipmentId: fc.constantFrom('shipment-1', 'shipment-2'),
    delayMs: fc.integer({ min: 0, max: 600_000 }),
  }),
  fc.record({ commandType: fc.constant('DeliverOrder' as const), orderId: fc.constant(ORDER_ID) }),
)

describe('the delivery decider, for any sequence of commands', () => {
  it('delivers at most once and only after scheduling, with contiguous versions', () => {
    checkDeciderProperties({
      decider: deliveryDecider,
      command,
      aggregateId: `delivery-${ORDER_ID}`,
      invariant(_delivery, history) {
        const types = history.map((e) => e.eventType)
        assert.ok(types.filter((t) => t === 'OrderDelivered').length <= 1, `delivered once at most: ${types}`)
        const delivered = types.indexOf('OrderDelivered')
        if (delivered >= 0) assert.ok(types.indexOf('DeliveryScheduled') < delivered, 'scheduled before delivered')
      },
    })
  })
})
