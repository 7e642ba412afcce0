import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { checkDeciderProperties } from '../../platform/testing/decider-properties.ts'
import { type PaymentCommand, paymentDecider } from './payment.ts'

/** The payment decider under any sequence of commands: at most one capture, refunds only of it. */
const ORDER_ID = 'order-prop'

const outcome = fc.oneof(
  fc.record({ status: fc.constant('APPROVED' as const), authorizationId: fc.constantFrom('auth-1', 'auth-2') }),
  fc.record({
    status: fc.constant('DECLINED' as const),
    code: fc.constant('AMOUNT_OVER_LIMIT' as const),
    reason: fc.constant('amount over the limit'),
  }),
)

const command: fc.Arbitrary<PaymentCommand> = fc.oneof(
  fc.record({
    commandType: fc.constant('ProcessPayment' as const),
    orderId: fc.constant(ORDER_ID),
    customerId: fc.constant('c-1'),
    amount: fc.constantFrom(1000, 2500),
    currency: fc.constant('USD'),
    outcome: fc.option(outcome, { nil: undefined }),
  }),
  fc.record({
    commandType: fc.constant('RefundPayment' as const),
    orderId: fc.constant(ORDER_ID),
    reason: fc.constantFrom('order cancelled', 'customer asked'),
  }),
)

describe('the payment decider, for any sequence of commands', () => {
  it('captures at most once, refunds only a capture and at most once, with contiguous versions', () => {
    checkDeciderProperties({
      decider: paymentDecider,
      command,
      aggregateId: `payment-${ORDER_ID}`,
      invariant(_payment, history) {
        const types = history.map((e) => e.eventType)
        const count = (type: string) => types.filter((t) => t === type).length
        assert.ok(count('PaymentProcessed') <= 1, `one capture at most: ${types}`)
        assert.ok(count('PaymentRefunded') <= count('PaymentProcessed'), `a refund gives back a capture: ${types}`)
        assert.ok(
          count('PaymentProcessed') + count('PaymentFailed') + count('PaymentVoided') <= 1,
          `one decision: ${types}`,
        )
        const refund = types.indexOf('PaymentRefunded')
        if (refund >= 0) assert.ok(types.indexOf('PaymentProcessed') < refund, 'the capture comes first')
      },
    })
  })
})
