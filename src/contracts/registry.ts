import type { z } from 'zod'
import { type CommandEnvelope, commandEnvelopeSchema, type Envelope, envelopeSchema } from './envelope.ts'
import { findUnsafeText } from './text.ts'

/**
 * The contracts registry: which message types a topic may carry and the schema of each, per schema
 * version. Consumers decode events and commands alike through it at the boundary, so a handler only
 * ever sees a valid message and anything else is a poison message with a reason.
 */
export interface EventContract<Schema extends z.ZodType = z.ZodType> {
  /** The message type: the eventType on event topics, the commandType on command topics. */
  eventType: string
  /** Schemas by `schemaVersion`; the highest is what producers write. */
  versions: Record<number, Schema>
  /**
   * Other names senders use for this type (the Create-Order saga says `ApproveOrder` for
   * `ConfirmOrder`). The registry resolves them at the boundary, so handlers know one name per intent.
   */
  aliases?: readonly string[]
  /** What the message means, for the AsyncAPI document. */
  description?: string
}

/** A command's contract: the same shape, named for what it describes. */
export type MessageContract<Schema extends z.ZodType = z.ZodType> = EventContract<Schema>

export type Discriminator = 'eventType' | 'commandType'

/**
 * A topic and what travels on it: the unit the AsyncAPI document and the decoders are built from.
 * Every service's contracts module exports its topics (`orderTopics`, `paymentTopics`, …).
 */
export interface TopicContract<D extends Discriminator = Discriminator> {
  topic: string
  description: string
  /** What the message key is, e.g. 'the order id': every message of one key keeps its order. */
  key: string
  /** The field naming each message's type: `eventType` on event topics, `commandType` on command topics. */
  discriminator: D
  /** One entry per message type; for command topics `eventType` holds the commandType. */
  messages: EventContract[]
  /**
   * The envelope every message on the topic must have, when it is stricter than the platform's
   * (`envelopeSchema` for events, `commandEnvelopeSchema` for commands): `order_commands` requires
   * the `orderId` that the generic command envelope leaves optional. A message that fails it is
   * INVALID_ENVELOPE.
   */
  envelope?: z.ZodType<Record<string, unknown>>
}

/**
 * Why a message could not be decoded. These strings are stable: dead-letter records carry them and
 * operators filter on them.
 */
export const DecodeReasons = {
  eventType: { unknown: 'UNKNOWN_EVENT_TYPE', invalid: 'INVALID_EVENT' },
  commandType: { unknown: 'UNKNOWN_COMMAND_TYPE', invalid: 'INVALID_COMMAND' },
} as const

export type DecodeReason<D extends Discriminator = Discriminator> =
  | 'NOT_JSON'
  | 'INVALID_ENVELOPE'
  | (typeof DecodeReasons)[D]['unknown']
  | (typeof DecodeReasons)[D]['invalid']

export type DecodeFailure<D extends Discriminator = 'eventType'> = {
  ok: false
  reason: DecodeReason<D>
  message: string
}

/** A decoded message: `event` on event topics, `command` on command topics. */
export type Decoded<D extends Discriminator> = D extends 'commandType'
  ? { ok: true; command: CommandEnvelope & Record<string, unknown> }
  : { ok: true; event: Envelope & Record<string, unknown> }

export type DecodeResult<D extends Discriminator = 'eventType'> = Decoded<D> | DecodeFailure<D>

export interface ContractRegistry<D extends Discriminator = 'eventType'> {
  decode(raw: string): DecodeResult<D>
  /** Whether the registry knows this type, by its name or an alias. */
  has(type: string): boolean
  /** The type a name stands for (itself, or what it is an alias of), or undefined if unknown. */
  resolve(type: string): string | undefined
}

/**
 * A registry over a list of event contracts (an event topic), or over a topic, whose discriminator
 * says whether it carries events or commands. The steps and reasons are the same for both:
 * not JSON → NOT_JSON; text the database cannot store (NUL, unpaired surrogates) → INVALID_EVENT /
 * INVALID_COMMAND; the envelope fails → INVALID_ENVELOPE; the type is unknown →
 * UNKNOWN_EVENT_TYPE / UNKNOWN_COMMAND_TYPE; the message fails its type's schema (or there is no
 * schema for its schemaVersion) → INVALID_EVENT / INVALID_COMMAND.
 */
