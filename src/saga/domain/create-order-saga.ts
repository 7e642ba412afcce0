import { DELIVERY_COMMANDS_TOPIC, type DeliveryCommandBody } from '../../contracts/delivery/commands.ts'
import type { DeliveryEvent } from '../../contracts/delivery/events.ts'
import { DISPATCH_COMMANDS_TOPIC, type DispatchCommandBody } from '../../contracts/dispatch/commands.ts'
import type { DispatchEvent } from '../../contracts/dispatch/events.ts'
import { formatAmount } from '../../contracts/money.ts'
import { ORDER_COMMANDS_TOPIC } from '../../contracts/order/commands.ts'
import type { OrderEvent } from '../../contracts/order/events.ts'
import { PAYMENT_COMMANDS_TOPIC, type PaymentCommandBody } from '../../contracts/payment/commands.ts'
import { cancellationReasonFor, type PaymentEvent } from '../../contracts/payment/events.ts'
import type { Sealed } from '../../contracts/personal.ts'
import type { DecideContext } from '../../platform/es/decider.ts'
import { complete, park, schedule, send, type Workflow, type WorkflowOutput } from '../../platform/es/workflow.ts'

/**
 * The Create-Order saga (seed 000's orchestrator) as a pure workflow: it takes the events of the
 * order, payment, dispatch and delivery services and its own timeouts, and answers with the
 * commands to send, the timeouts to schedule, and when it is done (Complete) or stuck (Park).
 *
 *   OrderCreated ─▶ PAYMENT ──PaymentProcessed──▶ CONFIRM_ORDER ──OrderConfirmed──▶ DISPATCH
 *     ──OrderDispatched──▶ DELIVERY ──OrderDelivered──▶ ChangeOrderStatus(DELIVERED), Complete
 *
 * Each step sends its commands and schedules its timeout. When the timeout comes first the step's
 * commands are sent again (every receiver is idempotent), `retries` times; then the step's
 * `onExhausted` applies: compensate, or park for an operator. The steps are data
 * (`createOrderSagaSteps`), so timeouts and retries are configuration.
 *
 * Compensation moves the order to a consistent cancelled end, one step at a time, chosen from what
 * the saga knows (not from a script), so that every path reaches it the same way:
 *   1. REFUND_PAYMENT while money may have been taken (captured, or asked for and not answered):
 *      the payment service refunds a capture or voids a payment never taken (so a late re-send cannot
 *      capture);
 *   2. REJECT_ORDER while the order is not cancelled;
 *   then Complete('CANCELLED') (or Park when a shipment left). Payment failed → RejectOrder. Order
 *   cancelled after capture, even after its dispatch → RefundPayment. A capture of another amount
 *   than the order's total (fixed at placement) → RefundPayment, RejectOrder. Payment timed out → RefundPayment (void), then RejectOrder.
 * A compensation step that runs out of retries parks the saga: a compensation that cannot finish
 * is for a person, with the reason, never retried forever nor dropped.
 *
 * Late answers are never ignored (a step that timed out, a parked saga, a completed one):
 *   - a parked saga takes the answer it was waiting for as if it had never stopped: OrderDispatched
 *     for a saga parked on DISPATCH resumes it at DELIVERY; OrderDelivered follows the dispatch
 *     through (DISPATCHED, DELIVERED) and completes it; the answer a parked compensation was waiting
 *     for goes on compensating;
 *   - money taken for an order the saga is cancelling, or has cancelled, is refunded (a capture that
 *     comes while rejecting the order, or after Complete('CANCELLED'), reopens REFUND_PAYMENT);
 *   - goods that went out for a cancelled order (OrderDispatched or OrderDelivered once the order is
 *     cancelled): the cancellation and the refund stand (the order service cannot un-cancel, and
 *     the customer was told), and the saga parks with the reason instead of completing, for an
 *     operator to recall the shipment or charge again, then close it with `compensate`.
 *
 * Operators act through inputs too (OperatorResumed, OperatorCompensated), recorded in the history
 * with who asked: resume goes on in the saga's direction (forward: the step whose answer is
 * missing, sent again with a fresh retry budget; cancelling: the next compensation), compensate
 * cancels (refund, reject) or, with nothing left to undo, closes the saga as CANCELLED.
 * `operatorRefusal` says why an operator input does not apply (the saga is not parked, the goods
 * left so the order cannot be cancelled, another step than the one waiting was named).
 *
 * Redelivery: an event seen before (same eventId) changes nothing, and a timeout that is not the
 * current step's current attempt is stale and changes nothing. Attempts of a step are numbered on
 * across resumes and re-openings, so no (step, attempt) pair, and no command id, is used twice.
 *
 * The state is what `GET /api/orders/:id/saga` shows: status, current step and attempt, the
 * pending deadlines, and the history of what came in and went out, and when.
 */

