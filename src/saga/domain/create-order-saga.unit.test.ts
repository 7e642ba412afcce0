import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { DeliveryEvent } from '../../contracts/delivery/events.ts'
import type { DispatchEvent } from '../../contracts/dispatch/events.ts'
import type { OrderEvent } from '../../contracts/order/events.ts'
import type { PaymentEvent } from '../../contracts/payment/events.ts'
import { complete, park, schedule, send } from '../../platform/es/workflow.ts'
import { workflowSpec } from '../../platform/testing/decider-spec.ts'
import {
  type CreateOrderSagaCommand,
  type CreateOrderSagaInput,
  type CreateOrderSagaState,
  createOrderSaga,
  createOrderSagaSteps,
  defineCreateOrderSaga,
  type OperatorCompensated,
  type OperatorResumed,
  operatorRefusal,
  type SagaStep,
  type SagaStepTimedOut,
} from './create-order-saga.ts'

const ORDER_ID = 'order-1'
const PAYMENT_ID = 'payment-order-1'
const SHIPMENT_ID = 'shipment-order-1'
const NOW = '2026-01-01T12:00:00.000Z'
const later = (ms: number) => new Date(Date.parse(NOW) + ms).toISOString()
const spec = workflowSpec(createOrderSaga, { now: NOW })

// ---------------------------------------------------------------------------------------------
// Inputs, as the processor hands them over: decoded events with their envelopes
// ---------------------------------------------------------------------------------------------

let sequence = 0
const envelope = (aggregateId: string) => ({
  eventId: `event-${++sequence}`,
  aggregateId,
  occurredOn: NOW,
  version: 1,
  schemaVersion: 1,
})
const orderEvent = (data: Record<string, unknown>) => ({ ...envelope(ORDER_ID), ...data }) as OrderEvent
const paymentEvent = (data: Record<string, unknown>) =>
  ({ ...envelope(PAYMENT_ID), orderId: ORDER_ID, paymentId: PAYMENT_ID, ...data }) as PaymentEvent

const created = orderEvent({
  eventType: 'OrderCreated',
  customerId: 'customer-1',
  items: [{ productId: 'product-1', price: 15_000, quantity: 1 }],
  subtotal: 15_000,
  totalAmount: 15_000,
  currency: 'USD',
})
const processed = paymentEvent({
  eventType: 'PaymentProcessed',
  amount: 15_000,
  currency: 'USD',
  customerId: 'customer-1',
  authorizationId: 'auth-1',
})
const failed = paymentEvent({
  eventType: 'PaymentFailed',
  amount: 15_000,
  currency: 'USD',
  customerId: 'customer-1',
  code: 'CUSTOMER_DECLINED',
  reason: 'card declined for this customer',
})
const refunded = (reason: string) =>
  paymentEvent({ eventType: 'PaymentRefunded', amount: 15_000, currency: 'USD', reason })
const voided = (reason: string) => paymentEvent({ eventType: 'PaymentVoided', reason })
const confirmed = orderEvent({ eventType: 'OrderConfirmed', paymentId: PAYMENT_ID })
const cancelled = (reason: string) => orderEvent({ eventType: 'OrderCancelled', reason })
const dispatched = {
  ...envelope(`dispatch-${ORDER_ID}`),
  eventType: 'OrderDispatched',
  orderId: ORDER_ID,
  shipmentId: SHIPMENT_ID,
  shippingCost: 300,
  currency: 'USD',
} as DispatchEvent
const delivered = {
  ...envelope(`delivery-${ORDER_ID}`),
  eventType: 'OrderDelivered',
  orderId: ORDER_ID,
  shipmentId: SHIPMENT_ID,
} as DeliveryEvent
const timedOut = (step: SagaStep, attempt: number): SagaStepTimedOut => ({
  eventType: 'SagaStepTimedOut',
  orderId: ORDER_ID,
  step,
  attempt,
})

// ---------------------------------------------------------------------------------------------
// Expected outputs
// ---------------------------------------------------------------------------------------------

const toPayment = (message: Extract<CreateOrderSagaCommand, { topic: 'payment_commands' }>['message']) =>
  send<CreateOrderSagaCommand>({ topic: 'payment_commands', key: ORDER_ID, message })
