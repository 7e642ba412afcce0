import type { Order, OrderState, OrderStatus } from './order.ts'

/**
 * Choreography's step timeouts, as pure rules: the same steps, timeouts and retries as the
 * Create-Order saga's in orchestration, so that in either mode nothing waits forever.
 *
 * In choreography no one sends the services their commands: each reacts to the events before it.
 * What an order waits for follows from its status alone, and one deadline per order says how long
 * it may wait:
 *
 *   PENDING    → PAYMENT   (PaymentProcessed or PaymentFailed, from the payment service)
 *   CONFIRMED  → DISPATCH  (OrderDispatched, from the dispatch service)
 *   DISPATCHED → DELIVERY  (OrderDelivered, from the delivery service)
 *   DELIVERED, CANCELLED → nothing
 *
 * The deadline is set in the transaction that moved the order (its clock starts when that event
 * is published, as a saga step's starts when its command is) and replaced by the next one. When it
 * passes with the order still where it was, the step's command is sent to its service's command
 * topic, as the saga would re-send it (every service takes its commands in both modes, and takes a
 * repeat as the redelivery it is), with `retries` tries before it gives up. Then, as in
 * orchestration: no payment outcome cancels the order (the payment service voids or refunds it from
 * OrderCancelled); a dispatch or delivery that never answers parks the order's journey for an
 * operator, with the reason, since cancelling could give away goods that left without a word. A
 * late answer still moves the order on, and unparks it.
 */

export type JourneyStep = 'PAYMENT' | 'DISPATCH' | 'DELIVERY'

export interface JourneyDeadline {
  orderId: string
  step: JourneyStep
  /** 1 for the wait on the service's own reaction; each re-send is the next attempt. */
  attempt: number
}

/** Re-sends of a step before it gives up (the saga's default for every step). */
export const JOURNEY_RETRIES = 2

/** What an order in this status waits for, if anything. */
export function awaitedStep(status: OrderStatus): JourneyStep | null {
  switch (status) {
    case 'PENDING':
      return 'PAYMENT'
    case 'CONFIRMED':
      return 'DISPATCH'
    case 'DISPATCHED':
      return 'DELIVERY'
    case 'DELIVERED':
    case 'CANCELLED':
      return null
  }
}

export type DeadlineAction =
  /** The order moved on (or is gone) since the deadline was set: nothing to do. */
  | { kind: 'stale' }
  /** Send the step's command again; this is attempt `attempt`. */
  | { kind: 'resend'; order: Order; step: JourneyStep; attempt: number }
  /**
   * No payment outcome after every try: cancel the order (its payment is voided or refunded), if it
   * is still at `version` when the cancel is applied.
   */
  | { kind: 'cancel'; reason: string; version: number }
  /** A dispatch or delivery that never answered: the order waits for an operator. */
  | { kind: 'park'; step: JourneyStep; reason: string }

/** What a passed deadline calls for, given the order as it is now. */
export function onDeadline(
  deadline: JourneyDeadline,
  order: OrderState,
  policy: { retries: number; timeoutMs: number },
): DeadlineAction {
  if (!order || awaitedStep(order.status) !== deadline.step) return { kind: 'stale' }
  if (deadline.attempt <= policy.retries) {
    return { kind: 'resend', order, step: deadline.step, attempt: deadline.attempt + 1 }
  }
  const waited = `${deadline.attempt} tries of ${policy.timeoutMs} ms`
  switch (deadline.step) {
    case 'PAYMENT':
      return {
        kind: 'cancel',
        reason: `no payment outcome after ${waited}: the payment service did not answer`,
        version: order.version,
      }
    case 'DISPATCH':
      return {
        kind: 'park',
        step: 'DISPATCH',
        reason: `no dispatch after ${waited}: the dispatch service did not answer (a shipment may have left: not cancelled)`,
      }
    case 'DELIVERY':
      return {
        kind: 'park',
        step: 'DELIVERY',
        reason: `no delivery after ${waited}: the delivery service did not answer (the goods left: not cancelled)`,
      }
  }
}
