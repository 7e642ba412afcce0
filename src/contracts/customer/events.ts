import { z } from 'zod'
import { defineEventTopic, type TopicWire } from '../define.ts'
import { eventSchema } from '../envelope.ts'
import { id } from '../order/events.ts'

/**
 * The customer service's events, on `customer-events`, keyed by the customer id. So far one: a
 * customer's personal data was erased (crypto-shredding: their data keys are gone, see
 * platform/personal-data), which read models act on by dropping what they kept of it.
 */

export const CUSTOMER_EVENTS_TOPIC = 'customer-events'

/** The event store's stream type of customers (the order read model follows it for erasures). */
export const CUSTOMER_STREAM_TYPE = 'customer'

/** The customer's stream; the prefix keeps it apart from other services' streams. */
export const customerStreamId = (customerId: string): string => `customer-${customerId}`

export const customerDataErasedData = z.object({
  eventType: z.literal('CustomerDataErased'),
  customerId: id('customerId'),
  /** Who asked: the customer themself, or an operator's subject (`anonymous` with authentication off). */
  requestedBy: id('requestedBy'),
})

export type CustomerDataErased = z.output<typeof customerDataErasedData>
export type CustomerEventData = CustomerDataErased

export const customerDataErasedEvent = eventSchema(customerDataErasedData)

export const customerEvents = defineEventTopic({
  topic: CUSTOMER_EVENTS_TOPIC,
  description:
    'Every event of every customer. The envelope (eventId, aggregateId = customer-<customerId>, occurredOn, version, eventType, schemaVersion, correlationId, causationId) and the event’s fields share one JSON object.',
  key: { description: 'the customer id', of: (event) => event.customerId },
  messages: {
    CustomerDataErased: {
      schema: customerDataErasedEvent,
      description:
        'The customer’s personal data was erased: their data keys are deleted, so every sealed copy (event store, topics, backups) can no longer be opened and reads as "[erased]".',
    },
  },
})

export type CustomerEventWire = TopicWire<typeof customerEvents>
