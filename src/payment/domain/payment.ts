import { formatAmount } from '../../contracts/money.ts'
import type { OrderEvent } from '../../contracts/order/events.ts'
import type { PaymentCommandBody } from '../../contracts/payment/commands.ts'
import {
  type PaymentEventData,
  type PaymentFailureCode,
  paymentIdFor,
  paymentStreamId,
} from '../../contracts/payment/events.ts'
import { ErrorCodes } from '../../platform/errors.ts'
import { accept, assertNever, type Decider, type Decision, type Recorded, reject } from '../../platform/es/decider.ts'
import type { AuthorizationRequest, GatewayOutcome } from './gateway.ts'

/**
 * An order's payment as a pure decider, in the stream `payment-<orderId>` (one payment per order,
 * whose id is the same string).
 *
 * How a payment is taken (the application's part, so that the decider stays pure):
 *   1. load the payment's state;
 *   2. `authorizationRequestFor(command, state)`: null when the payment was already decided (a
 *      redelivery, a saga re-send), so the gateway is not asked again; otherwise ask the gateway;
 *   3. decide `{ ...command, outcome }` and append: PaymentProcessed or PaymentFailed.
 * A transient gateway fault is a retryable error (the consumer retries with backoff); the decider
 * never sees it. Should the application give up on an unavailable gateway, it decides a DECLINED
 * outcome with code GATEWAY_UNAVAILABLE, so that the order is cancelled rather than left pending.
 *
 * At most one capture per order: the stream is keyed by the order, so two instances that race
 * append at the same version and one of them loses (the command handler decides again on the new
 * state: nothing to do); the gateway also sees the payment id as its idempotency key.
 *
 * Rules:
 * - ProcessPayment on a new payment records the gateway's outcome. On a payment already decided it
 *   emits nothing (redelivery), unless it asks for another amount or currency: that is a real
 *   conflict, rejected with INVALID_TRANSITION.
 * - RefundPayment of a captured payment: PaymentRefunded, once (full refunds only).
 * - RefundPayment of a payment never attempted: PaymentVoided. Choice: a no-op would leave the
 *   door open for a ProcessPayment still on its way (the saga's re-send after a payment timeout,
 *   which it compensates by refunding) to capture for an order already cancelled; voiding closes it,
 *   and a later ProcessPayment emits nothing. It also answers the sender, so the saga's
 *   compensation step finishes either way.
 * - RefundPayment of a declined, refunded or voided payment emits nothing: nothing was taken, or it
 *   was given back already. In choreography every OrderCancelled becomes a RefundPayment, including
 *   the cancellations that a failed payment caused, so a rejection would dead-letter normal traffic.
 */

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

export interface ProcessPayment {
  commandType: 'ProcessPayment'
  orderId: string
  customerId: string
  /** Minor units: the order's total. */
  amount: number
  currency: string
  /** What the gateway answered; needed for a payment not yet decided. */
  outcome?: GatewayOutcome | undefined
}

export interface RefundPayment {
  commandType: 'RefundPayment'
  orderId: string
  reason: string
}

export type PaymentCommand = ProcessPayment | RefundPayment

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

export const PaymentStatuses = {
  CAPTURED: 'CAPTURED',
  FAILED: 'FAILED',
  REFUNDED: 'REFUNDED',
  VOIDED: 'VOIDED',
} as const

export type PaymentStatus = (typeof PaymentStatuses)[keyof typeof PaymentStatuses]

export interface Payment {
  paymentId: string
  orderId: string
  status: PaymentStatus
  /** Null for a payment voided before any attempt. */
  customerId: string | null
  amount: number | null
  currency: string | null
  authorizationId: string | null
  failure: { code: PaymentFailureCode; reason: string } | null
  /** Why it was refunded or voided. */
  closingReason: string | null
  updatedAt: string
  version: number
}

/** `null` until the payment is decided. */
export type PaymentState = Payment | null

export function initialState(): PaymentState {
  return null
}

export function evolve(state: PaymentState, event: Recorded<PaymentEventData>): PaymentState {
  const base = {
    paymentId: event.paymentId,
    orderId: event.orderId,
    updatedAt: event.occurredOn,
    version: event.version,
  }
  switch (event.eventType) {
    case 'PaymentProcessed':
      return {
        ...base,
        status: PaymentStatuses.CAPTURED,
        customerId: event.customerId,
        amount: event.amount,
        currency: event.currency,
        authorizationId: event.authorizationId,
        failure: null,
        closingReason: null,
      }
    case 'PaymentFailed':
      return {
        ...base,
        status: PaymentStatuses.FAILED,
        customerId: event.customerId,
        amount: event.amount,
        currency: event.currency,
        authorizationId: null,
        failure: { code: event.code, reason: event.reason },
        closingReason: null,
      }
    case 'PaymentRefunded':
      return {
        ...base,
        customerId: state?.customerId ?? null,
        authorizationId: state?.authorizationId ?? null,
        failure: null,
        status: PaymentStatuses.REFUNDED,
        amount: event.amount,
        currency: event.currency,
        closingReason: event.reason,
      }
    case 'PaymentVoided':
      return {
        ...base,
        status: PaymentStatuses.VOIDED,
        customerId: null,
        amount: null,
        currency: null,
        authorizationId: null,
        failure: null,
        closingReason: event.reason,
      }
    default:
      return assertNever(event)
  }
}

