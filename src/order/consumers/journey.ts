import { DELIVERY_EVENTS_TOPIC, type DeliveryEvent } from '../../contracts/delivery/events.ts'
import { DISPATCH_EVENTS_TOPIC, type DispatchEvent } from '../../contracts/dispatch/events.ts'
import { formatAmount } from '../../contracts/money.ts'
import { cancellationReasonFor, PAYMENT_EVENTS_TOPIC, type PaymentEvent } from '../../contracts/payment/events.ts'
import type { Refusal } from '../../platform/service.ts'
import type { Order, OrderCommand, OrderState, OrderStatus } from '../domain/order.ts'

/**
 * The order service's reactions to the rest of the journey, in choreography (seed 004): it reads
 * `payment-events`, `dispatch-events` and `delivery-events` as group `order-service` and moves the
 * order along. In orchestration the Create-Order saga sends these commands instead, on
 * `order_commands`, so this intake runs in choreography only (the module declares it so).
 *
 *   PaymentProcessed → ConfirmOrder(paymentId)      PaymentFailed → CancelOrder(payment failed: …)
 *   (PaymentProcessed of another amount than the order's total → CancelOrder, which is refunded)
 *   OrderDispatched  → ChangeOrderStatus(DISPATCHED) OrderDelivered → ChangeOrderStatus(DELIVERED)
 *   PaymentRefunded, PaymentVoided, ShipmentQuoted, DeliveryScheduled → nothing
 *
 * Every event goes through the inbox (its event id, in the command's transaction), so a redelivered
 * event changes nothing.
 *
 * Two cases are expected traffic, not errors:
 * - OrderDelivered before OrderDispatched: they travel on different topics, so the delivery can
 *   overtake the dispatch. The delivery records the dispatch first (`recordsDispatch`: two
 *   OrderStatusChanged, CONFIRMED → DISPATCHED → DELIVERED, so the history shows them in the order
 *   they happened), and the late dispatch event changes nothing. It used to wait for the dispatch
 *   through retries, which held the consumer: under load a retrying partition kept its buffered
 *   messages, the consumer stopped fetching at its buffer bound, and the dispatch it waited for was
 *   never read (choreography at saturation cancelled most orders for want of their payment).
 * - A payment outcome for an order the customer cancelled meanwhile (PaymentProcessed →
 *   ConfirmOrder, PaymentFailed → CancelOrder on a CANCELLED order): the order stays cancelled and
 *   the event is skipped; the payment service refunds a capture from the OrderCancelled it reads.
 * - A dispatch or delivery of an order cancelled meanwhile (dispatch shipped on OrderConfirmed
 *   before it read the OrderCancelled behind it): the same rule as the saga's. The cancellation and
 *   the refund stand (the payment service refunds from OrderCancelled); the goods that went out
 *   are an operator's to recall or charge again, so the order service logs it as a warning naming
 *   the shipment, and skips the event rather than dead-letter traffic that a race produces.
 * Anything else the domain rejects is a real conflict and goes to the topic's dead letters with the
 * reason (`whenRefused`).
 */

export const ORDER_JOURNEY_GROUP = 'order-service'

export const ORDER_JOURNEY_TOPICS = [PAYMENT_EVENTS_TOPIC, DISPATCH_EVENTS_TOPIC, DELIVERY_EVENTS_TOPIC]

export type JourneyEvent = PaymentEvent | DispatchEvent | DeliveryEvent

/**
 * The order command a journey event calls for, or null. `order` is the order as it stands: a
 * capture that is not its total (fixed at placement) cancels it instead of confirming it, so that
 * the payment service refunds it rather than the order being delivered with other money.
 */
export function orderCommandFor(
  event: JourneyEvent,
  order?: Pick<Order, 'totalAmount' | 'currency'>,
): OrderCommand | null {
  switch (event.eventType) {
    case 'PaymentProcessed':
      if (order && (event.amount !== order.totalAmount || event.currency !== order.currency)) {
        const reason = `payment captured ${formatAmount(event.amount)} ${event.currency}, not the order's total ${formatAmount(order.totalAmount)} ${order.currency}`
        return { commandType: 'CancelOrder', orderId: event.orderId, reason }
      }
      return { commandType: 'ConfirmOrder', orderId: event.orderId, paymentId: event.paymentId }
    case 'PaymentFailed':
      return { commandType: 'CancelOrder', orderId: event.orderId, reason: cancellationReasonFor(event) }
    case 'OrderDispatched':
      return { commandType: 'ChangeOrderStatus', orderId: event.orderId, status: 'DISPATCHED' }
    case 'OrderDelivered':
      return { commandType: 'ChangeOrderStatus', orderId: event.orderId, status: 'DELIVERED', recordsDispatch: true }
    case 'PaymentRefunded':
    case 'PaymentVoided':
    case 'ShipmentQuoted':
    case 'DeliveryScheduled':
      return null
    default:
      return assertNever(event)
  }
}

/**
 * What to do with a journey event whose command the order refused (INVALID_TRANSITION), given the
 * order's status now: wait for what it depends on (retry), leave the order as it is (skip, with why
 * for the log), or dead-letter it as the real conflict it is.
 */
export function whenRefused(
  command: OrderCommand,
  status: OrderStatus | null,
): { action: 'skip'; why: string; warn: boolean } | { action: 'dead-letter' } {
  if (status !== 'CANCELLED') return { action: 'dead-letter' }
  if (command.commandType === 'ConfirmOrder' || command.commandType === 'CancelOrder') {
    return {
      action: 'skip',
      why: 'the order was cancelled before its payment outcome arrived; it stays cancelled (a capture is refunded)',
      warn: false,
    }
  }
  if (
    command.commandType === 'ChangeOrderStatus' &&
    (command.status === 'DISPATCHED' || command.status === 'DELIVERED')
  ) {
    return {
      action: 'skip',
      why: `goods went out for a cancelled order (${command.status.toLowerCase()} after the cancellation): the cancellation and refund stand; recall the shipment or charge the customer again`,
      warn: true,
    }
  }
  return { action: 'dead-letter' }
}

/** A journey event's command as the order service's intake carries it out (see `whenRefused`). */
export function whenJourneyRefused(error: { code: string }, command: OrderCommand, order: OrderState): Refusal {
  if (error.code !== 'INVALID_TRANSITION') return { action: 'dead-letter' }
  return whenRefused(command, order?.status ?? null)
}

function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`)
}
