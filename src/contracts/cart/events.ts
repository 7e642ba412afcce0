import { z } from 'zod'
import { defineEventTopic, type TopicWire } from '../define.ts'
import { type Envelope, eventSchema } from '../envelope.ts'
import { currencyCode, DEFAULT_CURRENCY, decimalAmount } from '../money.ts'
import { id } from '../order/events.ts'
import { type Contact, type DeliveryAddress, type Personal, sealedField } from '../personal.ts'
import type { TopicContract } from '../registry.ts'

/**
 * Seed 004's cart service: its events on `cart-events`, keyed by cart id, and its HTTP bodies.
 * `CartCheckedOut` carries everything the order service needs to create the order (the order id
 * included, chosen at checkout), so the order is created from the event alone.
 *
 * Amounts are decimal numbers on the wire and integer minor units once decoded (money.ts).
 */

export const CART_EVENTS_TOPIC = 'cart-events'

export const CartStatuses = { OPEN: 'OPEN', CHECKED_OUT: 'CHECKED_OUT' } as const
export type CartStatus = (typeof CartStatuses)[keyof typeof CartStatuses]

const quantity = z
  .number({ error: 'quantity must be a number' })
  .int('quantity must be a whole number')
  .min(1, 'quantity must be at least 1')
  .max(10_000, 'quantity must be at most 10000')

const productName = z.string().trim().min(1, 'name must not be empty').max(200, 'name must be at most 200 characters')

/** One line of a cart: a product, its unit price and how many. */
export const cartItem = z.object({
  productId: id('productId'),
  name: productName.optional(),
  price: decimalAmount,
  quantity,
})

export type CartItem = z.output<typeof cartItem>

export const cartCreatedData = z.object({
  eventType: z.literal('CartCreated'),
  customerId: id('customerId'),
  currency: currencyCode,
})

export const cartItemAddedData = z.object({
  eventType: z.literal('CartItemAdded'),
  productId: id('productId'),
  name: productName.optional(),
  price: decimalAmount,
  /** How many were added (on top of what the cart held). */
  quantity,
})

export const cartItemQuantityChangedData = z.object({
  eventType: z.literal('CartItemQuantityChanged'),
  productId: id('productId'),
  quantity,
})

export const cartItemRemovedData = z.object({
  eventType: z.literal('CartItemRemoved'),
  productId: id('productId'),
})

/** CartCheckedOut as version 1 wrote it: no delivery address, no contact. */
export const cartCheckedOutDataV1 = z.object({
  eventType: z.literal('CartCheckedOut'),
  orderId: id('orderId'),
  customerId: id('customerId'),
  items: z.array(cartItem).min(1),
  totalAmount: decimalAmount,
  currency: currencyCode,
})

/**
 * CartCheckedOut, version 2: the delivery address and contact given at checkout, sealed with the
 * customer's key (or null), which the order service carries on to the order as they are.
 */
export const cartCheckedOutData = cartCheckedOutDataV1.extend({
  deliveryAddress: sealedField,
  contact: sealedField,
})

export type CartCreated = z.output<typeof cartCreatedData>
export type CartItemAdded = z.output<typeof cartItemAddedData>
export type CartItemQuantityChanged = z.output<typeof cartItemQuantityChangedData>
export type CartItemRemoved = z.output<typeof cartItemRemovedData>
/** As the domain decides it: the personal fields in clear until the platform seals them. */
export type CartCheckedOut = Omit<z.output<typeof cartCheckedOutData>, 'deliveryAddress' | 'contact'> & {
  deliveryAddress?: Personal<DeliveryAddress> | undefined
  contact?: Personal<Contact> | undefined
}

export type CartEventData = CartCreated | CartItemAdded | CartItemQuantityChanged | CartItemRemoved | CartCheckedOut
export type CartEvent = CartEventData & Envelope

export const cartCreatedEvent = eventSchema(cartCreatedData)
export const cartItemAddedEvent = eventSchema(cartItemAddedData)
export const cartItemQuantityChangedEvent = eventSchema(cartItemQuantityChangedData)
export const cartItemRemovedEvent = eventSchema(cartItemRemovedData)
export const cartCheckedOutEvent = eventSchema(cartCheckedOutData)
export const cartCheckedOutEventV1 = eventSchema(cartCheckedOutDataV1)

/** `cart-events`: everything that happens to a cart, in order per cart. */
export const cartEvents = defineEventTopic({
  topic: CART_EVENTS_TOPIC,
  description:
    "Seed 004's cart events. The envelope (eventId, aggregateId = cart id, occurredOn, version, eventType, schemaVersion, correlationId, causationId) and the event's fields share one JSON object.",
  key: {
    description: 'the cart id (aggregateId): all events of one cart are on one partition, in version order',
    of: (event) => event.aggregateId,
  },
  messages: {
    CartCreated: { schema: cartCreatedEvent, description: 'A customer opened a cart.' },
    CartItemAdded: {
      schema: cartItemAddedEvent,
      description: 'A product was put in the cart; quantity is how many were added.',
    },
    CartItemQuantityChanged: {
      schema: cartItemQuantityChangedEvent,
      description: 'The quantity of a product in the cart is now `quantity`.',
    },
    CartItemRemoved: { schema: cartItemRemovedEvent, description: 'A product left the cart.' },
    CartCheckedOut: {
      schema: cartCheckedOutEvent,
      version: 2,
      earlier: {
        // v1 had no delivery address and no contact: it reads as a checkout without them.
        1: {
          schema: cartCheckedOutEventV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null, contact: null }),
        },
      },
      description:
        'The cart was checked out: the order to create (orderId, customer, items, total, currency), with the delivery address and contact, sealed.',
    },
  },
})

/** The wire shape of a cart event (decimal amounts). */
export type CartEventWire = TopicWire<typeof cartEvents>

export const cartEventsTopic: TopicContract<'eventType'> = cartEvents.contract

/** Decodes a `cart-events` message into a typed event (amounts in minor units). */
export const decodeCartEvent = cartEvents.decode

// ---------------------------------------------------------------------------------------------
// HTTP request bodies
// ---------------------------------------------------------------------------------------------

export const createCartBody = z.object({
  customerId: id('customerId'),
  currency: currencyCode.default(DEFAULT_CURRENCY),
})

export const addCartItemBody = cartItem

export const changeCartItemBody = z.object({ quantity })
