import type { z } from 'zod'
import {
  type CommandEnvelope,
  commandEnvelopeSchema,
  ENVELOPE_FIELDS,
  type Envelope,
  envelopeSchema,
} from './envelope.ts'
import { findUnsafeText } from './text.ts'

/**
 * The contracts registry: which message types a topic may carry and the schema of each, per schema
 * version. Consumers decode events and commands alike through it at the boundary, so a handler only
 * ever sees a valid message and anything else is a poison message with a reason.
 */
export interface EventContract<Schema extends z.ZodType = z.ZodType> {
  /** The message type: the eventType on event topics, the commandType on command topics. */
  eventType: string
  /**
   * Schemas by `schemaVersion`, every version from 1 to the newest; the newest is what producers
   * write, and what every older version is upcast to when it is read.
   */
  versions: Record<number, Schema>
  /** `upcasters[n]` turns version n into version n + 1: one for every version below the newest. */
  upcasters?: Record<number, Upcaster>
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
 * Turns a message of schema version n into version n + 1, in wire form: it gets the message's own
 * fields as version n's writer sent them (decimal amounts, timestamps as strings: `z.input` of
 * version n's schema, already checked against it) without the envelope, and returns version
 * n + 1's own fields, which version n + 1's schema then checks. The registry keeps the envelope as
 * it was and sets the type and `schemaVersion` itself, so an upcaster neither sees nor writes them:
 * that is also the shape the event store keeps an event's `data` in, so the same upcaster serves
 * the consumers and the store's read path. It must be pure (no clock, no I/O): old messages are
 * read again and again, and must read the same each time.
 *
 * ```ts
 * const v1ToV2: Upcaster = ({ carrier, ...rest }) => ({ ...rest, carrier: { name: carrier } })
 * ```
 */
export type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>

/**
 * The fields the registry keeps out of an upcaster's reach, by topic kind: the platform's envelope.
 * A command's `orderId` is not among them: a command's body names what it addresses.
 */
const ENVELOPE_FIELDS_OF: Record<Discriminator, readonly string[]> = {
  eventType: ENVELOPE_FIELDS,
  commandType: [
    'commandId',
    'commandType',
    'issuedOn',
    'correlationId',
    'causationId',
    'expectedVersion',
    'schemaVersion',
  ],
}

/** The envelope fields an upcaster does not see (events' and commands' alike), for typing its data. */
export type EnvelopeField =
  | (typeof ENVELOPE_FIELDS)[number]
  | 'commandId'
  | 'commandType'
  | 'issuedOn'
  | 'expectedVersion'

/**
 * Why a message could not be decoded. These strings are stable: dead-letter records carry them and
 * operators filter on them. `UNKNOWN_SCHEMA_VERSION`: the message is of a schema version newer than
 * this reader knows; upgrade the reader, then redrive it.
 */
export const DecodeReasons = {
  eventType: { unknown: 'UNKNOWN_EVENT_TYPE', invalid: 'INVALID_EVENT', newerVersion: 'UNKNOWN_SCHEMA_VERSION' },
  commandType: { unknown: 'UNKNOWN_COMMAND_TYPE', invalid: 'INVALID_COMMAND', newerVersion: 'UNKNOWN_SCHEMA_VERSION' },
} as const

export type DecodeReason<D extends Discriminator = Discriminator> =
  | 'NOT_JSON'
  | 'INVALID_ENVELOPE'
  | (typeof DecodeReasons)[D]['unknown']
  | (typeof DecodeReasons)[D]['invalid']
  | (typeof DecodeReasons)[D]['newerVersion']

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

/** Stored data brought to the newest schema version: its own fields, in wire form. */
export type UpcastResult<D extends Discriminator = 'eventType'> =
  | { ok: true; data: Record<string, unknown>; schemaVersion: number }
  | DecodeFailure<D>

export interface ContractRegistry<D extends Discriminator = 'eventType'> {
  /**
   * A message of the topic, checked, at the newest schema version of its type: an older version is
   * checked against its own schema, upcast version by version, and checked against the newest,
   * with `schemaVersion` then the newest.
   */
  decode(raw: string): DecodeResult<D>
  /** Whether the registry knows this type, by its name or an alias. */
  has(type: string): boolean
  /** The type a name stands for (itself, or what it is an alias of), or undefined if unknown. */
  resolve(type: string): string | undefined
  /** The newest `schemaVersion` of a type (or alias), which is what writers write; undefined if unknown. */
  latestVersion(type: string): number | undefined
  /**
   * Stored data (a message's own fields in wire form, without the envelope, as the event store
   * keeps them) of `schemaVersion`, brought to the type's newest version without JSON parsing: for
   * the event store's read path. Data already at the newest version comes back as it is, unchecked
   * (as the store reads it today); older data is checked against each version's schema on its way
   * up, except for the envelope fields it does not have. The reasons are `decode`'s.
   */
  upcast(type: string, schemaVersion: number, data: Record<string, unknown>): UpcastResult<D>
}

/**
 * A registry over a list of event contracts (an event topic), or over a topic, whose discriminator
 * says whether it carries events or commands. The steps and reasons are the same for both:
 * not JSON → NOT_JSON; text the database cannot store (NUL, unpaired surrogates) → INVALID_EVENT /
 * INVALID_COMMAND; the envelope fails → INVALID_ENVELOPE; the type is unknown →
 * UNKNOWN_EVENT_TYPE / UNKNOWN_COMMAND_TYPE; the schemaVersion is newer than the type's newest →
 * UNKNOWN_SCHEMA_VERSION; the message fails its version's schema, an upcaster or the newest schema
 * (or there is no schema for its schemaVersion) → INVALID_EVENT / INVALID_COMMAND.
 *
 * Throws when a type's versions could not all be read: a version missing between 1 and the newest,
 * a version below the newest without its upcaster, or an upcaster from the newest or above. A topic
 * that could not read its own older messages is refused at start-up, not on the first old message.
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
  const invalid = (message: string): DecodeFailure<Discriminator> => ({ ok: false, reason: reasons.invalid, message })
  const envelopeFields = new Set(ENVELOPE_FIELDS_OF[discriminator])

  const latest = new Map<EventContract, number>()
  for (const contract of contracts) {
    latest.set(contract, checkVersions(isTopic(source) ? source.topic : 'contracts', contract))
  }
  const latestOf = (contract: EventContract) => latest.get(contract) ?? 1

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

  /**
   * Whether `message` fails `schema`, and how. `partial`: the message is stored data, which has no
   * envelope, so what the schema says of a missing envelope field is not the data's fault.
   */
  const problemsOf = (schema: z.ZodType, message: Record<string, unknown>, partial: boolean) => {
    const result = schema.safeParse(message)
    if (result.success) return undefined
    const issues = partial
      ? result.error.issues.filter((i) => !(envelopeFields.has(String(i.path[0])) && !(String(i.path[0]) in message)))
      : result.error.issues
    return issues.length > 0 ? describeIssues(issues) : undefined
  }