export const CREATE_ORDER_SAGA = 'create-order-saga'

/** The saga instance of an order: one per order. */
export const createOrderSagaId = (orderId: string): string => `${CREATE_ORDER_SAGA}-${orderId}`

// ---------------------------------------------------------------------------------------------
// Steps, as data
// ---------------------------------------------------------------------------------------------

export const SagaSteps = {
  PAYMENT: 'PAYMENT',
  CONFIRM_ORDER: 'CONFIRM_ORDER',
  DISPATCH: 'DISPATCH',
  DELIVERY: 'DELIVERY',
  REFUND_PAYMENT: 'REFUND_PAYMENT',
  REJECT_ORDER: 'REJECT_ORDER',
} as const

export type SagaStep = (typeof SagaSteps)[keyof typeof SagaSteps]

export interface StepPolicy {
  kind: 'forward' | 'compensation'
  /** What the step is waiting for, in words (history, park reasons). */
  description: string
  /** The commands the step sends (documentation; `commandsFor` builds them). */
  sends: readonly string[]
  /** The events that end the step. */
  awaits: readonly string[]
  /** How long to wait for an answer before sending again. */
  timeoutMs: number
  /** How many times the step's commands are sent again before `onExhausted`. */
  retries: number
  /** Forward steps compensate or park; a compensation step can only park. */
  onExhausted: 'compensate' | 'park'
}

export type SagaStepPolicies = Readonly<Record<SagaStep, StepPolicy>>

export const createOrderSagaSteps: SagaStepPolicies = {
  PAYMENT: {
    kind: 'forward',
    description: 'the payment service',
    sends: ['ProcessPayment'],
    awaits: ['PaymentProcessed', 'PaymentFailed'],
    timeoutMs: 30_000,
    retries: 2,
    // The payment may still capture late: compensation refunds or voids it before rejecting.
    onExhausted: 'compensate',
  },
  CONFIRM_ORDER: {
    kind: 'forward',
    description: 'the order service (confirmation)',
    sends: ['ApproveOrder'],
    awaits: ['OrderConfirmed', 'OrderCancelled'],
    timeoutMs: 15_000,
    retries: 2,
    onExhausted: 'compensate',
  },
  DISPATCH: {
    kind: 'forward',
    description: 'the dispatch service',
    sends: ['DispatchOrder'],
    awaits: ['OrderDispatched'],
    timeoutMs: 30_000,
    retries: 2,
    // A shipment may have left without telling us: cancelling and refunding could give away goods.
    onExhausted: 'park',
  },
  DELIVERY: {
    kind: 'forward',
    description: 'the delivery service',
    sends: ['ChangeOrderStatus(DISPATCHED)', 'ScheduleDelivery'],
    awaits: ['OrderDelivered'],
    // Longer than the delivery service's simulated delay, or every delivery would be re-sent.
    timeoutMs: 5 * 60_000,
    retries: 1,
    onExhausted: 'park',
  },
  REFUND_PAYMENT: {
    kind: 'compensation',
    description: 'the payment service (refund)',
    sends: ['RefundPayment'],
    // PaymentFailed answers too: a payment still running when compensation began may end declined,
    // and the payment service emits nothing for a refund of a declined payment (nothing was taken).
    awaits: ['PaymentRefunded', 'PaymentVoided', 'PaymentFailed'],
    timeoutMs: 30_000,
    retries: 3,
    onExhausted: 'park',
  },
  REJECT_ORDER: {
    kind: 'compensation',
    description: 'the order service (rejection)',
    sends: ['RejectOrder'],
    awaits: ['OrderCancelled'],
    timeoutMs: 15_000,
    retries: 3,
    onExhausted: 'park',
  },
}

// ---------------------------------------------------------------------------------------------
// Inputs and outputs
// ---------------------------------------------------------------------------------------------

/** The saga's own timeout: the step's `attempt`-th send got no answer in time. */
export interface SagaStepTimedOut {
  eventType: 'SagaStepTimedOut'
  orderId: string
  step: SagaStep
  attempt: number
  /** The attempt this run of the step began with (after an operator's resume); 1 when absent. */
  firstAttempt?: number
}

