import { decodeShopOrderEvent, SHOP_ORDER_EVENTS_TOPIC, type ShopOrderEvent } from '../../contracts/shop/events.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { IncomingMessage, Subscription } from '../../platform/transport/port.ts'
import type { OrderDetailsStore } from '../application/order-details-store.ts'

export const ORDER_DETAILS_GROUP = 'order-details-service'

/**
 * Reads `orders.events` in a group of its own. Per order (the key), events come in order, one at a
 * time. A message that is not a valid ORDER_CREATED / ORDER_STATUS_UPDATED goes to
 * `orders.events-dlq` with the reason and the partition keeps flowing (the reliable consumer). The
 * subscription creates the topic when it does not exist yet, and the Kafka transport reconnects
 * with backoff when the broker goes away.
 */
export async function startOrderEventsConsumer(
  context: Pick<ModuleContext, 'consume' | 'logger'>,
  store: OrderDetailsStore,
  groupId = ORDER_DETAILS_GROUP,
): Promise<Subscription> {
  return context.consume<ShopOrderEvent>({
    groupId,
    batch: true,
    topics: [SHOP_ORDER_EVENTS_TOPIC],
    decode: (message) => {
      const decoded = decodeShopOrderEvent(message.value)
      if (!decoded.ok) return decoded
      if (decoded.event.eventType === 'ORDER_CREATED' && decoded.event.order.orderId !== decoded.event.orderId) {
        return {
          ok: false,
          reason: 'INVALID_EVENT',
          message: `orderId ${decoded.event.orderId} and order.orderId ${decoded.event.order.orderId} differ`,
        }
      }
      return { ok: true, value: decoded.event }
    },
    handle: async (event, raw) => {
      const messageId = event.eventId ?? positionOf(raw)
      const { outcome, applied } = await store.apply(event, messageId)
      const fields = { orderId: event.orderId, eventType: event.eventType, eventId: messageId, outcome }
      switch (outcome) {
        case 'created':
          context.logger.info(
            { ...fields, appliedBufferedUpdates: applied },
            `order ${event.orderId} created${applied ? `; applied ${applied} status update(s) that arrived before it` : ''}`,
          )
          return
        case 'duplicate-create':
          context.logger.warn(fields, `duplicate ORDER_CREATED for ${event.orderId} ignored`)
          return
        case 'buffered':
          context.logger.info(
            fields,
            `status update for ${event.orderId} arrived before its ORDER_CREATED; kept until the order arrives`,
          )
          return
        case 'updated':
          context.logger.info(fields, `order ${event.orderId} is now ${'status' in event ? event.status : ''}`)
          return
        case 'redelivered':
          context.logger.debug(fields, `event ${messageId} was applied already; skipped`)
          return
      }
    },
  })
}

/** A message without an eventId is known by where it sits in the log. */
const positionOf = (message: IncomingMessage) => `${message.topic}/${message.partition}/${message.offset}`
