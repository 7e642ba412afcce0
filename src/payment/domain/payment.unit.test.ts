import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { OrderEvent } from '../../contracts/order/events.ts'
import { decodePaymentCommand, encodePaymentCommand } from '../../contracts/payment/commands.ts'
import {
  decodePaymentEvent,
  encodePaymentEvent,
  type PaymentEvent,
  type PaymentEventData,
  paymentIdFor,
  paymentStreamId,
} from '../../contracts/payment/events.ts'
import { isAppError, isRetryable } from '../../platform/errors.ts'
import { deciderSpec } from '../../platform/testing/decider-spec.ts'
import { createSimulatedGateway } from './gateway.ts'
import {
  authorizationRequestFor,
  type PaymentCommand,
  type ProcessPayment,
  paymentCommandFor,
  paymentDecider,
} from './payment.ts'

const ORDER_ID = 'order-1'
const PAYMENT_ID = paymentIdFor(ORDER_ID)
const spec = deciderSpec(paymentDecider, { aggregateId: paymentStreamId(ORDER_ID) })

const charge: Omit<ProcessPayment, 'outcome'> = {
  commandType: 'ProcessPayment',
  orderId: ORDER_ID,
  customerId: 'customer-1',
  amount: 4599,
  currency: 'USD',
}
const approved: PaymentCommand = { ...charge, outcome: { status: 'APPROVED', authorizationId: 'auth-1' } }
const declined: PaymentCommand = {
  ...charge,
  outcome: { status: 'DECLINED', code: 'AMOUNT_OVER_LIMIT', reason: 'amount is over the payment limit' },
}
const refund: PaymentCommand = { commandType: 'RefundPayment', orderId: ORDER_ID, reason: 'customer cancelled' }

const processed: PaymentEventData = {
  eventType: 'PaymentProcessed',
  orderId: ORDER_ID,
  paymentId: PAYMENT_ID,
  amount: 4599,
  currency: 'USD',
  customerId: 'customer-1',
  authorizationId: 'auth-1',
}
const failed: PaymentEventData = {
  eventType: 'PaymentFailed',
  orderId: ORDER_ID,
  paymentId: PAYMENT_ID,
  amount: 4599,
  currency: 'USD',
  customerId: 'customer-1',
  code: 'AMOUNT_OVER_LIMIT',
  reason: 'amount is over the payment limit',
}
const refunded: PaymentEventData = {
  eventType: 'PaymentRefunded',
  orderId: ORDER_ID,
  paymentId: PAYMENT_ID,
  amount: 4599,
  currency: 'USD',
  reason: 'customer cancelled',
}
const voided: PaymentEventData = {
  eventType: 'PaymentVoided',
  orderId: ORDER_ID,
  paymentId: PAYMENT_ID,
  reason: 'customer cancelled',
}