/** An operator resumed a parked saga (`POST /api/orders/:id/saga/resume`). */
export interface OperatorResumed {
  eventType: 'OperatorResumed'
  /** The request's id: the inbox entry and the history's id. */
  eventId: string
  orderId: string
  /** The operator's subject (the token's `sub`, or `anonymous` with authentication off). */
  operator: string
  /** The step the operator expects to retry; default: the one the saga waits at. */
  step?: SagaStep | undefined
}

/** An operator had a parked saga compensate (`POST /api/orders/:id/saga/compensate`). */
export interface OperatorCompensated {
  eventType: 'OperatorCompensated'
  eventId: string
  orderId: string
  operator: string
  reason?: string | undefined
}

export type SagaOperatorInput = OperatorResumed | OperatorCompensated

/** The other services' events the saga follows, decoded (amounts in minor units). */
export type SagaEventInput = OrderEvent | PaymentEvent | DispatchEvent | DeliveryEvent

/** Everything the saga reacts to: the journey's events, its own timeouts, operators. */
export type CreateOrderSagaInput = SagaEventInput | SagaStepTimedOut | SagaOperatorInput

/** Order commands in the saga's words (seed 000): the order service resolves the aliases. */
export type SagaOrderCommandBody =
  | { commandType: 'ApproveOrder'; orderId: string; paymentId: string }
  | { commandType: 'RejectOrder'; orderId: string; reason: string }
  | { commandType: 'ChangeOrderStatus'; orderId: string; status: 'DISPATCHED' | 'DELIVERED' }

/**
 * A command to send: the topic, the key (the order id) and the command without its envelope. The
 * processor adds commandId, issuedOn, correlationId and causationId, and encodes amounts.
 */
export type CreateOrderSagaCommand =
  | { topic: typeof PAYMENT_COMMANDS_TOPIC; key: string; message: PaymentCommandBody }
  | { topic: typeof ORDER_COMMANDS_TOPIC; key: string; message: SagaOrderCommandBody }
  | { topic: typeof DISPATCH_COMMANDS_TOPIC; key: string; message: DispatchCommandBody }
  | { topic: typeof DELIVERY_COMMANDS_TOPIC; key: string; message: DeliveryCommandBody }

export type CreateOrderSagaOutput = WorkflowOutput<CreateOrderSagaCommand, SagaStepTimedOut>

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

export type SagaStatus = 'NOT_STARTED' | 'RUNNING' | 'COMPENSATING' | 'COMPLETED' | 'PARKED'

/** What the saga knows of the payment. REQUESTED: asked for, no answer yet. */
export type SagaPaymentStatus = 'NOT_REQUESTED' | 'REQUESTED' | 'CAPTURED' | 'FAILED' | 'REFUNDED' | 'VOIDED'

export interface SagaHistoryEntry {
  /** When the saga handled it (the decision's time). */
  at: string
  direction: 'in' | 'out'
  /** The event type, command type, or Schedule / Complete / Park. */
  type: string
  /** The event's id, for inputs. */
  id?: string
  /** The topic, for commands sent. */
  topic?: string
  step?: SagaStep
  detail?: string
  /** Who asked, for an operator's input. */
  by?: string
}

export interface SagaDeadline {
  step: SagaStep
  attempt: number
  at: string
}

export interface CreateOrderSagaState {
  orderId: string | null
  status: SagaStatus
  /** The current (or, once ended, the last) step, and how many times it has been sent. */
  step: SagaStep | null
  attempt: number
  /**
   * What the saga needs of the order; `deliveryAddress` sealed as the order service sealed it
   * (the saga never opens it: it carries it to dispatch and delivery).
   */
  order: { customerId: string; totalAmount: number; currency: string; deliveryAddress?: Sealed } | null
  orderCancelled: boolean
  orderConfirmed: boolean
  payment: SagaPaymentStatus
  paymentId: string | null
  shipmentId: string | null
  /** OrderDelivered seen. */
  delivered: boolean
  /** The highest attempt sent per step, so that a step started again never reuses one. */
  attempts: Partial<Record<SagaStep, number>>
  /** An operator compensated: goods that went out for the cancelled order are theirs to settle. */
  settledByOperator: boolean
  /** Why the saga compensates; the same reason goes with every compensation command. */
  compensationReason: string | null
  outcome: string | null
  parkedReason: string | null
  /** Timeouts still to come (at most one: the current step's). */
  deadlines: SagaDeadline[]
  history: SagaHistoryEntry[]
  /** Ids of the events handled, so a redelivered event changes nothing. */
  seen: string[]
  startedAt: string | null
  updatedAt: string | null
}

