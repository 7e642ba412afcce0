import { z } from 'zod'
import { defineEventTopic, type TopicMessage, type TopicWire } from '../define.ts'
import { type Envelope, eventSchema } from '../envelope.ts'
import { currencyCode, decimalAmount } from '../money.ts'
import { type Contact, type DeliveryAddress, type Personal, sealedField, withPersonalFields } from '../personal.ts'
import type { ContractRegistry, TopicContract } from '../registry.ts'

/**
 * The order service's events, as published on `order-events`.
 *
 * Amounts are decimal numbers on the wire and integer minor units once decoded (see money.ts), so
 * `z.input<…>` is the wire shape and `z.output<…>` the shape the domain works with; `z.encode`
 * goes back from the second to the first.
 */

export const ORDER_EVENTS_TOPIC = 'order-events'

export const OrderStatuses = {
  PENDING: 'PENDING',
  CONFIRMED: 'CONFIRMED',
  DISPATCHED: 'DISPATCHED',
  DELIVERED: 'DELIVERED',
  CANCELLED: 'CANCELLED',
} as const

export type OrderStatus = (typeof OrderStatuses)[keyof typeof OrderStatuses]

const statusValues = Object.values(OrderStatuses) as [OrderStatus, ...OrderStatus[]]

/** A status in the events this service writes: exactly one of the values above. */
export const orderStatus = z.enum(statusValues, { error: `must be one of ${statusValues.join(', ')}` })

/**
 * A status as other senders write it: seed 002's services send `"confirmed"`, so case is not
 * significant in commands and request bodies. (Events keep the strict form: a transform cannot be
 * encoded back.)
 */
export const requestedOrderStatus = z
  .string({ error: `must be one of ${statusValues.join(', ')}` })
  .transform((s) => s.toUpperCase())
  .pipe(orderStatus)

export const id = (name: string) =>
  z
    .string({ error: `${name} must be a string` })
    .trim()
    .min(1, `${name} must not be empty`)
    .max(200, `${name} must be at most 200 characters`)

/**
 * One order line. Items name either a menu item (seed 001, restaurants) or a product (seed 004,
 * shops), never both and never neither, so a consumer always knows what was ordered.
 */
export const orderItem = z
  .object({
    menuItemId: id('menuItemId').optional(),
    productId: id('productId').optional(),
    name: z
      .string({ error: 'name must be a string' })
      .trim()
      .min(1, 'name must not be empty')
      .max(200, 'name must be at most 200 characters')
      .optional(),
    price: decimalAmount,
    quantity: z
      .number({ error: 'quantity must be a number' })
      .int('quantity must be a whole number')
      .min(1, 'quantity must be at least 1')
      .max(10_000, 'quantity must be at most 10000'),
  })
  .superRefine((item, ctx) => {
    if ((item.menuItemId === undefined) === (item.productId === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'exactly one of menuItemId or productId is required',
        path: [item.menuItemId === undefined ? 'menuItemId' : 'productId'],
      })
    }
  })

export type OrderItem = z.output<typeof orderItem>
export type OrderItemWire = z.input<typeof orderItem>

export const orderItems = z
  .array(orderItem, { error: 'items must be a list' })
  .min(1, 'items must not be empty')
  .max(100, 'items must have at most 100 lines')
export const notes = z.string({ error: 'notes must be a string' }).max(1000, 'notes must be at most 1000 characters')
export const reason = z
  .string({ error: 'reason must be a string' })
  .trim()
  .min(1, 'reason must not be empty')
  .max(500, 'reason must be at most 500 characters')

// ---------------------------------------------------------------------------------------------
// Events on `order-events`. Each is the event's own data plus its `eventType`; the wire schema
// adds the envelope. The data schemas are kept apart so the domain can name event data without the
// envelope (which the application layer adds: ids and time come from outside the domain).
// ---------------------------------------------------------------------------------------------

/** OrderCreated as version 1 wrote it: no delivery address, no contact. */
export const orderCreatedDataV1 = z.object({
  eventType: z.literal('OrderCreated'),
  customerId: id('customerId'),
  restaurantId: id('restaurantId').optional(),
  items: orderItems,
  subtotal: decimalAmount,
  totalAmount: decimalAmount,
  currency: currencyCode,
  notes: notes.optional(),
})

/**
 * OrderCreated, version 2: where the order goes and how to reach the customer, both personal, so
 * sealed with the customer's key (`{ "$enc": 1, … }`), or null when the customer gave none. A v1
 * event reads as v2 with both null.
 */
export const orderCreatedData = orderCreatedDataV1.extend({
  deliveryAddress: sealedField,
  contact: sealedField,
})

