import type { CartEvent } from '../../contracts/cart/events.ts'
import type { Refusal } from '../../platform/service.ts'
import type { OrderCommand, OrderState } from '../domain/order.ts'

export const CART_CHECKOUT_GROUP = 'order-service-cart-checkouts'

/**
 * Seed 004's first step: a checked-out cart becomes an order. The order service reads
 * `cart-events` and, for each CartCheckedOut, creates the order the event names (its id was chosen
 * at checkout) with the cart's customer, items, total and currency; the order then goes through
 * its journey like any other. Other cart events are none of the order service's business.
 *
 * Exactly once: the event's id goes into the inbox in the order's transaction, so a redelivered
 * event creates nothing. Should a redelivery come after the inbox forgot the id, the order exists
 * already and the create is refused as a conflict, which is the same outcome: logged, not
 * dead-lettered (`whenCheckoutRefused`).
 */
export function checkoutCommandFor(event: CartEvent): OrderCommand | null {
  if (event.eventType !== 'CartCheckedOut') return null
  return {
    commandType: 'CreateOrder',
    orderId: event.orderId,
    customerId: event.customerId,
    items: event.items.map((item) => ({
      productId: item.productId,
      ...(item.name !== undefined ? { name: item.name } : {}),
      price: item.price,
      quantity: item.quantity,
    })),
    totalAmount: event.totalAmount,
    currency: event.currency,
    // Sealed by the cart with the same customer's key: carried on as they are.
    ...(event.deliveryAddress ? { deliveryAddress: event.deliveryAddress } : {}),
    ...(event.contact ? { contact: event.contact } : {}),
  }
}

export function whenCheckoutRefused(error: { code: string }, command: OrderCommand, order: OrderState): Refusal {
  if (error.code === 'VERSION_CONFLICT' && order) {
    return { action: 'skip', why: `order ${command.orderId} exists already: the checkout was handled before` }
  }
  return { action: 'dead-letter' }
}