export function initialState(): CreateOrderSagaState {
  return {
    orderId: null,
    status: 'NOT_STARTED',
    step: null,
    attempt: 0,
    order: null,
    orderCancelled: false,
    orderConfirmed: false,
    payment: 'NOT_REQUESTED',
    paymentId: null,
    shipmentId: null,
    delivered: false,
    attempts: {},
    settledByOperator: false,
    compensationReason: null,
    outcome: null,
    parkedReason: null,
    deadlines: [],
    history: [],
    seen: [],
    startedAt: null,
    updatedAt: null,
  }
}

const isEnded = (state: CreateOrderSagaState) => state.status === 'COMPLETED' || state.status === 'PARKED'

const isCurrentTimeout = (state: CreateOrderSagaState, timeout: SagaStepTimedOut) =>
  !isEnded(state) && state.step === timeout.step && state.attempt === timeout.attempt

const orderIdOf = (input: CreateOrderSagaInput): string =>
  'aggregateId' in input && isOrderEvent(input) ? input.aggregateId : (input as { orderId: string }).orderId

const ORDER_EVENT_TYPES: ReadonlySet<string> = new Set([
  'OrderCreated',
  'OrderUpdated',
  'OrderConfirmed',
  'OrderCancelled',
  'OrderStatusChanged',
])
/** Outputs carry `kind`; inputs carry `eventType` (envelopes are loose, so `in` alone cannot tell). */
const isOutput = (message: CreateOrderSagaInput | CreateOrderSagaOutput): message is CreateOrderSagaOutput =>
  !('eventType' in message)

const isOrderEvent = (input: CreateOrderSagaInput): input is OrderEvent => ORDER_EVENT_TYPES.has(input.eventType)

/** The facts an input teaches the saga, without the bookkeeping (history, seen ids). */
function learn(state: CreateOrderSagaState, input: CreateOrderSagaInput): CreateOrderSagaState {
  const known = { ...state, orderId: state.orderId ?? orderIdOf(input) }
  switch (input.eventType) {
    case 'OrderCreated':
      return {
        ...known,
        order: {
          customerId: input.customerId,
          totalAmount: input.totalAmount,
          currency: input.currency,
          ...(input.deliveryAddress ? { deliveryAddress: input.deliveryAddress as Sealed } : {}),
        },
      }
    // The total is fixed at placement (the order service refuses to change it), and the payment was
    // requested for the placement total: a re-sent ProcessPayment must ask for that same amount.
    case 'OrderUpdated':
      return known
    case 'OrderCancelled':
      return { ...known, orderCancelled: true }
    case 'OrderConfirmed':
      return { ...known, orderConfirmed: true }
    case 'PaymentProcessed':
      // A payment's events come in order on one partition: a capture after its refund or void is an
      // old one delivered again, not money taken anew.
      if (known.payment === 'REFUNDED' || known.payment === 'VOIDED') return known
      return { ...known, payment: 'CAPTURED', paymentId: input.paymentId }
    case 'PaymentFailed':
      return { ...known, payment: 'FAILED', paymentId: input.paymentId }
    case 'PaymentRefunded':
      return { ...known, payment: 'REFUNDED' }
    case 'PaymentVoided':
      return { ...known, payment: 'VOIDED' }
    case 'OrderDispatched':
      return { ...known, shipmentId: input.shipmentId }
    case 'OrderDelivered':
      return { ...known, shipmentId: known.shipmentId ?? input.shipmentId, delivered: true }
    default:
      return known
  }
}

const COMPENSATION_STEPS: ReadonlySet<SagaStep> = new Set(['REFUND_PAYMENT', 'REJECT_ORDER'])

/** The saga undoes the order rather than move it forward: it compensates, or the order is cancelled. */
const isCancelling = (state: CreateOrderSagaState) =>
  state.compensationReason !== null ||
  state.orderCancelled ||
  (state.step !== null && COMPENSATION_STEPS.has(state.step))

/** Goods left the warehouse (a saga stored before `delivered` existed has it undefined: falsy). */
const goodsOut = (state: CreateOrderSagaState) => state.shipmentId !== null || state.delivered === true

/** The next compensation still to do, from what the saga knows. */
function nextCompensation(state: CreateOrderSagaState): SagaStep | null {
  if (state.payment === 'REQUESTED' || state.payment === 'CAPTURED') return 'REFUND_PAYMENT'
  if (!state.orderCancelled) return 'REJECT_ORDER'
  return null
}