  /** A schemaVersion the type cannot be read at, and why; undefined when it can. */
  const unreadable = (contract: EventContract, schemaVersion: unknown): DecodeFailure<Discriminator> | undefined => {
    const newest = latestOf(contract)
    if (typeof schemaVersion === 'number' && schemaVersion > newest) {
      return {
        ok: false,
        reason: reasons.newerVersion,
        message: `${contract.eventType} schemaVersion ${schemaVersion} is newer than this reader knows (${newest}): upgrade the consumer`,
      }
    }
    if (typeof schemaVersion !== 'number' || !contract.versions[schemaVersion]) {
      return invalid(`${contract.eventType} has no schemaVersion ${schemaVersion}`)
    }
    return undefined
  }

  /**
   * `message` (wire form, at `from`) brought to the newest version: each version's schema checks it,
   * then its upcaster maps its own fields to the next version's. The envelope stays as it was.
   */
  const upcastFrom = (
    contract: EventContract,
    from: number,
    message: Record<string, unknown>,
    partial: boolean,
  ): { ok: true; message: Record<string, unknown> } | DecodeFailure<Discriminator> => {
    const type = contract.eventType
    let current = message
    for (let version = from; version < latestOf(contract); version++) {
      const schema = contract.versions[version]
      const upcaster = contract.upcasters?.[version]
      // checkVersions saw to both; this keeps the compiler and a hand-built contract honest.
      if (!schema || !upcaster) return invalid(`${type} has no schemaVersion ${version} to upcast`)
      const problems = problemsOf(schema, current, partial)
      if (problems) return invalid(`${type} schemaVersion ${version}: ${problems}`)
      const envelope: Record<string, unknown> = {}
      const own: Record<string, unknown> = {}
      for (const [field, value] of Object.entries(current)) (envelopeFields.has(field) ? envelope : own)[field] = value
      let next: unknown
      try {
        next = upcaster(own)
      } catch (error) {
        return invalid(`${type} schemaVersion ${version}: its upcaster failed: ${(error as Error)?.message ?? error}`)
      }
      if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        return invalid(`${type} schemaVersion ${version}: its upcaster returned no object`)
      }
      current = { ...next, ...envelope, [discriminator]: type, schemaVersion: version + 1 }
    }
    return { ok: true, message: current }
  }

  return {
    has: (type) => byName.has(type),
    resolve,
    latestVersion(type) {
      const contract = byName.get(type)
      return contract ? latestOf(contract) : undefined
    },
    decode(raw) {
      const parsed = parseJson(raw)
      if (!parsed.ok) return parsed
      const json = parsed.json
      // Text the database could not store is refused here, with the field, not deep in a transaction.
      const unsafe = findUnsafeText(json)
      if (unsafe) return invalid(`${unsafe.field}: ${unsafe.message}`)
      const envelope = envelopeOf.safeParse(json)
      if (!envelope.success) {
        return { ok: false, reason: 'INVALID_ENVELOPE', message: describeIssues(envelope.error.issues) }
      }
      const named = String(envelope.data[discriminator])
      const contract = byName.get(named)
      if (!contract) {
        return { ok: false, reason: reasons.unknown, message: `unknown ${discriminator} '${named}'` }
      }
      const schemaVersion = envelope.data.schemaVersion ?? 1
      const refused = unreadable(contract, schemaVersion)
      if (refused) return refused
      const newest = latestOf(contract)
      // An alias is replaced before the schema sees the message, so schemas name one type each.
      let message: Record<string, unknown> = {
        ...(json as Record<string, unknown>),
        [discriminator]: contract.eventType,
      }
      const upcast = (schemaVersion as number) < newest
      if (upcast) {
        const result = upcastFrom(contract, schemaVersion as number, message, false)
        if (!result.ok) return result
        message = result.message
      }
      const body = (contract.versions[newest] as z.ZodType).safeParse(message)
      // The envelope lets other fields through: after an upcast, the old version's must not come along.
      const outer = upcast ? envelopeOf.safeParse(message) : envelope
      if (!body.success || !outer.success) {
        const issues = describeIssues([...(body.error?.issues ?? []), ...(outer.error?.issues ?? [])])
        return invalid(
          upcast ? `${contract.eventType} schemaVersion ${schemaVersion} upcast to ${newest}: ${issues}` : issues,
        )
      }
      return decoded({ ...outer.data, ...(body.data as Record<string, unknown>) })
    },
    upcast(type, schemaVersion, data) {
      const contract = byName.get(type)
      if (!contract) return { ok: false, reason: reasons.unknown, message: `unknown ${discriminator} '${type}'` }
      const refused = unreadable(contract, schemaVersion)
      if (refused) return refused
      const newest = latestOf(contract)
      if (schemaVersion === newest) return { ok: true, data, schemaVersion }
      const result = upcastFrom(
        contract,
        schemaVersion,
        { ...data, [discriminator]: contract.eventType, schemaVersion },
        true,
      )
      if (!result.ok) return result
      const problems = problemsOf(contract.versions[newest] as z.ZodType, result.message, true)
      if (problems)
        return invalid(`${contract.eventType} schemaVersion ${schemaVersion} upcast to ${newest}: ${problems}`)
      const { [discriminator]: _type, schemaVersion: _version, ...upcastData } = result.message
      return { ok: true, data: upcastData, schemaVersion: newest }
    },
  }
}

