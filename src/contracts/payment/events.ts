import { z } from 'zod'
import { defineEventTopic, type TopicWire } from '../define.ts'
import { type Envelope, eventSchema } from '../envelope.ts'
import { currencyCode, decimalAmount } from '../money.ts'
import { id, reason } from '../order/events.ts'
import type { TopicContract } from '../registry.ts'

/**
 * The payment service's events, as published on `payment-events` (seed 004).
 *
 * One payment per order: its stream id and its payment id are both `payment-<orderId>`, so the event
 * store's optimistic concurrency on that stream is what allows at most one capture per order, and
 * every sender (the saga, the choreography mapping, a redelivery) names the same payment. Every
 * event carries the `orderId`, which is also the message key.
 *
 * Amounts are decimal numbers on the wire and integer minor units once decoded (see money.ts).
 */

export const PAYMENT_EVENTS_TOPIC = 'payment-events'

/** The payment stream of an order; the prefix keeps it apart from the order's own stream (the order id). */
export const paymentStreamId = (orderId: string): string => `payment-${orderId}`

/** The id of an order's one payment (the same string as its stream id: one payment per order). */
export const paymentIdFor = (orderId: string): string => paymentStreamId(orderId)

/** Why a payment failed, as a stable code beside the human-readable reason. */
export const PaymentFailureCodes = {
  /** The amount is above what the gateway accepts for one payment. */
  AMOUNT_OVER_LIMIT: 'AMOUNT_OVER_LIMIT',
  /** The gateway declined this customer. */
  CUSTOMER_DECLINED: 'CUSTOMER_DECLINED',
  /** The gateway stayed unavailable for longer than the payment service retries. */
  GATEWAY_UNAVAILABLE: 'GATEWAY_UNAVAILABLE',
} as const

export type PaymentFailureCode = (typeof PaymentFailureCodes)[keyof typeof PaymentFailureCodes]

const failureCodes = Object.values(PaymentFailureCodes) as [PaymentFailureCode, ...PaymentFailureCode[]]

export const paymentFailureCode = z.enum(failureCodes, { error: `must be one of ${failureCodes.join(', ')}` })

// ---------------------------------------------------------------------------------------------
// Events on `payment-events`: the event's data plus its `eventType`; the wire schema adds the
// envelope (aggregateId = `payment-<orderId>`).
// ---------------------------------------------------------------------------------------------

const paymentFields = {
  orderId: id('orderId'),
  paymentId: id('paymentId'),
  amount: decimalAmount,
  currency: currencyCode,
}

export const paymentProcessedData = z.object({
  eventType: z.literal('PaymentProcessed'),
  ...paymentFields,
  customerId: id('customerId'),
  /** The gateway's reference for the capture. */
  authorizationId: id('authorizationId'),
})

export const paymentFailedData = z.object({
  eventType: z.literal('PaymentFailed'),
  ...paymentFields,
  customerId: id('customerId'),
  code: paymentFailureCode,
  reason,
})

export const paymentRefundedData = z.object({
  eventType: z.literal('PaymentRefunded'),
  ...paymentFields,
  reason,
})

/**
 * A refund was asked for before anything was captured: the payment is closed without money moving,
 * and a ProcessPayment still on its way (a saga re-send, a redelivery) can no longer capture.
 */
export const paymentVoidedData = z.object({
  eventType: z.literal('PaymentVoided'),
  orderId: id('orderId'),
  paymentId: id('paymentId'),
  reason,
})

export type PaymentProcessed = z.output<typeof paymentProcessedData>
export type PaymentFailed = z.output<typeof paymentFailedData>
export type PaymentRefunded = z.output<typeof paymentRefundedData>
export type PaymentVoided = z.output<typeof paymentVoidedData>

/** A payment event's data: what the domain decides and evolves from, amounts in minor units. */
export type PaymentEventData = PaymentProcessed | PaymentFailed | PaymentRefunded | PaymentVoided
export type PaymentEventType = PaymentEventData['eventType']

/** A payment event as stored and published: envelope plus data. */
export type PaymentEvent = PaymentEventData & Envelope

export const paymentProcessedEvent = eventSchema(paymentProcessedData)
export const paymentFailedEvent = eventSchema(paymentFailedData)
export const paymentRefundedEvent = eventSchema(paymentRefundedData)
export const paymentVoidedEvent = eventSchema(paymentVoidedData)

/** `payment-events`: the outcome of every order’s payment. */
export const paymentEvents = defineEventTopic({
  topic: PAYMENT_EVENTS_TOPIC,
  description:
    'Every event of every payment (seed 004). The envelope (eventId, aggregateId = payment-<orderId>, occurredOn, version, eventType, schemaVersion, correlationId, causationId) and the event’s fields share one JSON object; every event names its orderId.',
  key: {
    description: 'the order id: all events of one order’s payment are on one partition, in version order',
    of: (event) => event.orderId,
  },
  messages: {
    PaymentProcessed: {
      schema: paymentProcessedEvent,
      description: 'The order’s payment was captured (at most once per order), with the gateway’s reference.',
    },
    PaymentFailed: {
      schema: paymentFailedEvent,
      description: 'The gateway declined the order’s payment, with a stable code and the reason.',
    },
    PaymentRefunded: {
      schema: paymentRefundedEvent,
      description: 'A captured payment was given back in full (the order was cancelled after it was paid).',
    },
    PaymentVoided: {
      schema: paymentVoidedEvent,
      description: 'A refund came before any capture: the payment is closed and can no longer be captured.',
    },
  },
})

/** The wire shape of a payment event (decimal amounts). */
export type PaymentEventWire = TopicWire<typeof paymentEvents>

export const paymentEventsTopic: TopicContract<'eventType'> = paymentEvents.contract

/** Decodes a `payment-events` message into a typed event (amounts in minor units). */
export const decodePaymentEvent = paymentEvents.decode

/** The wire form of a payment event: decimal amounts, ready for `JSON.stringify`. */
export const encodePaymentEvent = paymentEvents.encode

/**
 * The reason an order is cancelled for when its payment failed. The saga's RejectOrder and the
 * order service's choreography mapping both use it, so both modes leave the same reason on the order
 * (the order service treats a second cancel with another reason as a conflict).
 */
export function cancellationReasonFor(failed: Pick<PaymentFailed, 'reason'>): string {
  // The order's reason field holds 500 characters; the gateway's reason is not ours to bound.
  return `payment failed: ${failed.reason}`.slice(0, 500)
}
