import type { z } from 'zod'
import { type Envelope, envelopeSchema } from './envelope.ts'

/**
 * The contracts registry: which event types a topic may carry and the schema of each, per schema
 * version. Consumers decode through it at the boundary, so a handler only ever sees a valid event
 * and anything else is a poison message with a reason.
 */
export interface EventContract<Schema extends z.ZodType = z.ZodType> {
  eventType: string
  /** Schemas by `schemaVersion`; the highest is what producers write. */
  versions: Record<number, Schema>
}

/**
 * A topic and what travels on it: the unit the AsyncAPI document and the decoders are built from.
 * Every service's contracts module exports its topics (`orderTopics`, `paymentTopics`, …).
 */
export interface TopicContract {
  topic: string
  description: string
  /** What the message key is, e.g. 'the order id': every message of one key keeps its order. */
  key: string
  /** The field naming each message's type: `eventType` on event topics, `commandType` on command topics. */
  discriminator: 'eventType' | 'commandType'
  /** One entry per message type; for command topics `eventType` holds the commandType. */
  messages: EventContract[]
}

export type DecodeResult =
  | { ok: true; event: Envelope & Record<string, unknown> }
  | { ok: false; reason: 'NOT_JSON' | 'INVALID_ENVELOPE' | 'UNKNOWN_EVENT_TYPE' | 'INVALID_EVENT'; message: string }

export interface ContractRegistry {
  decode(raw: string): DecodeResult
  has(eventType: string): boolean
}

export function createRegistry(contracts: EventContract[]): ContractRegistry {
  const byType = new Map(contracts.map((c) => [c.eventType, c]))
  return {
    has: (eventType) => byType.has(eventType),
    decode(raw) {
      const parsed = parseJson(raw)
      if (!parsed.ok) return parsed
      const json = parsed.json
      const envelope = envelopeSchema.safeParse(json)
      if (!envelope.success) {
        return { ok: false, reason: 'INVALID_ENVELOPE', message: describeIssues(envelope.error.issues) }
      }
      const contract = byType.get(envelope.data.eventType)
      if (!contract) {
        return {
          ok: false,
          reason: 'UNKNOWN_EVENT_TYPE',
          message: `unknown eventType '${envelope.data.eventType}'`,
        }
      }
      const schema = contract.versions[envelope.data.schemaVersion]
      if (!schema) {
        return {
          ok: false,
          reason: 'INVALID_EVENT',
          message: `${envelope.data.eventType} has no schemaVersion ${envelope.data.schemaVersion}`,
        }
      }
      const body = schema.safeParse(json)
      if (!body.success) {
        return { ok: false, reason: 'INVALID_EVENT', message: describeIssues(body.error.issues) }
      }
      return { ok: true, event: { ...envelope.data, ...(body.data as Record<string, unknown>) } }
    },
  }
}

/** The first step of every decoder: a message that is not JSON is a poison message. */
export function parseJson(
  raw: string,
): { ok: true; json: unknown } | { ok: false; reason: 'NOT_JSON'; message: string } {
  try {
    return { ok: true, json: JSON.parse(raw) }
  } catch (error) {
    return { ok: false, reason: 'NOT_JSON', message: `message is not JSON: ${(error as Error).message}` }
  }
}

export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ')
}
