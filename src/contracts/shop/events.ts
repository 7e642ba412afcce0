import { z } from 'zod'
import { defineEventTopic, type TopicWire } from '../define.ts'
import { currencyCode, decimalAmount } from '../money.ts'
import type { TopicContract } from '../registry.ts'
import { timestamp } from '../timestamp.ts'

/**
 * Seed 002's `orders.events`: the shop (seed 002's "cart service") publishes `ORDER_CREATED` with
 * the full order and `ORDER_STATUS_UPDATED` with the order id and the new status, keyed by the
 * order id, and the order-details service (seed 002's "order service") consumes them.
 *
 * The seed's event names are SCREAMING_SNAKE_CASE, which the platform's envelope does not allow,
 * so this topic has an envelope of its own: `eventType`, the `orderId` every message is about,
 * and `eventId` / `occurredOn`, which the shop always writes and which hand-written messages
 * (from a console producer, say) may leave out.
 */

export const SHOP_ORDER_EVENTS_TOPIC = 'orders.events'

/** The statuses an order may be set to; case is not significant on the way in. */
export const ShopOrderStatuses = ['created', 'confirmed', 'shipped', 'delivered', 'cancelled'] as const
export type ShopOrderStatus = (typeof ShopOrderStatuses)[number]

/** Seed 002 names orders `ORD-<order_id>`. */
export const ORDER_ID_PREFIX = 'ORD-'

const allowedStatuses = `must be one of ${ShopOrderStatuses.join(', ')}`

/** A status, case-insensitive on the way in (`"Confirmed"` is `confirmed`), lower case once decoded. */
export const shopOrderStatus = z.codec(
  z.string({ error: `status ${allowedStatuses}` }),
  z.enum(ShopOrderStatuses, { error: `status ${allowedStatuses}` }),
  {
    decode: (raw) => raw.trim().toLowerCase() as ShopOrderStatus,
    encode: (status) => status,
  },
)

const orderId = z
  .string({ error: 'orderId must be a string' })
  .trim()
  .min(1, 'orderId must not be empty')
  .max(200, 'orderId must be at most 200 characters')

/** One line of a generated order. */
export const shopOrderItem = z.object({
  itemId: z.string().min(1),
  name: z.string().min(1),
  price: decimalAmount,
  quantity: z.number().int().min(1),
})

/** The full order, as `ORDER_CREATED` carries it and `GET /order-details` shows it. */
export const shopOrder = z.object({
  orderId,
  customerId: z.string().min(1),
  orderDate: timestamp,
  items: z.array(shopOrderItem),
  totalAmount: decimalAmount,
  currency: currencyCode,
  status: shopOrderStatus,
})

export type ShopOrder = z.output<typeof shopOrder>
export type ShopOrderItem = z.output<typeof shopOrderItem>

const envelope = z.looseObject({
  eventType: z.string({ error: 'eventType must be a string' }).min(1, 'eventType must not be empty'),
  eventId: z.string().min(1).max(200).optional(),
  occurredOn: timestamp.optional(),
  schemaVersion: z.number().int().positive().optional(),
  orderId,
})

export const orderCreatedEvent = envelope.extend({
  eventType: z.literal('ORDER_CREATED'),
  order: shopOrder,
})

export const orderStatusUpdatedEvent = envelope.extend({
  eventType: z.literal('ORDER_STATUS_UPDATED'),
  status: shopOrderStatus,
})

/** `orders.events`: seed 002's order events, with an envelope of their own. */
export const shopOrderEvents = defineEventTopic({
  topic: SHOP_ORDER_EVENTS_TOPIC,
  description:
    "Seed 002's order events: ORDER_CREATED with the full order, ORDER_STATUS_UPDATED with the order id and its new status. Amounts are decimal numbers.",
  key: {
    description: 'the order id (ORD-…): all events of one order are on one partition, in order',
    of: (event) => event.orderId,
  },
  envelope,
  messages: {
    ORDER_CREATED: {
      schema: orderCreatedEvent,
      description: 'An order was created: the full order (customer, items, total, currency, date, status "created").',
    },
    ORDER_STATUS_UPDATED: {
      schema: orderStatusUpdatedEvent,
      description: `An order's status changed; status is one of ${ShopOrderStatuses.join(', ')}.`,
    },
  },
})

export type ShopOrderCreated = z.output<typeof orderCreatedEvent>
export type ShopOrderStatusUpdated = z.output<typeof orderStatusUpdatedEvent>
export type ShopOrderEvent = ShopOrderCreated | ShopOrderStatusUpdated
/** The wire shape of an event (decimal amounts, status as written). */
export type ShopOrderEventWire = TopicWire<typeof shopOrderEvents>

export const shopOrderEventsTopic: TopicContract<'eventType'> = shopOrderEvents.contract

/** Decodes a message of `orders.events` into a typed event, or the poison reason. */
export const decodeShopOrderEvent = shopOrderEvents.decode

/** The wire form of an event (decimal amounts), for producers. */
export const encodeShopOrderEvent = shopOrderEvents.encode