/** The forward step whose answer is missing, from what the saga knows; null when none is. */
function waitingStep(state: CreateOrderSagaState): SagaStep | null {
  if (state.payment === 'NOT_REQUESTED' || state.payment === 'REQUESTED') return 'PAYMENT'
  if (state.payment !== 'CAPTURED') return null
  // Sagas stored before `orderConfirmed` existed: only OrderConfirmed took them past CONFIRM_ORDER.
  const confirmed = state.orderConfirmed === true || state.step === 'DISPATCH' || state.step === 'DELIVERY'
  if (!confirmed) return 'CONFIRM_ORDER'
  if (state.shipmentId === null) return 'DISPATCH'
  if (state.delivered !== true) return 'DELIVERY'
  return null
}

/** The next attempt of `step`: one above every attempt of it sent so far. */
const nextAttempt = (state: CreateOrderSagaState, step: SagaStep): number =>
  Math.max(state.attempts?.[step] ?? 0, state.step === step ? state.attempt : 0) + 1

/**
 * Why an operator's input does not apply to the saga as it is (the HTTP route answers 409 with it),
 * or null when it does. Pure, so that the route and the workflow agree.
 */
export function operatorRefusal(input: SagaOperatorInput, state: CreateOrderSagaState): string | null {
  const verb = input.eventType === 'OperatorResumed' ? 'resumed' : 'compensated'
  if (state.status !== 'PARKED') {
    const status = state.status === 'COMPLETED' ? `COMPLETED (${state.outcome})` : state.status
    return `the saga is ${status}: only a parked saga can be ${verb}`
  }
  if (input.eventType === 'OperatorCompensated') {
    if (goodsOut(state) && !state.orderCancelled) {
      return `shipment ${state.shipmentId} left for this order, which cannot be cancelled any more: resume the saga to deliver it`
    }
    return null
  }
  if (isCancelling(state)) {
    const next = nextCompensation(state)
    if (input.step !== undefined && input.step !== next) {
      return `the saga is cancelling the order (${state.compensationReason ?? 'order cancelled'}): ${next === null ? 'nothing is left to undo, compensate to close it' : `it can only go on with ${next}`}, not ${input.step}`
    }
    if (next === null) return 'nothing is left to undo for this cancelled order: compensate to close the saga'
    return null
  }
  const waiting = waitingStep(state)
  if (waiting === null) return 'no step of the saga is waiting for an answer'
  if (input.step !== undefined && input.step !== waiting) {
    return `the saga waits at ${waiting}: ${input.step} ${COMPENSATION_STEPS.has(input.step) ? 'is a compensation (use compensate)' : 'has its answer already or is not reached yet'}`
  }
  return null
}

// ---------------------------------------------------------------------------------------------
// The workflow
// ---------------------------------------------------------------------------------------------