const toOrder = (message: Extract<CreateOrderSagaCommand, { topic: 'order_commands' }>['message']) =>
  send<CreateOrderSagaCommand>({ topic: 'order_commands', key: ORDER_ID, message })

const processPayment = toPayment({
  commandType: 'ProcessPayment',
  orderId: ORDER_ID,
  customerId: 'customer-1',
  amount: 15_000,
  currency: 'USD',
})
const approveOrder = toOrder({ commandType: 'ApproveOrder', orderId: ORDER_ID, paymentId: PAYMENT_ID })
const dispatchOrder = send<CreateOrderSagaCommand>({
  topic: 'dispatch_commands',
  key: ORDER_ID,
  message: { commandType: 'DispatchOrder', orderId: ORDER_ID, orderAmount: 15_000, currency: 'USD' },
})
const markDispatched = toOrder({ commandType: 'ChangeOrderStatus', orderId: ORDER_ID, status: 'DISPATCHED' })
const scheduleDelivery = send<CreateOrderSagaCommand>({
  topic: 'delivery_commands',
  key: ORDER_ID,
  message: { commandType: 'ScheduleDelivery', orderId: ORDER_ID, shipmentId: SHIPMENT_ID },
})
const markDelivered = toOrder({ commandType: 'ChangeOrderStatus', orderId: ORDER_ID, status: 'DELIVERED' })
const refundPayment = (reason: string) => toPayment({ commandType: 'RefundPayment', orderId: ORDER_ID, reason })
const rejectOrder = (reason: string) => toOrder({ commandType: 'RejectOrder', orderId: ORDER_ID, reason })
/** The step's timeout, scheduled at `now` for its attempt. */
const deadline = (step: SagaStep, attempt: number, now = NOW) =>
  schedule(new Date(Date.parse(now) + createOrderSagaSteps[step].timeoutMs).toISOString(), timedOut(step, attempt))

const goodsOut = (how: 'dispatched' | 'delivered', reason: string) =>
  `goods went out for a cancelled order: shipment ${SHIPMENT_ID} was ${how} although the order was cancelled (${reason}); the cancellation and any refund stand: recall the shipment or charge the customer again, then compensate to close the saga`
let requests = 0
const resumed = (step?: SagaStep): OperatorResumed => ({
  eventType: 'OperatorResumed',
  eventId: `request-${++requests}`,
  orderId: ORDER_ID,
  operator: 'alice',
  ...(step ? { step } : {}),
})
const compensated = (reason?: string): OperatorCompensated => ({
  eventType: 'OperatorCompensated',
  eventId: `request-${++requests}`,
  orderId: ORDER_ID,
  operator: 'alice',
  ...(reason ? { reason } : {}),
})
/** A timeout of a run of the step that began at `firstAttempt` (after a resume). */
const timedOutFrom = (step: SagaStep, attempt: number, firstAttempt: number): SagaStepTimedOut => ({
  ...timedOut(step, attempt),
  firstAttempt,
})

/** Folds inputs as the processor does, returning each input's outputs and the final state. */
function run(inputs: CreateOrderSagaInput[], saga = createOrderSaga) {
  const context = { now: NOW }
  let state = saga.initialState()
  const outputs = inputs.map((input) => {
    const out = saga.decide(input, state, context)
    state = out.reduce((s, o) => saga.evolve(s, o, context), saga.evolve(state, input, context))
    return out
  })
  return { outputs, state }
}

const happyPath: CreateOrderSagaInput[] = [created, processed, confirmed, dispatched, delivered]

// ---------------------------------------------------------------------------------------------

