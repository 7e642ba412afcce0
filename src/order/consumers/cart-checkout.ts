import { CART_EVENTS_TOPIC, type CartEvent, decodeCartEvent } from '../../contracts/cart/events.ts'
import { isAppError } from '../../platform/errors.ts'
import { causedBy, decodeWith } from '../../platform/es/consumed.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { Subscription } from '../../platform/transport/port.ts'
import type { OrderStore } from '../application/order-store.ts'

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
 * dead-lettered.
 */
export async function startCartCheckoutConsumer(
  context: Pick<ModuleContext, 'consume' | 'logger'>,
  store: OrderStore,
  groupId = CART_CHECKOUT_GROUP,
): Promise<Subscription> {
  return context.consume<CartEvent>({
    groupId,
    batch: true,
    topics: [CART_EVENTS_TOPIC],
    decode: decodeWith(decodeCartEvent),
    handle: async (event, raw) => {
      if (event.eventType !== 'CartCheckedOut') return
      const fields = { cartId: event.aggregateId, orderId: event.orderId, eventId: event.eventId }
      try {
        const result = await store.execute(
          {
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
          },
          causedBy(raw, groupId, event),
        )
        context.logger.info(
          { ...fields, duplicate: result.duplicate },
          result.duplicate
            ? `checkout of cart ${event.aggregateId} was handled already; skipped`
            : `cart ${event.aggregateId} checked out: created order ${event.orderId}`,
        )
      } catch (error) {
        if (!isAppError(error, 'VERSION_CONFLICT') || !(await store.get(event.orderId))) throw error
        context.logger.info(fields, `order ${event.orderId} of cart ${event.aggregateId} exists already; skipped`)
      }
    },
  })
}
