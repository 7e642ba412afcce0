import { z } from 'zod'
import { timestamp } from './timestamp.ts'

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
  /** Any ISO 8601 date-time on the way in (see timestamp.ts); UTC `…Z` once decoded. */
  occurredOn: timestamp,
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

/**
 * The command envelope (seed 000's shape): commands travel on their service's commands topic with
 * these fields beside the command's own. `orderId` is optional here because not every command need
 * address an order; a service's command schemas require the id they address.
 */
export const commandEnvelopeSchema = z.looseObject({
  commandId: z.uuid({ error: 'commandId must be a UUID' }),
  commandType: z.string({ error: 'commandType must be a string' }).min(1, 'commandType must not be empty'),
  orderId: z.string({ error: 'orderId must be a string' }).trim().min(1, 'orderId must not be empty').optional(),
  /** Any ISO 8601 date-time on the way in (see timestamp.ts); UTC `…Z` once decoded. */
  issuedOn: timestamp,
  correlationId: z.string().min(1).optional(),
  causationId: z.string().min(1).optional(),
  /** The aggregate version the sender last saw; the application layer checks it against the stream. */
  expectedVersion: z.number().int().nonnegative('expectedVersion must be a whole number ≥ 0').optional(),
  /** Commands have one version so far; the field is read so that a second one can be told apart. */
  schemaVersion: z.number().int().positive().optional(),
})

export type CommandEnvelope = z.infer<typeof commandEnvelopeSchema>

/** Message headers the platform writes and reads. */
export const HeaderNames = {
  /** The event's id, so that a consumer can log and deduplicate without parsing the body. */
  eventId: 'event-id',
  eventType: 'event-type',
  schemaVersion: 'schema-version',
  contentType: 'content-type',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
} as const

/** An event's wire schema: the envelope and the event's own fields in one object. */
export const eventSchema = <Shape extends z.ZodRawShape>(data: z.ZodObject<Shape>) => envelopeSchema.extend(data.shape)