describe('Create-Order saga: the order journey', () => {
  it('charges the order when it is created', () => {
    spec
      .given()
      .when(created)
      .thenOutputs([processPayment, deadline('PAYMENT', 1)])
  })

  it('approves the order once paid, then dispatches, then delivers', () => {
    spec
      .given(created)
      .when(processed)
      .thenOutputs([approveOrder, deadline('CONFIRM_ORDER', 1)])
    spec
      .given(created, processed)
      .when(confirmed)
      .thenOutputs([dispatchOrder, deadline('DISPATCH', 1)])
    spec
      .given(created, processed, confirmed)
      .when(dispatched)
      .thenOutputs([markDispatched, scheduleDelivery, deadline('DELIVERY', 1)])
    spec
      .given(created, processed, confirmed, dispatched)
      .when(delivered)
      .thenOutputs([markDelivered, complete('DELIVERED')])
  })

  it('ends completed, with nothing pending and the whole history visible', () => {
    const { state } = run(happyPath)
    assert.equal(state.status, 'COMPLETED')
    assert.equal(state.outcome, 'DELIVERED')
    assert.equal(state.step, 'DELIVERY')
    assert.deepEqual(state.deadlines, [])
    assert.deepEqual(
      state.history.map((h) => `${h.direction} ${h.type}${h.step ? ` ${h.step}` : ''}`),
      [
        'in OrderCreated',
        'out ProcessPayment',
        'out Schedule PAYMENT',
        'in PaymentProcessed',
        'out ApproveOrder',
        'out Schedule CONFIRM_ORDER',
        'in OrderConfirmed',
        'out DispatchOrder',
        'out Schedule DISPATCH',
        'in OrderDispatched',
        'out ChangeOrderStatus',
        'out ScheduleDelivery',
        'out Schedule DELIVERY',
        'in OrderDelivered',
        'out ChangeOrderStatus',
        'out Complete',
      ],
    )
    assert.ok(state.history.every((h) => h.at === NOW))
    assert.equal(state.history[0]?.id, created.eventId)
    assert.equal(state.history[1]?.topic, 'payment_commands')
  })

  it('shows the current step and its pending deadline while it waits', () => {
    const state: CreateOrderSagaState = spec.given(created, processed).state
    assert.equal(state.status, 'RUNNING')
    assert.equal(state.step, 'CONFIRM_ORDER')
    assert.equal(state.attempt, 1)
    assert.deepEqual(state.deadlines, [{ step: 'CONFIRM_ORDER', attempt: 1, at: later(15_000) }])
    assert.equal(state.paymentId, PAYMENT_ID)
  })

  it('ignores events that start nothing, and everything after it ended', () => {
    spec.given().when(processed).thenNothingHappened()
    spec
      .given(...happyPath)
      .when({ ...confirmed, eventId: 'event-confirmed-again' })
      .thenNothingHappened()
    spec
      .given(...happyPath)
      .when(timedOut('DELIVERY', 1))
      .thenNothingHappened()
  })
})

describe('Create-Order saga: payment declined', () => {
  const reason = 'payment failed: card declined for this customer'

  it('rejects the order, and ends cancelled once the order is', () => {
    spec
      .given(created)
      .when(failed)
      .thenOutputs([rejectOrder(reason), deadline('REJECT_ORDER', 1)])
    spec
      .given(created, failed)
      .when(cancelled(reason))
      .thenOutputs([complete('CANCELLED')])
    const state = spec.given(created, failed).state
    assert.equal(state.status, 'COMPENSATING')
    assert.equal(state.compensationReason, reason)
  })
})

