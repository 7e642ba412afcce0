import { z } from 'zod'
import { type Envelope, eventSchema } from '../envelope.ts'
import { id } from '../order/events.ts'
import {
  type ContractRegistry,
  createRegistry,
  type EventContract,
  eventDecoder,
  type TopicContract,
} from '../registry.ts'
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

export const deliveryScheduledData = z.object({
  eventType: z.literal('DeliveryScheduled'),
  orderId: id('orderId'),
  shipmentId: id('shipmentId'),
  /** When the simulated courier arrives: the delivery service delivers the order then. */
  dueAt: timestamp,
})

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
export const orderDeliveredEvent = eventSchema(orderDeliveredData)

export const deliveryEvent = z.discriminatedUnion('eventType', [deliveryScheduledEvent, orderDeliveredEvent])

export type DeliveryEventWire = z.input<typeof deliveryEvent>

export const deliveryEventContracts: EventContract[] = [
  {
    eventType: 'DeliveryScheduled',
    versions: { 1: deliveryScheduledEvent },
    description: 'A dispatched order is on its way; dueAt is when the (simulated) courier arrives.',
  },
  {
    eventType: 'OrderDelivered',
    versions: { 1: orderDeliveredEvent },
    description: 'The order reached the customer (occurredOn is when).',
  },
]

/** `delivery-events`: the delivery of every order. */
export const deliveryEventsTopic: TopicContract<'eventType'> = {
  topic: DELIVERY_EVENTS_TOPIC,
  description:
    'Every event of every delivery (seed 004). The envelope (eventId, aggregateId = delivery-<orderId>, occurredOn, version, eventType, schemaVersion, correlationId, causationId) and the event’s fields share one JSON object; every event names its orderId.',
  key: 'the order id: all events of one order’s delivery are on one partition, in version order',
  discriminator: 'eventType',
  messages: deliveryEventContracts,
}

export const deliveryEventRegistry: ContractRegistry = createRegistry(deliveryEventsTopic)

/** Decodes a `delivery-events` message into a typed event. */
export const decodeDeliveryEvent = eventDecoder<DeliveryEvent>(deliveryEventRegistry)

/** The wire form of a delivery event, ready for `JSON.stringify`. */
export function encodeDeliveryEvent(event: DeliveryEvent): DeliveryEventWire {
  return z.encode(deliveryEvent, event as z.output<typeof deliveryEvent>)
}