export const orderUpdatedData = z.object({
  eventType: z.literal('OrderUpdated'),
  items: orderItems.optional(),
  notes: notes.optional(),
  subtotal: decimalAmount,
  totalAmount: decimalAmount,
})

export const orderConfirmedData = z.object({
  eventType: z.literal('OrderConfirmed'),
  paymentId: id('paymentId'),
})

export const orderCancelledData = z.object({
  eventType: z.literal('OrderCancelled'),
  reason,
})

export const orderStatusChangedData = z.object({
  eventType: z.literal('OrderStatusChanged'),
  from: orderStatus,
  to: orderStatus,
})

/** As the domain decides it: the personal fields in clear until the platform seals them, sealed once recorded. */
export type OrderCreated = Omit<z.output<typeof orderCreatedData>, 'deliveryAddress' | 'contact'> & {
  // Optional in the type, so that fixtures and v1-era code need not name them; written always.
  deliveryAddress?: Personal<DeliveryAddress> | undefined
  contact?: Personal<Contact> | undefined
}
export type OrderUpdated = z.output<typeof orderUpdatedData>
export type OrderConfirmed = z.output<typeof orderConfirmedData>
export type OrderCancelled = z.output<typeof orderCancelledData>
export type OrderStatusChanged = z.output<typeof orderStatusChangedData>

/** An order event's data: what the domain decides and evolves from, amounts in minor units. */
export type OrderEventData = OrderCreated | OrderUpdated | OrderConfirmed | OrderCancelled | OrderStatusChanged
export type OrderEventType = OrderEventData['eventType']

/** An order event as stored and published: envelope plus data. */
export type OrderEvent = OrderEventData & Envelope

export const orderCreatedEvent = eventSchema(orderCreatedData)
export const orderCreatedEventV1 = eventSchema(orderCreatedDataV1)
export const orderUpdatedEvent = eventSchema(orderUpdatedData)
export const orderConfirmedEvent = eventSchema(orderConfirmedData)
export const orderCancelledEvent = eventSchema(orderCancelledData)
export const orderStatusChangedEvent = eventSchema(orderStatusChangedData)

/** `order-events`: everything that happens to an order, in order per order. */
export const orderEvents = defineEventTopic({
  topic: ORDER_EVENTS_TOPIC,
  description:
    'Every event of every order, as the order service records it. The envelope (eventId, aggregateId = order id, occurredOn, version, eventType, schemaVersion, correlationId, causationId) and the event’s fields share one JSON object.',
  key: {
    description: 'the order id (aggregateId): all events of one order are on one partition, in version order',
    of: (event) => event.aggregateId,
  },
  messages: {
    OrderCreated: {
      schema: orderCreatedEvent,
      version: 2,
      earlier: {
        // v1 had no delivery address and no contact: it reads as an order placed without them.
        1: {
          schema: orderCreatedEventV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null, contact: null }),
        },
      },
      description:
        'An order was placed (status PENDING), with its items, what the customer is charged, and its delivery address and contact, sealed.',
    },
    OrderUpdated: {
      schema: orderUpdatedEvent,
      description: 'A pending order’s items or notes changed; the amounts are the new ones.',
    },
    OrderConfirmed: { schema: orderConfirmedEvent, description: 'The order was paid for (status CONFIRMED).' },
    OrderCancelled: {
      schema: orderCancelledEvent,
      description: 'The order was cancelled (status CANCELLED), with the reason.',
    },
    OrderStatusChanged: {
      schema: orderStatusChangedEvent,
      description: 'The order moved along its fulfilment (e.g. CONFIRMED → DISPATCHED → DELIVERED).',
    },
  },
})

/** The wire shape of an order event (decimal amounts). */
export type OrderEventWire = TopicWire<typeof orderEvents>

export const orderEventsTopic: TopicContract<'eventType'> = orderEvents.contract

/** The contracts of the `order-events` topic. */
export const orderEventRegistry: ContractRegistry = orderEvents.registry

/** Decodes an `order-events` message into a typed event (amounts in minor units). */
export const decodeOrderEvent = orderEvents.decode

/**
 * The wire form of a recorded order event: decimal amounts, ready for `JSON.stringify`. Recorded
 * events hold their personal fields sealed (the platform sealed them before storing), which is the
 * only form the wire schema takes: a plaintext address fails here rather than leave the service.
 */
export const encodeOrderEvent = (event: OrderEvent): OrderEventWire =>
  orderEvents.encode(withPersonalFields(event) as TopicMessage<typeof orderEvents>)