describe('Create-Order saga: timeouts, retries, compensation', () => {
  it('sends a step again when its timeout comes first, and goes on when the answer arrives', () => {
    const at = later(30_000)
    spec
      .given(created)
      .when(timedOut('PAYMENT', 1), { now: at })
      .thenOutputs([processPayment, deadline('PAYMENT', 2, at)])
    spec
      .given(created, timedOut('PAYMENT', 1))
      .when(processed)
      .thenOutputs([approveOrder, deadline('CONFIRM_ORDER', 1)])
  })

  it('a payment that never answers: retries, then voids the payment and rejects the order', () => {
    const reason = 'PAYMENT timed out: no answer from the payment service after 3 attempts'
    const retried = [created, timedOut('PAYMENT', 1), timedOut('PAYMENT', 2)]
    assert.equal(spec.given(...retried).state.attempt, 3)
    spec
      .given(...retried)
      .when(timedOut('PAYMENT', 3))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    const compensating = [...retried, timedOut('PAYMENT', 3)]
    spec
      .given(...compensating)
      .when(voided(reason))
      .thenOutputs([rejectOrder(reason), deadline('REJECT_ORDER', 1)])
    spec
      .given(...compensating, voided(reason))
      .when(cancelled(reason))
      .thenOutputs([complete('CANCELLED')])
  })

  it('a payment captured late, while compensating, is refunded before the order is rejected', () => {
    const reason = 'PAYMENT timed out: no answer from the payment service after 3 attempts'
    const compensating = [created, timedOut('PAYMENT', 1), timedOut('PAYMENT', 2), timedOut('PAYMENT', 3)]
    spec
      .given(...compensating)
      .when(processed)
      .thenNothingHappened()
    spec
      .given(...compensating, processed)
      .when(refunded(reason))
      .thenOutputs([rejectOrder(reason), deadline('REJECT_ORDER', 1)])
  })

  it('an order that cannot be confirmed: refunds the payment, then rejects the order', () => {
    const reason = 'CONFIRM_ORDER timed out: no answer from the order service (confirmation) after 3 attempts'
    spec
      .given(created, processed, timedOut('CONFIRM_ORDER', 1), timedOut('CONFIRM_ORDER', 2))
      .when(timedOut('CONFIRM_ORDER', 3))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
  })

  it('a dispatch that never answers parks the saga rather than cancel what may have shipped', () => {
    const waiting = [created, processed, confirmed, timedOut('DISPATCH', 1), timedOut('DISPATCH', 2)]
    spec
      .given(...waiting)
      .when(timedOut('DISPATCH', 3))
      .thenOutputs([park('DISPATCH stuck: no answer from the dispatch service after 3 attempts')])
  })

  it('ignores a stale timeout: an earlier attempt, or a step already passed', () => {
    spec.given(created, timedOut('PAYMENT', 1)).when(timedOut('PAYMENT', 1)).thenNothingHappened()
    spec.given(created, processed).when(timedOut('PAYMENT', 1)).thenNothingHappened()
  })

  it('reads its timeouts and retries from the step table', () => {
    const impatient = defineCreateOrderSaga({
      ...createOrderSagaSteps,
      PAYMENT: { ...createOrderSagaSteps.PAYMENT, retries: 0, timeoutMs: 1_000 },
    })
    const { outputs } = run([created, timedOut('PAYMENT', 1)], impatient)
    assert.deepEqual(outputs[0]?.at(-1), schedule(later(1_000), timedOut('PAYMENT', 1)))
    assert.deepEqual(
      outputs[1]?.[0],
      refundPayment('PAYMENT timed out: no answer from the payment service after 1 attempt'),
    )
    assert.throws(
      () =>
        defineCreateOrderSaga({
          ...createOrderSagaSteps,
          REJECT_ORDER: { ...createOrderSagaSteps.REJECT_ORDER, onExhausted: 'compensate' },
        }),
      /a compensation that fails can only park/,
    )
  })
})

describe('Create-Order saga: cancelled after capture', () => {
  const reason = 'customer changed their mind'

  it('refunds the payment when the order is cancelled before dispatch, and ends cancelled', () => {
    spec
      .given(created, processed)
      .when(cancelled(reason))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    spec
      .given(created, processed, confirmed)
      .when(cancelled(reason))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    spec
      .given(created, processed, cancelled(reason))
      .when(refunded(reason))
      .thenOutputs([complete('CANCELLED')])
  })

  it('voids a payment still running when the order is cancelled before it was paid', () => {
    spec
      .given(created)
      .when(cancelled(reason))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    spec
      .given(created, cancelled(reason))
      .when(voided(reason))
      .thenOutputs([complete('CANCELLED')])
  })

  it('goes on to reject the order when the payment it was refunding ends declined', () => {
    const reason = 'PAYMENT timed out: no answer from the payment service after 3 attempts'
    spec
      .given(created, timedOut('PAYMENT', 1), timedOut('PAYMENT', 2), timedOut('PAYMENT', 3))
      .when(failed)
      .thenOutputs([rejectOrder(reason), deadline('REJECT_ORDER', 1)])
  })

  it('refunds an order cancelled after it was dispatched, then parks: goods went out', () => {
    spec
      .given(created, processed, confirmed, dispatched)
      .when(cancelled(reason))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    spec
      .given(created, processed, confirmed, dispatched, cancelled(reason))
      .when(refunded(reason))
      .thenOutputs([park(goodsOut('dispatched', reason))])
  })

  it('goes on refunding an order dispatched while it was being cancelled, then parks instead of completing', () => {
    spec.given(created, processed, confirmed, cancelled(reason)).when(dispatched).thenNothingHappened()
    spec
      .given(created, processed, confirmed, cancelled(reason), dispatched)
      .when(refunded(reason))
      .thenOutputs([park(goodsOut('dispatched', reason))])
  })
})

