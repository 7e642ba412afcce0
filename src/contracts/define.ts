import { z } from 'zod'
import type { CommandEnvelope, Envelope } from './envelope.ts'
import {
  type ContractRegistry,
  createRegistry,
  type DecodeFailure,
  type Discriminator,
  type EventContract,
  type TopicContract,
} from './registry.ts'

/**
 * A topic declared once: `defineEventTopic` and `defineCommandTopic` take the topic's name, what its
 * key is and one schema per message type, and give back everything the rest of the system needs of
 * it, typed from those schemas: the decoder consumers use (a poison message comes back with its
 * reason), the encoder producers use (minor units to decimal on the wire), the message key of each
 * message and the topic's contract for the AsyncAPI document and the registry.
 *
 * ```ts
 * export const dispatchEvents = defineEventTopic({
 *   topic: 'dispatch-events',
 *   description: 'Every event of every shipment.',
 *   key: { description: 'the order id', of: (event) => event.orderId },
 *   messages: {
 *     ShipmentQuoted: { schema: shipmentQuotedEvent, description: 'The shipping cost was worked out.' },
 *     OrderDispatched: { schema: orderDispatchedEvent, description: 'The order left.' },
 *   },
 * })
 * dispatchEvents.decode(raw) // { ok: true, event: DispatchEvent } | { ok: false, reason, message }
 * ```
 */

/** One message type of a topic: its current schema, and what it means. */
export interface MessageDefinition<Schema extends z.ZodType = z.ZodType> {
  /** The schema producers write: the envelope and the message's fields in one object. */
  schema: Schema
  description: string
  /** The `schemaVersion` of `schema` (default 1). */
  version?: number
  /** Schemas of earlier versions this topic still reads, by `schemaVersion`. */
  earlier?: Record<number, z.ZodType>
  /** Other names senders use for this type; resolved to the type's own name at the boundary. */
  aliases?: readonly string[]
}

type Messages = Record<string, MessageDefinition>

/** The decoded type of a defined topic's messages (`TopicMessage<typeof orderEvents>`). */
export type TopicMessage<T> = T extends EventTopic<infer E> ? E : T extends CommandTopic<infer C> ? C : never
/** The wire type of a defined topic's messages: what its encoder returns. */
export type TopicWire<T> =
  T extends EventTopic<unknown, infer W> ? W : T extends CommandTopic<unknown, infer W> ? W : never

/** The decoded type of a topic's messages: the union of its schemas' outputs. */
export type MessageOf<M extends Messages> = { [K in keyof M]: z.output<M[K]['schema']> }[keyof M]
/** The wire type of a topic's messages: what its encoder returns. */
export type WireOf<M extends Messages> = { [K in keyof M]: z.input<M[K]['schema']> }[keyof M]

interface DefinedTopic<D extends Discriminator, Message, Wire> {
  /** The topic's name. */
  topic: string
  /** The topic's contract: what the AsyncAPI document and the registry are built from. */
  contract: TopicContract<D>
  registry: ContractRegistry<D>
  /** The message types the topic carries. */
  types: readonly string[]
  /** The wire form of a message: decimal amounts, ready for `JSON.stringify`. */
  encode(message: Message): Wire
  /** The message key of a message: every message of one key keeps its order. */
  keyOf(message: Message): string
}

export interface EventTopic<Event = Envelope, Wire = unknown> extends DefinedTopic<'eventType', Event, Wire> {
  decode(raw: string): { ok: true; event: Event } | DecodeFailure<'eventType'>
}

export interface CommandTopic<Command = CommandEnvelope, Wire = unknown>
  extends DefinedTopic<'commandType', Command, Wire> {
  decode(raw: string): { ok: true; command: Command } | DecodeFailure<'commandType'>
}

interface TopicDefinition<M extends Messages> {
  topic: string
  description: string
  /** What the key is (for the document), and how a message names it. */
  key: { description: string; of: (message: MessageOf<M>) => string }
  messages: M
}

export function defineEventTopic<const M extends Messages>(
  definition: TopicDefinition<M> & {
    /**
     * The envelope every event must have, when it is not `envelopeSchema`: seed 002's `orders.events`
     * names its events in SCREAMING_SNAKE_CASE, which the platform's envelope does not allow.
     */
    envelope?: z.ZodType<Record<string, unknown>>
  },
): EventTopic<MessageOf<M>, WireOf<M>> {
  const defined = define('eventType', definition)
  return {
    ...defined,
    decode(raw) {
      const result = defined.registry.decode(raw)
      // The registry validated the message against its type's schema: that is what makes the narrowing sound.
      return result.ok ? { ok: true, event: result.event as MessageOf<M> } : result
    },
  }
}

export function defineCommandTopic<const M extends Messages>(
  definition: TopicDefinition<M> & {
    /** The envelope every command must have, when stricter than `commandEnvelopeSchema`. */
    envelope?: z.ZodType<Record<string, unknown>>
  },
): CommandTopic<MessageOf<M>, WireOf<M>> {
  const defined = define('commandType', definition)
  return {
    ...defined,
    decode(raw) {
      const result = defined.registry.decode(raw)
      return result.ok ? { ok: true, command: result.command as MessageOf<M> } : result
    },
  }
}

function define<D extends Discriminator, M extends Messages>(
  discriminator: D,
  definition: TopicDefinition<M> & { envelope?: z.ZodType<Record<string, unknown>> },
): DefinedTopic<D, MessageOf<M>, WireOf<M>> {
  const entries = Object.entries(definition.messages)
  const contracts: EventContract[] = entries.map(([type, message]) => ({
    eventType: type,
    versions: { ...message.earlier, [message.version ?? 1]: message.schema },
    description: message.description,
    ...(message.aliases ? { aliases: message.aliases } : {}),
  }))
  const contract: TopicContract<D> = {
    topic: definition.topic,
    description: definition.description,
    key: definition.key.description,
    discriminator,
    messages: contracts,
    ...(definition.envelope ? { envelope: definition.envelope } : {}),
  }
  const schemas = new Map(entries.map(([type, message]) => [type, message.schema]))
  return {
    topic: definition.topic,
    contract,
    registry: createRegistry(contract),
    types: entries.map(([type]) => type),
    keyOf: definition.key.of,
    encode(message) {
      const type = (message as Record<string, unknown>)[discriminator] as string
      const schema = schemas.get(type)
      if (!schema) throw new Error(`${definition.topic} carries no ${discriminator} '${type}'`)
      return z.encode(schema, message as never) as WireOf<M>
    },
  }
}