describe('payment decider', () => {
  it('captures an approved payment, with the payment id derived from the order', () => {
    spec.given().when(approved).thenEmits([processed])
  })

  it('records a declined payment with its code and reason', () => {
    spec.given().when(declined).thenEmits([failed])
  })

  it('refuses a new payment without the gateway’s outcome', () => {
    spec
      .given()
      .when(charge)
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['outcome'] })
  })

  it('captures at most once: a redelivered or re-sent ProcessPayment emits nothing, whatever the gateway says', () => {
    spec.given(processed).when(approved).thenNothingHappened()
    spec.given(processed).when(declined).thenNothingHappened()
    spec.given(failed).when(approved).thenNothingHappened()
  })

  it('rejects a second charge of another amount as a conflict', () => {
    spec
      .given(processed)
      .when({ ...approved, amount: 5000 })
      .thenRejects({ code: 'INVALID_TRANSITION', message: /already CAPTURED for 45\.99 USD; cannot charge 50\.00 USD/ })
  })

  it('refunds a captured payment once', () => {
    spec.given(processed).when(refund).thenEmits([refunded])
    spec.given(processed, refunded).when(refund).thenNothingHappened()
    spec.given(processed, refunded).when(approved).thenNothingHappened()
  })

  it('voids a payment never taken, so that a late ProcessPayment cannot capture', () => {
    spec.given().when(refund).thenEmits([voided])
    spec.given(voided).when(approved).thenNothingHappened()
    spec.given(voided).when(refund).thenNothingHappened()
  })

  it('leaves a declined payment alone when asked to refund it', () => {
    spec.given(failed).when(refund).thenNothingHappened()
  })

  it('folds the history into the payment’s state', () => {
    const state = spec.given(processed, refunded).state
    assert.equal(state?.status, 'REFUNDED')
    assert.equal(state?.authorizationId, 'auth-1')
    assert.equal(state?.closingReason, 'customer cancelled')
    assert.equal(state?.version, 2)
  })

  it('asks the gateway only for a payment not yet decided', () => {
    assert.deepEqual(authorizationRequestFor(charge, null), {
      paymentId: PAYMENT_ID,
      orderId: ORDER_ID,
      customerId: 'customer-1',
      amount: 4599,
      currency: 'USD',
    })
    assert.equal(authorizationRequestFor(charge, spec.given(processed).state), null)
    assert.equal(authorizationRequestFor(charge, spec.given(voided).state), null)
  })
})

describe('simulated payment gateway', () => {
  const request = { paymentId: PAYMENT_ID, orderId: ORDER_ID, customerId: 'customer-1', amount: 4599, currency: 'USD' }

  it('approves, and answers the same payment again without a second capture', async () => {
    const gateway = createSimulatedGateway()
    const first = await gateway.authorize(request)
    const second = await gateway.authorize(request)
    assert.deepEqual(first, { status: 'APPROVED', authorizationId: `sim-auth-${PAYMENT_ID}` })
    assert.deepEqual(second, first)
    assert.equal(gateway.captures().length, 1)
  })

  it('declines an amount over the limit and a listed customer', async () => {
    const gateway = createSimulatedGateway({ declineAbove: 4598, declinedCustomers: ['customer-2'] })
    assert.deepEqual(await gateway.authorize(request), {
      status: 'DECLINED',
      code: 'AMOUNT_OVER_LIMIT',
      reason: 'amount is over the payment limit',
    })
    const small = { ...request, amount: 100 }
    assert.equal((await gateway.authorize(small)).status, 'APPROVED')
    assert.deepEqual(await gateway.authorize({ ...small, paymentId: 'payment-2', customerId: 'customer-2' }), {
      status: 'DECLINED',
      code: 'CUSTOMER_DECLINED',
      reason: 'card declined for this customer',
    })
    assert.equal(gateway.captures().length, 1)
  })

  it('fails transiently as the injected random source says, with a retryable error', async () => {
    const rolls = [0.1, 0.9]
    const gateway = createSimulatedGateway({ transientFailureRate: 0.5, random: () => rolls.shift() ?? 1 })
    await assert.rejects(gateway.authorize(request), (error) => isAppError(error) && isRetryable(error))
    assert.equal(gateway.captures().length, 0)
    assert.equal((await gateway.authorize(request)).status, 'APPROVED')
  })

  it('waits its latency through the injected sleep', async () => {
    const slept: number[] = []
    const gateway = createSimulatedGateway({ latencyMs: 250, sleep: async (ms) => void slept.push(ms) })
    await gateway.authorize(request)
    assert.deepEqual(slept, [250])
  })

  it('refuses a failure rate outside 0–1', () => {
    assert.throws(() => createSimulatedGateway({ transientFailureRate: 1.5 }), RangeError)
  })
})