describe('Create-Order saga: the money is the total at placement', () => {
  const updated = (totalAmount: number) =>
    orderEvent({ eventType: 'OrderUpdated', subtotal: totalAmount, totalAmount }) as CreateOrderSagaInput

  it('charges the placement total when it sends the payment again, whatever an update said', () => {
    spec
      .given(created, updated(45_000))
      .when(timedOut('PAYMENT', 1))
      .thenOutputs([processPayment, deadline('PAYMENT', 2)])
  })

  it('refunds and rejects a capture that is not the order total', () => {
    const reason = "payment captured 100.00 USD, not the order's total 150.00 USD"
    spec
      .given(created)
      .when(paymentEvent({ ...processed, eventId: 'event-short', amount: 10_000 }))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
  })

  it('goes straight to dispatch when a service confirmed the order with this payment before it was captured', () => {
    spec
      .given(created, confirmed)
      .when(processed)
      .thenOutputs([dispatchOrder, deadline('DISPATCH', 1)])
    const early = run([created, confirmed, processed, dispatched, delivered])
    assert.equal(early.state.status, 'COMPLETED')
    assert.equal(early.state.outcome, 'DELIVERED')
  })
})

describe('Create-Order saga: a compensation that fails', () => {
  it('parks with the reason when the rejection gets no answer after its retries', () => {
    const compensating = [created, failed, timedOut('REJECT_ORDER', 1), timedOut('REJECT_ORDER', 2)]
    const { outputs } = run([...compensating, timedOut('REJECT_ORDER', 3)])
    assert.deepEqual(outputs.at(-1), [
      rejectOrder('payment failed: card declined for this customer'),
      deadline('REJECT_ORDER', 4),
    ])
    const all = [...compensating, timedOut('REJECT_ORDER', 3)]
    spec
      .given(...all)
      .when(timedOut('REJECT_ORDER', 4))
      .thenOutputs([
        park('compensation REJECT_ORDER failed: no answer from the order service (rejection) after 4 attempts'),
      ])
    const { state } = run([...all, timedOut('REJECT_ORDER', 4)])
    assert.equal(state.status, 'PARKED')
    assert.match(state.parkedReason ?? '', /compensation REJECT_ORDER failed/)
    assert.deepEqual(state.deadlines, [])
  })

  it('parks when a refund gets no answer', () => {
    const reason = 'customer changed their mind'
    const refunding = [created, processed, cancelled(reason)]
    const retries = createOrderSagaSteps.REFUND_PAYMENT.retries
    const timeouts = Array.from({ length: retries }, (_, i) => timedOut('REFUND_PAYMENT', i + 1))
    spec
      .given(...refunding, ...timeouts)
      .when(timedOut('REFUND_PAYMENT', retries + 1))
      .thenOutputs([
        park(
          `compensation REFUND_PAYMENT failed: no answer from the payment service (refund) after ${retries + 1} attempts`,
        ),
      ])
  })
})

