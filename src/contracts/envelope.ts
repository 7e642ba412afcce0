import { z } from 'zod'

/**
 * The event envelope every event carries on the wire (seed 001's shape): the envelope fields and
 * the event's own fields side by side at the top level of one JSON object.
 *
 * W3C trace context (`traceparent`, `tracestate`) travels in message headers, not in the body, so
 * that tracing tools can read it without parsing the event. `correlationId` and `causationId` are
 * in the body because they are part of the business history the event store keeps.
 */
export const envelopeSchema = z.looseObject({
  eventId: z.uuid({ version: 'v7', error: 'eventId must be a UUIDv7' }),
  aggregateId: z.string().min(1, 'aggregateId must not be empty'),
  occurredOn: z.iso.datetime({ offset: false, error: 'occurredOn must be an ISO-8601 UTC timestamp' }),
  version: z.number().int().positive('version must be a positive whole number'),
  eventType: z.string().regex(/^[A-Z][A-Za-z0-9]*$/, 'eventType must be PascalCase'),
  schemaVersion: z.number().int().positive().default(1),
  correlationId: z.string().min(1).optional(),
  causationId: z.string().min(1).optional(),
})

export type Envelope = z.infer<typeof envelopeSchema>

/** Envelope fields; everything else at the top level belongs to the event itself. */
export const ENVELOPE_FIELDS = [
  'eventId',
  'aggregateId',
  'occurredOn',
  'version',
  'eventType',
  'schemaVersion',
  'correlationId',
  'causationId',
] as const

/** Message headers the platform writes and reads. */
export const HeaderNames = {
  eventType: 'event-type',
  schemaVersion: 'schema-version',
  contentType: 'content-type',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
} as const
