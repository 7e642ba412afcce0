import { z } from 'zod'
import type { CommandEnvelope, Envelope } from './envelope.ts'
import {
  type ContractRegistry,
  createRegistry,
  type DecodeFailure,
  type Discriminator,
  type EnvelopeField,
  type EventContract,
  type TopicContract,
  type UpcastResult,
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
 *
 * A type whose schema changed has a version per change (see the README's "Schema evolution"):
 * `schema` is the newest, which writers write, and `earlier` every version before it, each with
 * the upcaster to the next, so that readers read every version as the newest.
 *
 * ```ts
 * ShipmentQuoted: {
 *   schema: shipmentQuotedEventV2, // `carrier` added
 *   version: 2,
 *   earlier: { 1: earlierVersion(shipmentQuotedEvent, (v1) => ({ ...v1, carrier: 'unknown' })) },
 *   description: 'The shipping cost of an order was worked out.',
 * },
 * ```
 */

/**
 * An earlier version of a message type, still read: its schema, and how it becomes the next
 * version. `upcast` maps wire form to wire form, without the envelope: it gets the message's own
 * fields as this version's writers sent them (`WireData<typeof schema>`, already checked against
 * `schema`) and returns the next version's (`WireData` of the next schema), which the next schema
 * then checks; the registry keeps the envelope and sets the type and `schemaVersion`. Declared as a
 * method so that an upcaster typed with `WireData` fits.
 */
export interface EarlierVersion {
  /** The schema this version's writers wrote: the envelope and the message's fields in one object. */
  schema: z.ZodType
  upcast(data: Record<string, unknown>): Record<string, unknown>
}

/**
 * An earlier version, its upcaster typed from its schema: `data` is this version's `WireData`.
 * Prefer it to a `{ schema, upcast }` literal whose `upcast` has no parameter type: such a function
 * in `messages` leaves TypeScript unable to type `key.of` from the schemas (it reads `unknown`)
 * unless `key` comes after `messages`.
 *
 * ```ts
 * earlier: { 1: earlierVersion(shipmentQuotedEvent, (v1) => ({ ...v1, carrier: 'unknown' })) }
 * ```
 */
export function earlierVersion<Schema extends z.ZodType>(
  schema: Schema,
  upcast: (data: WireData<Schema>) => Record<string, unknown>,
): EarlierVersion {
  return { schema, upcast: upcast as EarlierVersion['upcast'] }
}

/**
 * A message's own fields in wire form (decimal amounts, timestamps as sent), without the envelope:
 * what an upcaster maps and what the event store keeps as an event's `data`.
 */
export type WireData<Schema extends z.ZodType> = {
  [K in keyof z.input<Schema> as K extends EnvelopeField ? never : K]: z.input<Schema>[K]
}

/** One message type of a topic: its current schema, and what it means. */
export interface MessageDefinition<Schema extends z.ZodType = z.ZodType> {
  /** The schema producers write, the newest: the envelope and the message's fields in one object. */
  schema: Schema
  description: string
  /** The `schemaVersion` of `schema` (default 1). */
  version?: number
  /**
   * The versions before `version`, by `schemaVersion`: every one of 1 to `version - 1`, each with its
   * upcaster to the next. A gap, a missing upcaster or a version not below `version` is refused when
   * the topic is defined.
   */
  earlier?: Record<number, EarlierVersion>
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
  /**
   * The wire form of a message: decimal amounts, ready for `JSON.stringify`. Checked against the
   * newest schema, and marked with its `schemaVersion` once the type has more than one.
   */
  encode(message: Message): Wire
  /** The message key of a message: every message of one key keeps its order. */
  keyOf(message: Message): string
  /**
   * The newest `schemaVersion` of a type (or alias): what its writers write, so what a service
   * records its events at. Throws for a type the topic does not carry.
   */
  latestVersion(type: string): number
  /**
   * Stored data (an event's own fields in wire form, as the event store keeps them) of
   * `schemaVersion`, brought to the type's newest version, still in wire form: see
   * `ContractRegistry.upcast`.
   */
  upcast(type: string, schemaVersion: number, data: Record<string, unknown>): UpcastResult<D>
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
  const contracts: EventContract[] = entries.map(([type, message]) => {
    const newest = message.version ?? 1
    const earlier = Object.entries(message.earlier ?? {})
    for (const [version] of earlier) {
      if (Number(version) >= newest) {
        throw new Error(
          `contracts: ${definition.topic} ${type}: earlier lists schemaVersion ${version}, which is not below the newest (${newest})`,
        )
      }
    }
    // The registry refuses the rest (a gap, a version without its upcaster), naming topic and type.
    return {
      eventType: type,
      versions: {
        ...Object.fromEntries(earlier.map(([version, each]) => [version, each.schema])),
        [newest]: message.schema,
      },
      ...(earlier.length > 0
        ? { upcasters: Object.fromEntries(earlier.map(([version, each]) => [version, each.upcast])) }
        : {}),
      description: message.description,
      ...(message.aliases ? { aliases: message.aliases } : {}),
    }
  })
  const contract: TopicContract<D> = {
    topic: definition.topic,
    description: definition.description,
    key: definition.key.description,
    discriminator,
    messages: contracts,
    ...(definition.envelope ? { envelope: definition.envelope } : {}),
  }
  const schemas = new Map(entries.map(([type, message]) => [type, message.schema]))
  const registry = createRegistry(contract)
  return {
    topic: definition.topic,
    contract,
    registry,
    types: entries.map(([type]) => type),
    keyOf: definition.key.of,
    latestVersion(type) {
      const version = registry.latestVersion(type)
      if (version === undefined) throw new Error(`${definition.topic} carries no ${discriminator} '${type}'`)
      return version
    },
    upcast: registry.upcast,
    encode(message) {
      const type = (message as Record<string, unknown>)[discriminator] as string
      const schema = schemas.get(type)
      if (!schema) throw new Error(`${definition.topic} carries no ${discriminator} '${type}'`)
      // Writers write the newest version, and say so: a reader takes no schemaVersion for version 1.
      const newest = registry.latestVersion(type) ?? 1
      return z.encode(
        schema,
        (newest > 1 ? { ...(message as object), schemaVersion: newest } : message) as never,
      ) as WireOf<M>
    },
  }
}
