import { z } from 'zod'
import { defineEventTopic, type TopicWire } from '../define.ts'
import { type Envelope, eventSchema } from '../envelope.ts'
import { currencyCode, decimalAmount } from '../money.ts'
import { id } from '../order/events.ts'
import { sealedField } from '../personal.ts'
import type { TopicContract } from '../registry.ts'

/**
 * The dispatch service's events, as published on `dispatch-events` (seed 004).
 *
 * One shipment per order, in the stream `dispatch-<orderId>`, with the shipment id
 * `shipment-<orderId>`: a re-sent or redelivered DispatchOrder finds the stream already dispatched,
 * and both modes (saga and choreography) name the same shipment. The shipping cost follows the one
 * rule in contracts/shipping.ts. Every event carries the `orderId`, which is also the message key.
 */

export const DISPATCH_EVENTS_TOPIC = 'dispatch-events'

/** The dispatch stream of an order; the prefix keeps it apart from the order's own stream. */
export const dispatchStreamId = (orderId: string): string => `dispatch-${orderId}`

/** The id of an order's one shipment. */
export const shipmentIdFor = (orderId: string): string => `shipment-${orderId}`

/**
 * Dispatch priced the order's shipping (from OrderCreated, again after OrderUpdated). In
 * choreography the order's total arrives on OrderCreated and the go-ahead on OrderConfirmed, which
 * carries no amount; the quote is how dispatch remembers the first until the second.
 */
export const shipmentQuotedDataV1 = z.object({
  eventType: z.literal('ShipmentQuoted'),
  orderId: id('orderId'),
  orderAmount: decimalAmount,
  shippingCost: decimalAmount,
  currency: currencyCode,
})

export const orderDispatchedDataV1 = z.object({
  eventType: z.literal('OrderDispatched'),
  orderId: id('orderId'),
  shipmentId: id('shipmentId'),
  shippingCost: decimalAmount,
  currency: currencyCode,
})

/**
 * Version 2 of both: the order's delivery address, sealed with the customer's key as the order
 * service sealed it (or null), carried on to delivery. Dispatch opens it only to hand it to its
 * carrier, and never keeps it in clear.
 */
export const shipmentQuotedData = shipmentQuotedDataV1.extend({ deliveryAddress: sealedField })
export const orderDispatchedData = orderDispatchedDataV1.extend({ deliveryAddress: sealedField })

export type ShipmentQuoted = z.output<typeof shipmentQuotedData>
export type OrderDispatched = z.output<typeof orderDispatchedData>

export type DispatchEventData = ShipmentQuoted | OrderDispatched
export type DispatchEventType = DispatchEventData['eventType']

/** A dispatch event as stored and published: envelope plus data. */
export type DispatchEvent = DispatchEventData & Envelope

export const shipmentQuotedEvent = eventSchema(shipmentQuotedData)
export const orderDispatchedEvent = eventSchema(orderDispatchedData)
export const shipmentQuotedEventV1 = eventSchema(shipmentQuotedDataV1)
export const orderDispatchedEventV1 = eventSchema(orderDispatchedDataV1)

/** `dispatch-events`: the shipping of every order. */
export const dispatchEvents = defineEventTopic({
  topic: DISPATCH_EVENTS_TOPIC,
  description:
    'Every event of every shipment (seed 004). The envelope (eventId, aggregateId = dispatch-<orderId>, occurredOn, version, eventType, schemaVersion, correlationId, causationId) and the event’s fields share one JSON object; every event names its orderId.',
  key: {
    description: 'the order id: all events of one order’s shipment are on one partition, in version order',
    of: (event) => event.orderId,
  },
  messages: {
    ShipmentQuoted: {
      schema: shipmentQuotedEvent,
      version: 2,
      earlier: {
        1: {
          schema: shipmentQuotedEventV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null }),
        },
      },
      description: 'The shipping cost of an order was worked out from its total (before it is dispatched).',
    },
    OrderDispatched: {
      schema: orderDispatchedEvent,
      version: 2,
      earlier: {
        1: {
          schema: orderDispatchedEventV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null }),
        },
      },
      description: 'A paid and confirmed order left with a shipment id, and what its shipping cost.',
    },
  },
})

/** The wire shape of a dispatch event (decimal amounts). */
export type DispatchEventWire = TopicWire<typeof dispatchEvents>

export const dispatchEventsTopic: TopicContract<'eventType'> = dispatchEvents.contract

/** Decodes a `dispatch-events` message into a typed event (amounts in minor units). */
export const decodeDispatchEvent = dispatchEvents.decode

/** The wire form of a dispatch event: decimal amounts, ready for `JSON.stringify`. */
export const encodeDispatchEvent = dispatchEvents.encode
