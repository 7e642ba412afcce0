import { DELIVERY_COMMANDS_TOPIC, type DeliveryCommandBody } from '../../contracts/delivery/commands.ts'
import type { DeliveryEvent } from '../../contracts/delivery/events.ts'
import { DISPATCH_COMMANDS_TOPIC, type DispatchCommandBody } from '../../contracts/dispatch/commands.ts'
import type { DispatchEvent } from '../../contracts/dispatch/events.ts'
import { formatAmount } from '../../contracts/money.ts'
import { ORDER_COMMANDS_TOPIC } from '../../contracts/order/commands.ts'
import type { OrderEvent } from '../../contracts/order/events.ts'
import { PAYMENT_COMMANDS_TOPIC, type PaymentCommandBody } from '../../contracts/payment/commands.ts'
import { cancellationReasonFor, type PaymentEvent } from '../../contracts/payment/events.ts'
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
 * Redelivery: an event seen before (same eventId) changes nothing, and a timeout that is not the
 * current step's current attempt is stale and changes nothing; events for a step already passed
 * are recorded and otherwise ignored.
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
}

/** Everything the saga reacts to: decoded events (amounts in minor units) and its timeouts. */
export type CreateOrderSagaInput = OrderEvent | PaymentEvent | DispatchEvent | DeliveryEvent | SagaStepTimedOut

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
  order: { customerId: string; totalAmount: number; currency: string } | null
  orderCancelled: boolean
  /** The payment the order was confirmed with, seen from its events (a service may confirm early). */
  confirmedWith?: string | null
  payment: SagaPaymentStatus
  paymentId: string | null
  shipmentId: string | null
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
    confirmedWith: null,
    payment: 'NOT_REQUESTED',
    paymentId: null,
    shipmentId: null,
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
        order: { customerId: input.customerId, totalAmount: input.totalAmount, currency: input.currency },
      }
    // The total is fixed at placement (the order service refuses to change it), and the payment was
    // requested for the placement total: a re-sent ProcessPayment must ask for that same amount.
    case 'OrderUpdated':
      return known
    case 'OrderConfirmed':
      return { ...known, confirmedWith: input.paymentId }
    case 'OrderCancelled':
      return { ...known, orderCancelled: true }
    case 'PaymentProcessed':
      return { ...known, payment: 'CAPTURED', paymentId: input.paymentId }
    case 'PaymentFailed':
      return { ...known, payment: 'FAILED', paymentId: input.paymentId }
    case 'PaymentRefunded':
      return { ...known, payment: 'REFUNDED' }
    case 'PaymentVoided':
      return { ...known, payment: 'VOIDED' }
    case 'OrderDispatched':
      return { ...known, shipmentId: input.shipmentId }
    default:
      return known
  }
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
            message: { commandType: 'ScheduleDelivery', orderId, shipmentId: state.shipmentId ?? '' },
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

  const startStep = (
    step: SagaStep,
    attempt: number,
    state: CreateOrderSagaState,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => [
    ...commandsFor(step, state).map((command) => send(command)),
    schedule(new Date(Date.parse(context.now) + steps[step].timeoutMs).toISOString(), {
      eventType: 'SagaStepTimedOut',
      orderId: state.orderId ?? '',
      step,
      attempt,
    } satisfies SagaStepTimedOut),
  ]

  /** The next compensation still to do, from what the saga knows. */
  const nextCompensation = (state: CreateOrderSagaState): SagaStep | null => {
    if (state.payment === 'REQUESTED' || state.payment === 'CAPTURED') return 'REFUND_PAYMENT'
    if (!state.orderCancelled) return 'REJECT_ORDER'
    return null
  }

  const compensate = (state: CreateOrderSagaState, context: DecideContext): CreateOrderSagaOutput[] => {
    const next = nextCompensation(state)
    if (next !== null) return startStep(next, 1, state, context)
    // Money and order agree (refunded, cancelled), but goods left: that part is for a person.
    if (state.shipmentId !== null) {
      return [park(`order cancelled after shipment ${state.shipmentId} left; payment refunded, goods to recover`)]
    }
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
    if (timeout.attempt <= policy.retries) return startStep(timeout.step, timeout.attempt + 1, state, context)
    const noAnswer = `no answer from ${policy.description} after ${timeout.attempt} attempt${timeout.attempt === 1 ? '' : 's'}`
    if (policy.kind === 'compensation') return [park(`compensation ${timeout.step} failed: ${noAnswer}`)]
    if (policy.onExhausted === 'park') return [park(`${timeout.step} stuck: ${noAnswer}`)]
    return startCompensation(state, `${timeout.step} timed out: ${noAnswer}`, context)
  }

  const decide = (
    input: CreateOrderSagaInput,
    state: CreateOrderSagaState,
    context: DecideContext,
  ): CreateOrderSagaOutput[] => {
    if (isEnded(state)) return []
    if (input.eventType === 'SagaStepTimedOut') {
      return isCurrentTimeout(state, input) ? onTimeout(state, input, context) : []
    }
    // The step guards below already ignore most repeats; this one keeps a repeat from ever
    // counting as a new answer, whatever steps are added later.
    if (state.seen.includes(input.eventId)) return []
    const known = learn(state, input)

    if (state.status === 'NOT_STARTED') {
      return input.eventType === 'OrderCreated' ? startStep('PAYMENT', 1, known, context) : []
    }
    switch (state.step) {
      case 'PAYMENT':
        if (input.eventType === 'PaymentProcessed') {
          const order = known.order
          if (order && (input.amount !== order.totalAmount || input.currency !== order.currency)) {
            // Whatever sent it, a capture that is not the order's total must not be delivered.
            const reason = `payment captured ${formatAmount(input.amount)} ${input.currency}, not the order's total ${formatAmount(order.totalAmount)} ${order.currency}`
            return startCompensation(known, reason, context)
          }
          // A service confirmed the order with this payment before it was captured: nothing to ask.
          if (known.confirmedWith === input.paymentId) return startStep('DISPATCH', 1, known, context)
          return startStep('CONFIRM_ORDER', 1, known, context)
        }
        if (input.eventType === 'PaymentFailed') return startCompensation(known, cancellationReasonFor(input), context)
        if (input.eventType === 'OrderCancelled') return startCompensation(known, input.reason, context)
        return []
      case 'CONFIRM_ORDER':
        if (input.eventType === 'OrderConfirmed') return startStep('DISPATCH', 1, known, context)
        if (input.eventType === 'OrderCancelled') return startCompensation(known, input.reason, context)
        return []
      case 'DISPATCH':
        if (input.eventType === 'OrderDispatched') return startStep('DELIVERY', 1, known, context)
        if (input.eventType === 'OrderCancelled') return startCompensation(known, input.reason, context)
        return []
      case 'DELIVERY':
        if (input.eventType === 'OrderDelivered') {
          return [
            send({
              topic: ORDER_COMMANDS_TOPIC,
              key: input.orderId,
              message: { commandType: 'ChangeOrderStatus', orderId: input.orderId, status: 'DELIVERED' },
            }),
            complete('DELIVERED'),
          ]
        }
        // The cancel reached the order before its DISPATCHED did, so the order is CANCELLED: its
        // money goes back (as in choreography), then the saga parks for the goods that left.
        if (input.eventType === 'OrderCancelled') return startCompensation(known, input.reason, context)
        return []
      case 'REFUND_PAYMENT':
      case 'REJECT_ORDER': {
        if (input.eventType === 'OrderDispatched') return [park('order dispatched while the saga was cancelling it')]
        const answered = steps[state.step].awaits.includes(input.eventType)
        return answered ? compensate(known, context) : []
      }
      case null:
        return []
      default:
        return assertNever(state.step)
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
        default:
          return assertNever(message)
      }
    }

    if (isEnded(state)) return state
    if (message.eventType === 'SagaStepTimedOut') {
      if (!isCurrentTimeout(state, message)) return state
      return touched(
        { ...state, deadlines: [] },
        { direction: 'in', type: message.eventType, step: message.step, detail: `attempt ${message.attempt}` },
      )
    }
    if (state.seen.includes(message.eventId)) return state
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