describe('payment choreography mapping', () => {
  const envelope = {
    eventId: '01890a5d-ac96-774b-bcce-b302099a8057',
    aggregateId: ORDER_ID,
    occurredOn: '2026-01-01T12:00:00.000Z',
    version: 1,
    schemaVersion: 1,
  }
  const orderCreated = {
    ...envelope,
    eventType: 'OrderCreated',
    customerId: 'customer-1',
    items: [{ productId: 'product-1', price: 4599, quantity: 1 }],
    subtotal: 4599,
    totalAmount: 4599,
    currency: 'USD',
  } as OrderEvent

  it('charges the order’s total on OrderCreated, as the saga would', () => {
    assert.deepEqual(paymentCommandFor(orderCreated), {
      commandType: 'ProcessPayment',
      orderId: ORDER_ID,
      customerId: 'customer-1',
      amount: 4599,
      currency: 'USD',
    })
  })

  it('refunds on OrderCancelled with the order’s reason, and ignores the rest', () => {
    const cancelled = {
      ...envelope,
      version: 2,
      eventType: 'OrderCancelled',
      reason: 'customer cancelled',
    } as OrderEvent
    assert.deepEqual(paymentCommandFor(cancelled), refund)
    const confirmed = { ...envelope, version: 2, eventType: 'OrderConfirmed', paymentId: PAYMENT_ID } as OrderEvent
    assert.equal(paymentCommandFor(confirmed), null)
  })
})

describe('payment choreography: late events', () => {
  const cancelledEvent = {
    eventId: '01890a5d-ac96-774b-bcce-b302099a8058',
    aggregateId: ORDER_ID,
    occurredOn: '2026-01-01T12:00:00.000Z',
    version: 2,
    schemaVersion: 1,
    eventType: 'OrderCancelled',
    reason: 'customer cancelled',
  } as OrderEvent
  const onCancelled = paymentCommandFor(cancelledEvent) as PaymentCommand

  it('refunds a capture that landed after the order was cancelled: the OrderCancelled comes after it', () => {
    // OrderCreated and OrderCancelled share the order's partition, so the payment service handles
    // the charge first, however late its capture was; the cancellation then refunds it.
    spec.given(processed).when(onCancelled).thenEmits([refunded])
  })

  it('voids a payment the cancellation reached first, so that a late charge captures nothing', () => {
    spec.given().when(onCancelled).thenEmits([voided])
    spec.given(voided).when(approved).thenNothingHappened()
  })
})

describe('payment contracts', () => {
  it('decodes seed-000 AuthorizePayment as ProcessPayment, amounts in minor units', () => {
    const raw = JSON.stringify({
      commandId: '9b2f7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e',
      commandType: 'AuthorizePayment',
      orderId: ORDER_ID,
      issuedOn: '2026-01-01T12:00:00Z',
      customerId: 'customer-1',
      amount: 45.99,
      currency: 'USD',
    })
    const decoded = decodePaymentCommand(raw)
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.equal(decoded.command.commandType, 'ProcessPayment')
    assert.equal(decoded.command.commandType === 'ProcessPayment' && decoded.command.amount, 4599)
    assert.equal(encodePaymentCommand(decoded.command).amount, 45.99)
  })

  it('names what is wrong with a command', () => {
    const raw = JSON.stringify({
      commandId: '9b2f7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e',
      commandType: 'RefundPayment',
      orderId: ORDER_ID,
      issuedOn: '2026-01-01T12:00:00Z',
    })
    const decoded = decodePaymentCommand(raw)
    assert.ok(!decoded.ok)
    assert.equal(decoded.reason, 'INVALID_COMMAND')
    assert.match(decoded.message, /reason/)
  })

  it('round-trips an event through the wire', () => {
    const event = {
      ...processed,
      eventId: '01890a5d-ac96-774b-bcce-b302099a8057',
      aggregateId: paymentStreamId(ORDER_ID),
      occurredOn: '2026-01-01T12:00:00.000Z',
      version: 1,
      schemaVersion: 1,
    } as PaymentEvent
    const wire = encodePaymentEvent(event)
    assert.equal((wire as { amount: unknown }).amount, 45.99)
    const decoded = decodePaymentEvent(JSON.stringify(wire))
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.deepEqual(decoded.event, event)
  })
})