describe('Create-Order saga: redelivery', () => {
  const paths: Record<string, CreateOrderSagaInput[]> = {
    delivered: happyPath,
    declined: [created, failed, cancelled('payment failed: card declined for this customer')],
    'cancelled after capture': [created, processed, cancelled('changed my mind'), refunded('changed my mind')],
    'timed out': [created, timedOut('PAYMENT', 1), processed, confirmed, dispatched, delivered],
  }

  for (const [name, inputs] of Object.entries(paths)) {
    it(`changes nothing when each input of the ${name} path arrives twice`, () => {
      const once = run(inputs)
      const twice = run(inputs.flatMap((input) => [input, input]))
      twice.outputs.forEach((outputs, i) => {
        if (i % 2 === 1) assert.deepEqual(outputs, [], `the second delivery of input ${(i - 1) / 2} sent something`)
      })
      assert.deepEqual(twice.state, once.state)
    })
  }

  it('does not refund twice when an old PaymentProcessed comes again while rejecting the order', () => {
    const reason = 'CONFIRM_ORDER timed out: no answer from the order service (confirmation) after 3 attempts'
    const rejecting = [
      created,
      processed,
      timedOut('CONFIRM_ORDER', 1),
      timedOut('CONFIRM_ORDER', 2),
      timedOut('CONFIRM_ORDER', 3),
      refunded(reason),
    ]
    assert.equal(spec.given(...rejecting).state.step, 'REJECT_ORDER')
    spec
      .given(...rejecting, processed)
      .when(cancelled(reason))
      .thenOutputs([complete('CANCELLED')])
  })

  it('changes nothing when an input arrives again later, after other inputs', () => {
    spec.given(created, processed, confirmed).when(processed).thenNothingHappened()
    spec.given(created, processed, confirmed).when(created).thenNothingHappened()
    const state = spec.given(created, processed, confirmed).state
    assert.deepEqual(createOrderSaga.evolve(state, processed, { now: later(1) }), state)
  })
})

describe('Create-Order saga: late answers', () => {
  const parkedOnDispatch = [
    created,
    processed,
    confirmed,
    timedOut('DISPATCH', 1),
    timedOut('DISPATCH', 2),
    timedOut('DISPATCH', 3),
  ]
  const parkedOnDelivery = [created, processed, confirmed, dispatched, timedOut('DELIVERY', 1), timedOut('DELIVERY', 2)]

  it('follows a dispatch that happened after the saga parked on DISPATCH through to the delivery', () => {
    assert.equal(spec.given(...parkedOnDispatch).state.status, 'PARKED')
    spec
      .given(...parkedOnDispatch)
      .when(dispatched)
      .thenOutputs([markDispatched, scheduleDelivery, deadline('DELIVERY', 1)])
    spec
      .given(...parkedOnDispatch, dispatched)
      .when(delivered)
      .thenOutputs([markDelivered, complete('DELIVERED')])
    const { state } = run([...parkedOnDispatch, dispatched, delivered])
    assert.equal(state.status, 'COMPLETED')
    assert.equal(state.outcome, 'DELIVERED')
    assert.equal(state.parkedReason, null)
  })

  it('marks an order delivered whose delivery is the first answer after a park on DISPATCH', () => {
    spec
      .given(...parkedOnDispatch)
      .when(delivered)
      .thenOutputs([markDispatched, markDelivered, complete('DELIVERED')])
  })

  it('completes a saga parked on DELIVERY when the delivery is reported late', () => {
    assert.equal(spec.given(...parkedOnDelivery).state.status, 'PARKED')
    spec
      .given(...parkedOnDelivery)
      .when(delivered)
      .thenOutputs([markDelivered, complete('DELIVERED')])
  })

  it('goes on compensating when the refund a parked compensation waited for comes late', () => {
    const reason = 'customer changed their mind'
    const retries = createOrderSagaSteps.REFUND_PAYMENT.retries
    const parked = [
      created,
      processed,
      cancelled(reason),
      ...Array.from({ length: retries + 1 }, (_, i) => timedOut('REFUND_PAYMENT', i + 1)),
    ]
    assert.equal(spec.given(...parked).state.status, 'PARKED')
    spec
      .given(...parked)
      .when(refunded(reason))
      .thenOutputs([complete('CANCELLED')])
  })

  it('refunds money captured while the order is being rejected, before rejecting it', () => {
    const reason = 'payment failed: card declined for this customer'
    assert.equal(spec.given(created, failed).state.step, 'REJECT_ORDER')
    spec
      .given(created, failed)
      .when(processed)
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    spec
      .given(created, failed, processed)
      .when(refunded(reason))
      .thenOutputs([
        rejectOrder(reason),
        schedule(later(createOrderSagaSteps.REJECT_ORDER.timeoutMs), timedOutFrom('REJECT_ORDER', 2, 2)),
      ])
  })

  it('reopens a cancelled saga to refund a payment captured after it completed', () => {
    const reason = 'payment failed: card declined for this customer'
    const done = [created, failed, cancelled(reason)]
    assert.equal(spec.given(...done).state.outcome, 'CANCELLED')
    spec
      .given(...done)
      .when(processed)
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    assert.equal(spec.given(...done, processed).state.status, 'COMPENSATING')
    spec
      .given(...done, processed)
      .when(refunded(reason))
      .thenOutputs([complete('CANCELLED')])
  })

  it('parks a cancelled saga whose order was dispatched or delivered afterwards: goods went out', () => {
    const reason = 'customer changed their mind'
    const done = [created, processed, confirmed, cancelled(reason), refunded(reason)]
    assert.equal(spec.given(...done).state.outcome, 'CANCELLED')
    spec
      .given(...done)
      .when(dispatched)
      .thenOutputs([park(goodsOut('dispatched', reason))])
    spec
      .given(...done, dispatched)
      .when(delivered)
      .thenOutputs([])
    spec
      .given(...done)
      .when(delivered)
      .thenOutputs([park(goodsOut('delivered', reason))])
  })

  it('refunds a delivered order whose cancel the order service took before it applied DISPATCHED, then parks', () => {
    const reason = 'customer changed their mind'
    assert.equal(spec.given(...happyPath).state.outcome, 'DELIVERED')
    spec
      .given(...happyPath)
      .when(cancelled(reason))
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    assert.equal(spec.given(...happyPath, cancelled(reason)).state.status, 'COMPENSATING')
    spec
      .given(...happyPath, cancelled(reason))
      .when(refunded(reason))
      .thenOutputs([park(goodsOut('delivered', reason))])
  })

  it('records a late answer to a completed saga, and does nothing for a delivered one', () => {
    const late = { ...dispatched, eventId: 'event-late-dispatch' }
    spec
      .given(...happyPath)
      .when(late)
      .thenNothingHappened()
    const { state } = run([...happyPath, late])
    assert.equal(state.history.at(-1)?.id, 'event-late-dispatch')
    assert.equal(state.status, 'COMPLETED')
  })
})