export function createRegistry(contracts: readonly EventContract[]): ContractRegistry<'eventType'>
export function createRegistry<D extends Discriminator>(topic: TopicContract<D>): ContractRegistry<D>
export function createRegistry(source: readonly EventContract[] | TopicContract): ContractRegistry<Discriminator> {
  const contracts = isTopic(source) ? source.messages : source
  const discriminator: Discriminator = isTopic(source) ? source.discriminator : 'eventType'
  const envelopeOf: z.ZodType<Record<string, unknown>> =
    (isTopic(source) ? source.envelope : undefined) ??
    (discriminator === 'eventType' ? envelopeSchema : commandEnvelopeSchema)
  const reasons = DecodeReasons[discriminator]
  const decoded = (message: Record<string, unknown>) =>
    (discriminator === 'eventType' ? { ok: true, event: message } : { ok: true, command: message }) as Decoded<
      typeof discriminator
    >

  const byName = new Map<string, EventContract>()
  for (const contract of contracts) {
    for (const name of [contract.eventType, ...(contract.aliases ?? [])]) {
      const taken = byName.get(name)
      if (taken && taken !== contract) {
        throw new Error(`contracts: '${name}' names both ${taken.eventType} and ${contract.eventType}`)
      }
      byName.set(name, contract)
    }
  }
  const resolve = (type: string) => byName.get(type)?.eventType

  return {
    has: (type) => byName.has(type),
    resolve,
    decode(raw) {
      const parsed = parseJson(raw)
      if (!parsed.ok) return parsed
      const json = parsed.json
      // Text the database could not store is refused here, with the field, not deep in a transaction.
      const unsafe = findUnsafeText(json)
      if (unsafe) return { ok: false, reason: reasons.invalid, message: `${unsafe.field}: ${unsafe.message}` }
      const envelope = envelopeOf.safeParse(json)
      if (!envelope.success) {
        return { ok: false, reason: 'INVALID_ENVELOPE', message: describeIssues(envelope.error.issues) }
      }
      const named = String(envelope.data[discriminator])
      const contract = byName.get(named)
      if (!contract) {
        return { ok: false, reason: reasons.unknown, message: `unknown ${discriminator} '${named}'` }
      }
      const schemaVersion = (envelope.data.schemaVersion as number | undefined) ?? 1
      const schema = contract.versions[schemaVersion]
      if (!schema) {
        return {
          ok: false,
          reason: reasons.invalid,
          message: `${contract.eventType} has no schemaVersion ${schemaVersion}`,
        }
      }
      // An alias is replaced before the schema sees the message, so schemas name one type each.
      const body = schema.safeParse({ ...(json as Record<string, unknown>), [discriminator]: contract.eventType })
      if (!body.success) {
        return { ok: false, reason: reasons.invalid, message: describeIssues(body.error.issues) }
      }
      return decoded({ ...envelope.data, ...(body.data as Record<string, unknown>) })
    },
  }
}

const isTopic = (source: readonly EventContract[] | TopicContract): source is TopicContract => !Array.isArray(source)

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

/**
 * The decoder of one topic, typed as the topic's message type: the registry has validated each
 * message against its type's schema, which is what makes the narrowing sound.
 */
export function eventDecoder<Event>(registry: ContractRegistry<'eventType'>) {
  return (raw: string): { ok: true; event: Event } | DecodeFailure<'eventType'> => {
    const result = registry.decode(raw)
    return result.ok ? { ok: true, event: result.event as unknown as Event } : result
  }
}

export function commandDecoder<Command>(registry: ContractRegistry<'commandType'>) {
  return (raw: string): { ok: true; command: Command } | DecodeFailure<'commandType'> => {
    const result = registry.decode(raw)
    return result.ok ? { ok: true, command: result.command as unknown as Command } : result
  }
}