/**
 * The newest schemaVersion of a contract, once its versions are known to be readable: every version
 * from 1 to the newest has a schema, and every one below the newest an upcaster to the next.
 */
function checkVersions(topic: string, contract: EventContract): number {
  const where = `contracts: ${topic} ${contract.eventType}`
  const versions = Object.keys(contract.versions).map(Number)
  for (const version of versions) {
    if (!Number.isInteger(version) || version < 1) {
      throw new Error(`${where} has schemaVersion ${version}: versions are whole numbers from 1`)
    }
  }
  if (versions.length === 0) throw new Error(`${where} has no schema`)
  const newest = Math.max(...versions)
  for (let version = 1; version < newest; version++) {
    if (!contract.versions[version]) {
      throw new Error(
        `${where} has no schemaVersion ${version}: every version from 1 to the newest (${newest}) must be declared, or messages of it no longer read`,
      )
    }
    if (typeof contract.upcasters?.[version] !== 'function') {
      throw new Error(`${where} schemaVersion ${version} has no upcaster to schemaVersion ${version + 1}`)
    }
  }
  for (const from of Object.keys(contract.upcasters ?? {}).map(Number)) {
    if (!Number.isInteger(from) || from < 1 || from >= newest) {
      throw new Error(
        `${where} has an upcaster from schemaVersion ${from}, which is not a version below the newest (${newest})`,
      )
    }
  }
  return newest
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
