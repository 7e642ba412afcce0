import { z } from 'zod'
import { defineEventTopic, type TopicWire } from '../define.ts'
import { type Envelope, eventSchema } from '../envelope.ts'
import { id } from '../order/events.ts'
import { sealedField } from '../personal.ts'
import type { TopicContract } from '../registry.ts'
import { timestamp } from '../timestamp.ts'

/**
 * The delivery service's events, as published on `delivery-events` (seed 004).
 *
 * One delivery per order, in the stream `delivery-<orderId>`. Delivery is simulated: a dispatched
 * order is scheduled for a configurable delay (DeliveryScheduled, with the time it is due), and
 * delivered when that time comes (OrderDelivered). Every event carries the `orderId`, which is also
 * the message key.
 */

export const DELIVERY_EVENTS_TOPIC = 'delivery-events'

/** The delivery stream of an order; the prefix keeps it apart from the order's own stream. */
export const deliveryStreamId = (orderId: string): string => `delivery-${orderId}`

export const deliveryScheduledDataV1 = z.object({
  eventType: z.literal('DeliveryScheduled'),
  orderId: id('orderId'),
  shipmentId: id('shipmentId'),
  /** When the simulated courier arrives: the delivery service delivers the order then. */
  dueAt: timestamp,
})

/** Version 2: where the courier goes, sealed as the order service sealed it (or null). */
export const deliveryScheduledData = deliveryScheduledDataV1.extend({ deliveryAddress: sealedField })

export const orderDeliveredData = z.object({
  eventType: z.literal('OrderDelivered'),
  orderId: id('orderId'),
  shipmentId: id('shipmentId'),
})

export type DeliveryScheduled = z.output<typeof deliveryScheduledData>
export type OrderDelivered = z.output<typeof orderDeliveredData>

export type DeliveryEventData = DeliveryScheduled | OrderDelivered
export type DeliveryEventType = DeliveryEventData['eventType']

/** A delivery event as stored and published: envelope plus data. */
export type DeliveryEvent = DeliveryEventData & Envelope

export const deliveryScheduledEvent = eventSchema(deliveryScheduledData)
export const deliveryScheduledEventV1 = eventSchema(deliveryScheduledDataV1)
export const orderDeliveredEvent = eventSchema(orderDeliveredData)

/** `delivery-events`: the delivery of every order. */
export const deliveryEvents = defineEventTopic({
  topic: DELIVERY_EVENTS_TOPIC,
  description:
    'Every event of every delivery (seed 004). The envelope (eventId, aggregateId = delivery-<orderId>, occurredOn, version, eventType, schemaVersion, correlationId, causationId) and the event’s fields share one JSON object; every event names its orderId.',
  key: {
    description: 'the order id: all events of one order’s delivery are on one partition, in version order',
    of: (event) => event.orderId,
  },
  messages: {
    DeliveryScheduled: {
      schema: deliveryScheduledEvent,
      version: 2,
      earlier: {
        1: {
          schema: deliveryScheduledEventV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null }),
        },
      },
      description: 'A dispatched order is on its way; dueAt is when the (simulated) courier arrives.',
    },
    OrderDelivered: {
      schema: orderDeliveredEvent,
      description: 'The order reached the customer (occurredOn is when).',
    },
  },
})

/** The wire shape of a delivery event. */
export type DeliveryEventWire = TopicWire<typeof deliveryEvents>

export const deliveryEventsTopic: TopicContract<'eventType'> = deliveryEvents.contract

/** Decodes a `delivery-events` message into a typed event. */
export const decodeDeliveryEvent = deliveryEvents.decode

/** The wire form of a delivery event, ready for `JSON.stringify`. */
export const encodeDeliveryEvent = deliveryEvents.encode