// ---------------------------------------------------------------------------------------------
// Decide
// ---------------------------------------------------------------------------------------------

/**
 * What to ask the gateway for, or null when the payment is already decided and the gateway must
 * not be asked again.
 */
export function authorizationRequestFor(
  command: Omit<ProcessPayment, 'outcome'>,
  state: PaymentState,
): AuthorizationRequest | null {
  if (state !== null) return null
  return {
    paymentId: paymentIdFor(command.orderId),
    orderId: command.orderId,
    customerId: command.customerId,
    amount: command.amount,
    currency: command.currency,
  }
}

export function decide(command: PaymentCommand, state: PaymentState): Decision<PaymentEventData> {
  switch (command.commandType) {
    case 'ProcessPayment':
      return processPayment(command, state)
    case 'RefundPayment':
      return refundPayment(command, state)
    default:
      return assertNever(command)
  }
}

function processPayment(command: ProcessPayment, state: PaymentState): Decision<PaymentEventData> {
  if (state !== null) {
    const sameCharge = state.amount === null || (state.amount === command.amount && state.currency === command.currency)
    if (sameCharge) return accept()
    return reject(
      ErrorCodes.INVALID_TRANSITION,
      `payment ${state.paymentId} was already ${state.status} for ${formatAmount(state.amount ?? 0)} ${state.currency}; cannot charge ${formatAmount(command.amount)} ${command.currency}`,
    )
  }
  const { outcome } = command
  if (outcome === undefined) {
    return reject(ErrorCodes.VALIDATION_FAILED, 'a new payment needs the gateway’s outcome', [
      { field: 'outcome', message: 'ask the gateway first (authorizationRequestFor) and pass its outcome' },
    ])
  }
  const payment = {
    orderId: command.orderId,
    paymentId: paymentIdFor(command.orderId),
    amount: command.amount,
    currency: command.currency,
  }
  switch (outcome.status) {
    case 'APPROVED':
      return accept({
        eventType: 'PaymentProcessed',
        ...payment,
        customerId: command.customerId,
        authorizationId: outcome.authorizationId,
      })
    case 'DECLINED':
      return accept({
        eventType: 'PaymentFailed',
        ...payment,
        customerId: command.customerId,
        code: outcome.code,
        reason: outcome.reason,
      })
    default:
      return assertNever(outcome)
  }
}

function refundPayment(command: RefundPayment, state: PaymentState): Decision<PaymentEventData> {
  if (state === null) {
    return accept({
      eventType: 'PaymentVoided',
      orderId: command.orderId,
      paymentId: paymentIdFor(command.orderId),
      reason: command.reason,
    })
  }
  switch (state.status) {
    case PaymentStatuses.CAPTURED:
      return accept({
        eventType: 'PaymentRefunded',
        orderId: state.orderId,
        paymentId: state.paymentId,
        amount: state.amount ?? 0,
        currency: state.currency ?? '',
        reason: command.reason,
      })
    case PaymentStatuses.FAILED:
    case PaymentStatuses.REFUNDED:
    case PaymentStatuses.VOIDED:
      return accept()
    default:
      return assertNever(state.status)
  }
}

/** The payment decider, for the platform's command handler (stream type `payment`). */
export const paymentDecider: Decider<PaymentCommand, PaymentEventData, PaymentState> = {
  initialState,
  decide: (command, state) => decide(command, state),
  evolve,
}

export const PAYMENT_STREAM_TYPE = 'payment'

export { paymentStreamId }

// ---------------------------------------------------------------------------------------------
// Choreography (seed 004): the payment service consumes `order-events` directly.
// ---------------------------------------------------------------------------------------------

/**
 * The payment command an order event calls for, or null: OrderCreated → ProcessPayment of the
 * order's total; OrderCancelled → RefundPayment with the order's reason (refunds a capture, voids a
 * payment never taken, leaves a declined one alone). The application then goes through the same
 * steps as for a command from the saga, with the event's id as the inbox message id.
 */
export function paymentCommandFor(event: OrderEvent): PaymentCommandBody | null {
  switch (event.eventType) {
    case 'OrderCreated':
      return {
        commandType: 'ProcessPayment',
        orderId: event.aggregateId,
        customerId: event.customerId,
        amount: event.totalAmount,
        currency: event.currency,
      }
    case 'OrderCancelled':
      return { commandType: 'RefundPayment', orderId: event.aggregateId, reason: event.reason }
    case 'OrderUpdated':
    case 'OrderConfirmed':
    case 'OrderStatusChanged':
      return null
    default:
      return assertNever(event)
  }
}