describe('Create-Order saga: operators', () => {
  const parkedOnDispatch = [
    created,
    processed,
    confirmed,
    timedOut('DISPATCH', 1),
    timedOut('DISPATCH', 2),
    timedOut('DISPATCH', 3),
  ]

  it('resumes a saga parked on DISPATCH with a fresh attempt and a whole retry budget', () => {
    const resume = resumed()
    spec
      .given(...parkedOnDispatch)
      .when(resume)
      .thenOutputs([dispatchOrder, schedule(later(30_000), timedOutFrom('DISPATCH', 4, 4))])
    const running = [...parkedOnDispatch, resume]
    spec
      .given(...running)
      .when(timedOutFrom('DISPATCH', 4, 4))
      .thenOutputs([dispatchOrder, schedule(later(30_000), timedOutFrom('DISPATCH', 5, 4))])
    spec
      .given(...running, timedOutFrom('DISPATCH', 4, 4), timedOutFrom('DISPATCH', 5, 4))
      .when(timedOutFrom('DISPATCH', 6, 4))
      .thenOutputs([park('DISPATCH stuck: no answer from the dispatch service after 3 attempts')])
    spec
      .given(...running)
      .when(dispatched)
      .thenOutputs([markDispatched, scheduleDelivery, deadline('DELIVERY', 1)])
  })

  it('records who resumed the saga and when', () => {
    const resume = resumed('DISPATCH')
    const { state } = run([...parkedOnDispatch, resume])
    const entry = state.history.find((h) => h.type === 'OperatorResumed')
    assert.deepEqual(entry, {
      at: NOW,
      direction: 'in',
      type: 'OperatorResumed',
      id: resume.eventId,
      by: 'alice',
      detail: 'resume DISPATCH',
    })
    assert.equal(state.status, 'RUNNING')
    assert.equal(state.parkedReason, null)
  })

  it('refuses to resume a saga that is not parked, or at a step other than the one waiting', () => {
    const parked = spec.given(...parkedOnDispatch).state
    assert.equal(operatorRefusal(resumed(), parked), null)
    assert.equal(operatorRefusal(resumed('DISPATCH'), parked), null)
    assert.match(operatorRefusal(resumed('DELIVERY'), parked) ?? '', /waits at DISPATCH/)
    assert.match(operatorRefusal(resumed('PAYMENT'), parked) ?? '', /waits at DISPATCH/)
    assert.match(operatorRefusal(resumed('REFUND_PAYMENT'), parked) ?? '', /use compensate/)
    const delivered = spec.given(...happyPath).state
    assert.match(operatorRefusal(resumed(), delivered) ?? '', /COMPLETED \(DELIVERED\): only a parked saga/)
    assert.match(operatorRefusal(compensated(), delivered) ?? '', /only a parked saga can be compensated/)
    const running = spec.given(created, processed).state
    assert.match(operatorRefusal(resumed(), running) ?? '', /the saga is RUNNING/)
    spec
      .given(...happyPath)
      .when(resumed())
      .thenNothingHappened()
  })

  it('compensates a parked saga: refunds, rejects the order, ends cancelled, with the operator in the history', () => {
    const reason = 'compensated by operator alice'
    const compensate = compensated()
    spec
      .given(...parkedOnDispatch)
      .when(compensate)
      .thenOutputs([refundPayment(reason), deadline('REFUND_PAYMENT', 1)])
    spec
      .given(...parkedOnDispatch, compensate, refunded(reason))
      .when(cancelled(reason))
      .thenOutputs([complete('CANCELLED')])
    const { state } = run([...parkedOnDispatch, compensate])
    assert.equal(state.history.find((h) => h.type === 'OperatorCompensated')?.by, 'alice')
    spec
      .given(...parkedOnDispatch)
      .when(compensated('goods lost in the warehouse'))
      .thenOutputs([refundPayment('goods lost in the warehouse'), deadline('REFUND_PAYMENT', 1)])
  })

  it('refuses to compensate an order whose goods left, and closes a cancelled one whose goods left', () => {
    const parkedOnDelivery = [
      created,
      processed,
      confirmed,
      dispatched,
      timedOut('DELIVERY', 1),
      timedOut('DELIVERY', 2),
    ]
    assert.match(
      operatorRefusal(compensated(), spec.given(...parkedOnDelivery).state) ?? '',
      /cannot be cancelled any more: resume/,
    )
    const reason = 'customer changed their mind'
    const goodsLeft = [created, processed, confirmed, cancelled(reason), refunded(reason), dispatched]
    const parked = spec.given(...goodsLeft).state
    assert.equal(parked.status, 'PARKED')
    assert.match(operatorRefusal(resumed(), parked) ?? '', /compensate to close/)
    spec
      .given(...goodsLeft)
      .when(compensated())
      .thenOutputs([complete('CANCELLED')])
  })

  it('resumes a parked compensation with its next step, at a new attempt', () => {
    const reason = 'payment failed: card declined for this customer'
    const retries = createOrderSagaSteps.REJECT_ORDER.retries
    const parked = [created, failed, ...Array.from({ length: retries + 1 }, (_, i) => timedOut('REJECT_ORDER', i + 1))]
    assert.equal(spec.given(...parked).state.status, 'PARKED')
    assert.match(
      operatorRefusal(resumed('DISPATCH'), spec.given(...parked).state) ?? '',
      /only go on with REJECT_ORDER/,
    )
    const attempt = retries + 2
    spec
      .given(...parked)
      .when(resumed())
      .thenOutputs([
        rejectOrder(reason),
        schedule(later(createOrderSagaSteps.REJECT_ORDER.timeoutMs), timedOutFrom('REJECT_ORDER', attempt, attempt)),
      ])
  })

  it('changes nothing when the same operator request comes twice', () => {
    const resume = resumed()
    spec
      .given(...parkedOnDispatch, resume)
      .when(resume)
      .thenNothingHappened()
  })
})