/** The saga with its step policies; `createOrderSaga` is the one with the defaults. */
export function defineCreateOrderSaga(
  steps: SagaStepPolicies = createOrderSagaSteps,
): Workflow<CreateOrderSagaInput, CreateOrderSagaState, CreateOrderSagaCommand, SagaStepTimedOut> {
  for (const [name, policy] of Object.entries(steps)) {
    if (policy.kind === 'compensation' && policy.onExhausted !== 'park') {
      throw new Error(`saga step ${name}: a compensation that fails can only park`)
    }
    if (!Number.isSafeInteger(policy.retries) || policy.retries < 0 || !(policy.timeoutMs > 0)) {
      throw new Error(`saga step ${name}: retries must be a whole number ≥ 0 and timeoutMs > 0`)
    }
  }

  const commandsFor = (step: SagaStep, state: CreateOrderSagaState): CreateOrderSagaCommand[] => {
    const orderId = state.orderId ?? ''
    const order = state.order ?? { customerId: '', totalAmount: 0, currency: '' }
    const reason = state.compensationReason ?? 'cancelled by the Create-Order saga'
    const key = orderId
    switch (step) {
      case 'PAYMENT':
        return [
          {
            topic: PAYMENT_COMMANDS_TOPIC,
            key,
            message: {
              commandType: 'ProcessPayment',
              orderId,
              customerId: order.customerId,
              amount: order.totalAmount,
              currency: order.currency,
            },
          },
        ]
      case 'CONFIRM_ORDER':
        return [
          {
            topic: ORDER_COMMANDS_TOPIC,
            key,
            message: { commandType: 'ApproveOrder', orderId, paymentId: state.paymentId ?? '' },
          },
        ]
      case 'DISPATCH':
        return [
          {
            topic: DISPATCH_COMMANDS_TOPIC,
            key,
            message: {
              commandType: 'DispatchOrder',
              orderId,
              orderAmount: order.totalAmount,
              currency: order.currency,
              ...(order.deliveryAddress ? { deliveryAddress: order.deliveryAddress } : {}),
            },
          },
        ]
      case 'DELIVERY':
        // One topic, one key: the order service applies DISPATCHED before the DELIVERED sent later.
        return [
          {
            topic: ORDER_COMMANDS_TOPIC,
            key,
            message: { commandType: 'ChangeOrderStatus', orderId, status: 'DISPATCHED' },
          },
          {
            topic: DELIVERY_COMMANDS_TOPIC,
            key,
            message: {
              commandType: 'ScheduleDelivery',
              orderId,
              shipmentId: state.shipmentId ?? '',
              ...(state.order?.deliveryAddress ? { deliveryAddress: state.order.deliveryAddress } : {}),
            },
          },
        ]
      case 'REFUND_PAYMENT':
        return [{ topic: PAYMENT_COMMANDS_TOPIC, key, message: { commandType: 'RefundPayment', orderId, reason } }]
      case 'REJECT_ORDER':
        return [{ topic: ORDER_COMMANDS_TOPIC, key, message: { commandType: 'RejectOrder', orderId, reason } }]
      default:
        return assertNever(step)
    }
  }

  /** Sends the step's commands and schedules its timeout; `firstAttempt` starts this run's budget. */
  const startStep = (
    step: SagaStep,
    attempt: number,
    firstAttempt: number,
    state: CreateOrderSagaState,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => [
    ...commandsFor(step, state).map((command) => send(command)),
    schedule(new Date(Date.parse(context.now) + steps[step].timeoutMs).toISOString(), {
      eventType: 'SagaStepTimedOut',
      orderId: state.orderId ?? '',
      step,
      attempt,
      ...(firstAttempt === 1 ? {} : { firstAttempt }),
    } satisfies SagaStepTimedOut),
  ]

  /** Starts `step` afresh: a new attempt number, and the step's whole retry budget. */
  const begin = (step: SagaStep, state: CreateOrderSagaState, context: DecideContext) => {
    const attempt = nextAttempt(state, step)
    return startStep(step, attempt, attempt, state, context)
  }

  const goodsOutReason = (state: CreateOrderSagaState) =>
    `goods went out for a cancelled order: shipment ${state.shipmentId} was ${state.delivered ? 'delivered' : 'dispatched'} although the order was cancelled (${state.compensationReason ?? 'order cancelled'}); the cancellation and any refund stand: recall the shipment or charge the customer again, then compensate to close the saga`

  /** The next compensation, or the cancelled end (parked instead when goods left and no one settled them). */
  const compensate = (state: CreateOrderSagaState, context: DecideContext): CreateOrderSagaOutput[] => {
    const next = nextCompensation(state)
    if (next !== null) return begin(next, state, context)
    if (goodsOut(state) && !state.settledByOperator) return [park(goodsOutReason(state))]
    return [complete('CANCELLED')]
  }

  /** Starts compensating: the reason is kept for every compensation command that follows. */
  const startCompensation = (state: CreateOrderSagaState, reason: string, context: DecideContext) =>
    compensate({ ...state, compensationReason: state.compensationReason ?? reason }, context)

  const onTimeout = (
    state: CreateOrderSagaState,
    timeout: SagaStepTimedOut,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => {
    const policy = steps[timeout.step]
    const firstAttempt = timeout.firstAttempt ?? 1
    const sent = timeout.attempt - firstAttempt + 1
    if (sent <= policy.retries) return startStep(timeout.step, timeout.attempt + 1, firstAttempt, state, context)
    const noAnswer = `no answer from ${policy.description} after ${sent} attempt${sent === 1 ? '' : 's'}`
    if (policy.kind === 'compensation') return [park(`compensation ${timeout.step} failed: ${noAnswer}`)]
    if (policy.onExhausted === 'park') return [park(`${timeout.step} stuck: ${noAnswer}`)]
    return startCompensation(state, `${timeout.step} timed out: ${noAnswer}`, context)
  }

  /** The order was delivered: it is marked DISPATCHED (when the saga has not yet) and DELIVERED. */
  const followThroughDelivery = (state: CreateOrderSagaState): CreateOrderSagaOutput[] => {
    const orderId = state.orderId ?? ''
    const mark = (status: 'DISPATCHED' | 'DELIVERED') =>
      send<CreateOrderSagaCommand>({
        topic: ORDER_COMMANDS_TOPIC,
        key: orderId,
        message: { commandType: 'ChangeOrderStatus', orderId, status },
      })
    return [...(state.step === 'DELIVERY' ? [] : [mark('DISPATCHED')]), mark('DELIVERED'), complete('DELIVERED')]
  }

  /**
   * An answer to a running, compensating or parked saga: a parked one takes the answer it was
   * waiting for exactly as a running one would.
   */
  const onAnswer = (
    state: CreateOrderSagaState,
    known: CreateOrderSagaState,
    input: SagaEventInput,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => {
    const step = state.step
    if (step === null) return []
    if (steps[step].kind === 'forward') {
      // The order was cancelled (now, or before a saga stored by an older version noticed): undo
      // what was done; goods that already left make it park at the end (see `compensate`).
      if (known.orderCancelled) {
        return startCompensation(
          known,
          input.eventType === 'OrderCancelled' ? input.reason : 'order cancelled',
          context,
        )
      }
      // Whatever sent it, a capture that is not the order's total (fixed at placement) must not be
      // delivered: refund it and cancel the order.
      if (input.eventType === 'PaymentProcessed' && known.order && known.payment === 'CAPTURED') {
        const order = known.order
        if (input.amount !== order.totalAmount || input.currency !== order.currency) {
          const reason = `payment captured ${formatAmount(input.amount)} ${input.currency}, not the order's total ${formatAmount(order.totalAmount)} ${order.currency}`
          return startCompensation(known, reason, context)
        }
      }
      if (input.eventType === 'PaymentFailed' && step === 'PAYMENT') {
        return startCompensation(known, cancellationReasonFor(input), context)
      }
      if (input.eventType === 'OrderDelivered' && (step === 'DISPATCH' || step === 'DELIVERY')) {
        return followThroughDelivery(state)
      }
      const next = waitingStep(known)
      // The answer the step waited for moved the saga on (a late one included): start the next step.
      if (next !== null && next !== waitingStep(state)) return begin(next, known, context)
      return []
    }
    // Compensating. Money taken while the order is being undone is refunded before anything else.
    if (input.eventType === 'PaymentProcessed' && step !== 'REFUND_PAYMENT' && known.payment === 'CAPTURED') {
      return compensate(known, context)
    }
    return steps[step].awaits.includes(input.eventType) ? compensate(known, context) : []
  }

  /**
   * A late answer to a completed saga. A delivered one has something to put right only when the
   * order was cancelled after all: the order service accepts a cancel until it has applied
   * DISPATCHED, which the saga sends on OrderDispatched, so a cancel can land between the shipment
   * and that status change, and even after the delivery when the order's commands are slow. The
   * cancellation stands (the customer was told): the money is refunded and the saga parks, goods
   * out, as it does for a cancel on DELIVERY.
   */
  const afterCompletion = (
    state: CreateOrderSagaState,
    known: CreateOrderSagaState,
    input: SagaEventInput,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => {
    if (state.outcome === 'DELIVERED') {
      if (input.eventType !== 'OrderCancelled' || known.settledByOperator) return []
      return startCompensation(known, input.reason, context)
    }
    if (state.outcome !== 'CANCELLED') return []
    if (input.eventType === 'PaymentProcessed' && nextCompensation(known) === 'REFUND_PAYMENT') {
      return compensate(known, context)
    }
    if ((input.eventType === 'OrderDispatched' || input.eventType === 'OrderDelivered') && !known.settledByOperator) {
      return [park(goodsOutReason(known))]
    }
    return []
  }

  const onOperator = (
    state: CreateOrderSagaState,
    input: SagaOperatorInput,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => {
    if (operatorRefusal(input, state) !== null) return []
    if (input.eventType === 'OperatorCompensated') {
      const reason = input.reason ?? `compensated by operator ${input.operator}`
      return startCompensation({ ...state, settledByOperator: true }, reason, context)
    }
    if (isCancelling(state)) return compensate(state, context)
    const waiting = waitingStep(state)
    return waiting === null ? [] : begin(waiting, state, context)
  }

  const decide = (
    input: CreateOrderSagaInput,
    state: CreateOrderSagaState,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => {
    if (input.eventType === 'SagaStepTimedOut') {
      return isCurrentTimeout(state, input) ? onTimeout(state, input, context) : []
    }
    // A repeat never counts as a new answer, whatever state the saga is in.
    if (state.seen.includes(input.eventId)) return []
    if (input.eventType === 'OperatorResumed' || input.eventType === 'OperatorCompensated') {
      return onOperator(state, input, context)
    }
    const known = learn(state, input)
    switch (state.status) {
      case 'NOT_STARTED':
        return input.eventType === 'OrderCreated' ? begin('PAYMENT', known, context) : []
      case 'COMPLETED':
        return afterCompletion(state, known, input, context)
      case 'RUNNING':
      case 'COMPENSATING':
      case 'PARKED':
        return onAnswer(state, known, input, context)
      default:
        return assertNever(state.status)
    }
  }

  const evolve = (
    state: CreateOrderSagaState,
    message: CreateOrderSagaInput | CreateOrderSagaOutput,
    context: DecideContext,
  ): CreateOrderSagaState => {
    const at = context.now
    const touched = (next: CreateOrderSagaState, entry: Omit<SagaHistoryEntry, 'at'>): CreateOrderSagaState => ({
      ...next,
      startedAt: next.startedAt ?? at,
      updatedAt: at,
      history: [...next.history, { at, ...entry }],
    })

    if (isOutput(message)) {
      switch (message.kind) {
        case 'Send': {
          const { topic, message: command } = message.command
          let next = state
          if (command.commandType === 'ProcessPayment' && state.payment === 'NOT_REQUESTED') {
            next = { ...next, payment: 'REQUESTED' }
          }
          if (command.commandType === 'RefundPayment' || command.commandType === 'RejectOrder') {
            next = { ...next, compensationReason: next.compensationReason ?? command.reason }
          }
          const detail = command.commandType === 'ChangeOrderStatus' ? command.status : undefined
          return touched(next, {
            direction: 'out',
            type: command.commandType,
            topic,
            ...(detail ? { detail } : {}),
          })
        }
        case 'Schedule': {
          const { step, attempt } = message.timeout
          return touched(
            {
              ...state,
              status: steps[step].kind === 'compensation' ? 'COMPENSATING' : 'RUNNING',
              step,
              attempt,
              attempts: { ...state.attempts, [step]: Math.max(state.attempts?.[step] ?? 0, attempt) },
              // Running again (resumed, or reopened by a late answer): the old end no longer holds.
              outcome: null,
              parkedReason: null,
              deadlines: [{ step, attempt, at: message.at }],
            },
            { direction: 'out', type: 'Schedule', step, detail: `attempt ${attempt}, times out at ${message.at}` },
          )
        }
        case 'Complete':
          return touched(
            { ...state, status: 'COMPLETED', outcome: message.outcome, deadlines: [] },
            { direction: 'out', type: 'Complete', detail: message.outcome },
          )
        case 'Park':
          return touched(
            { ...state, status: 'PARKED', parkedReason: message.reason, deadlines: [] },
            { direction: 'out', type: 'Park', detail: message.reason },
          )
        // The saga publishes nothing of its own, and says nothing to do with an empty answer.
        case 'Publish':
        case 'Ignore':
          return state
        default:
          return assertNever(message)
      }
    }

    if (message.eventType === 'SagaStepTimedOut') {
      if (!isCurrentTimeout(state, message)) return state
      return touched(
        { ...state, deadlines: [] },
        { direction: 'in', type: message.eventType, step: message.step, detail: `attempt ${message.attempt}` },
      )
    }
    // Inputs are recorded whatever the status: a late answer to a parked or completed saga is part
    // of its history, and what it teaches (a capture, a shipment) decides what the saga does next.
    if (state.seen.includes(message.eventId)) return state
    if (message.eventType === 'OperatorResumed' || message.eventType === 'OperatorCompensated') {
      const resumed = message.eventType === 'OperatorResumed'
      const detail = resumed
        ? `resume${message.step ? ` ${message.step}` : ''}`
        : `compensate${message.reason ? `: ${message.reason}` : ''}`
      return touched(
        {
          ...state,
          settledByOperator: state.settledByOperator || !resumed,
          seen: [...state.seen, message.eventId],
        },
        { direction: 'in', type: message.eventType, id: message.eventId, by: message.operator, detail },
      )
    }
    return touched(
      { ...learn(state, message), seen: [...state.seen, message.eventId] },
      { direction: 'in', type: message.eventType, id: message.eventId },
    )
  }

  return { initialState, decide, evolve }
}

/** The Create-Order saga with the default step policies. */
export const createOrderSaga = defineCreateOrderSaga()

function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`)
}
