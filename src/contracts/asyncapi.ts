import { z } from 'zod'
import { HeaderNames } from './envelope.ts'
import { decimalAmount } from './money.ts'
import type { EventContract, TopicContract } from './registry.ts'
import { timestamp, timestampDocument } from './timestamp.ts'

/**
 * The AsyncAPI 3.0 document of the platform's topics, generated from the same contracts the
 * consumers decode with, so it cannot drift from what is accepted: every topic and its dead-letter
 * topic, the key, the headers and each message's JSON schema. It is what a newcomer reads to learn
 * what an `order_commands` message looks like, and what a producer in another language codes against.
 *
 * Operations are from orderflow's point of view: it sends on event topics and dead-letter topics,
 * and receives on command topics.
 */

export interface AsyncApiInfo {
  title?: string
  version?: string
  description?: string
}

/** JSON schema, as AsyncAPI's default schema format (a superset of draft-07) reads it. */
export interface JsonSchema {
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  items?: JsonSchema
  required?: string[]
  [keyword: string]: unknown
}

export interface Reference {
  $ref: string
}

export interface AsyncApiMessage {
  name: string
  title: string
  summary: string
  description?: string
  contentType: string
  headers: JsonSchema
  payload: JsonSchema
  correlationId?: { location: string }
  bindings: { kafka: { key: JsonSchema; bindingVersion: string } }
  [extension: `x-${string}`]: unknown
}

export interface AsyncApiChannel {
  address: string
  title: string
  description: string
  messages: Record<string, Reference>
  bindings: { kafka: { topic: string; bindingVersion: string } }
}

export interface AsyncApiOperation {
  action: 'send' | 'receive'
  channel: Reference
  summary: string
  messages: Reference[]
}

export interface AsyncApiDocument {
  asyncapi: '3.0.0'
  info: { title: string; version: string; description: string }
  defaultContentType: string
  channels: Record<string, AsyncApiChannel>
  operations: Record<string, AsyncApiOperation>
  components: { messages: Record<string, AsyncApiMessage> }
}

const KAFKA_BINDING_VERSION = '0.5.0'

/** The dead-letter topic of a topic, as the reliable consumer names it. */
export const deadLetterTopicOf = (topic: string): string => `${topic}-dlq`

/**
 * A decimal amount is a codec (the wire carries 12.99, the domain 1299 minor units): left alone its
 * input side documents as "number or string". Producers are meant to send numbers, as the seeds
 * do, so that is what is documented (numeric strings still decode), as the OpenAPI document does.
 */
const decimalAmountDocument = {
  type: 'number',
  minimum: 0,
  description: 'Decimal amount with at most 2 decimal places, e.g. 12.99',
  examples: [12.99],
}

/** The wire (input) shape of a message schema, with the codecs documented as what is sent. */
export function messagePayloadSchema(schema: z.ZodType): JsonSchema {
  const document = z.toJSONSchema(schema, {
    io: 'input',
    target: 'draft-07',
    override: (ctx) => {
      const replacement =
        ctx.zodSchema === decimalAmount
          ? decimalAmountDocument
          : ctx.zodSchema === timestamp
            ? timestampDocument
            : undefined
      if (!replacement) return
      const target = ctx.jsonSchema as Record<string, unknown>
      for (const key of Object.keys(target)) delete target[key]
      Object.assign(target, structuredClone(replacement))
    },
  }) as JsonSchema
  // The document names its schema format once; a `$schema` inside a payload would contradict it.
  delete document.$schema
  return document
}

const header = (description: string, extra: JsonSchema = {}): JsonSchema => ({
  type: 'string',
  description,
  ...extra,
})

const traceHeaders = {
  [HeaderNames.traceparent]: header('W3C trace context of the producer, e.g. 00-<trace-id>-<span-id>-01', {
    pattern: '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$',
  }),
  [HeaderNames.tracestate]: header('W3C trace state, passed on as received'),
}

/** What the platform writes on every event (platform/es/messages.ts). */
const eventHeaders = (contract: EventContract, version: number): JsonSchema => ({
  type: 'object',
  properties: {
    [HeaderNames.eventId]: header('The eventId of the body, so that tools can log and deduplicate without parsing it'),
    [HeaderNames.eventType]: header('The eventType of the body', { const: contract.eventType }),
    [HeaderNames.schemaVersion]: header('The schemaVersion of the body, as a decimal string', {
      const: String(version),
    }),
    [HeaderNames.contentType]: header('Always application/json', { const: 'application/json' }),
    ...traceHeaders,
  },
  required: [HeaderNames.eventId, HeaderNames.eventType, HeaderNames.schemaVersion, HeaderNames.contentType],
})

/** Commands come from other producers: the body is what counts; trace context is read when present. */
const commandHeaders: JsonSchema = {
  type: 'object',
  properties: {
    [HeaderNames.contentType]: header('application/json when given', { const: 'application/json' }),
    ...traceHeaders,
  },
}

const DEAD_LETTER_REASONS = [
  'NOT_JSON',
  'INVALID_ENVELOPE',
  'UNKNOWN_EVENT_TYPE',
  'INVALID_EVENT',
  'UNKNOWN_COMMAND_TYPE',
  'INVALID_COMMAND',
  'UNKNOWN_SCHEMA_VERSION',
]

/**
 * A dead-letter record, as platform/transport/reliable-consumer.ts writes it (`DeadLetterRecord`).
 * Written out here rather than imported: contracts do not depend on the platform, and this is the
 * published shape, which must not change by accident when that type does.
 */
export const deadLetterRecordSchema: JsonSchema = {
  type: 'object',
  description: 'A message that could not be decoded or handled, with where it came from and why.',
  properties: {
    originalTopic: { type: 'string', description: 'The topic the message was read from' },
    partition: { type: 'integer', minimum: 0 },
    offset: { type: 'string', description: 'The offset in that partition, as a decimal string' },
    key: { type: 'string', description: 'The original message key' },
    groupId: { type: 'string', description: 'The consumer group that gave up on it' },
    reason: {
      type: 'string',
      description: `Why: a decoding reason (${DEAD_LETTER_REASONS.join(', ')}) or the handler's failure`,
      examples: DEAD_LETTER_REASONS,
    },
    error: {
      type: 'object',
      properties: {
        message: { type: 'string' },
        code: { type: 'string', description: 'The stable error code, when the error had one' },
        stack: { type: 'string' },
      },
      required: ['message'],
    },
    attempts: { type: 'integer', minimum: 1, description: 'How many times it was tried' },
    failedAt: { type: 'string', format: 'date-time', description: 'When it was given up on (UTC)' },
    headers: {
      type: 'object',
      additionalProperties: { type: 'string' },
      description: 'The original message headers',
    },
    payload: {
      type: 'string',
      description:
        'The original message value, exactly as it was received; cut when the record would exceed the broker limit',
    },
    payloadTruncated: { type: 'boolean', description: 'Present and true when the payload was cut' },
    payloadBytes: { type: 'integer', description: 'The original payload size in bytes (UTF-8)' },
    payloadSha256: { type: 'string', description: 'SHA-256 (hex) of the original payload' },
  },
  required: [
    'originalTopic',
    'partition',
    'offset',
    'key',
    'groupId',
    'reason',
    'error',
    'attempts',
    'failedAt',
    'headers',
    'payload',
    'payloadBytes',
    'payloadSha256',
  ],
}

const deadLetterHeaders: JsonSchema = {
  type: 'object',
  description: 'The original message headers, plus:',
  properties: {
    'dlq-reason': header('The reason field of the record'),
    'dlq-original-topic': header('The topic the message was read from'),
  },
  required: ['dlq-reason', 'dlq-original-topic'],
  additionalProperties: { type: 'string' },
}

const kafkaKey = (description: string) => ({
  kafka: { key: { type: 'string', description }, bindingVersion: KAFKA_BINDING_VERSION },
})

/** Channel, message and operation ids must match `^[A-Za-z0-9_\-.]+$`; topic names already do. */
const safeId = (text: string) => text.replace(/[^A-Za-z0-9_\-.]/g, '_')

const latestVersion = (contract: EventContract): [number, z.ZodType] => {
  const versions = Object.keys(contract.versions)
    .map(Number)
    .sort((a, b) => b - a)
  const version = versions[0]
  const schema = version === undefined ? undefined : contract.versions[version]
  if (version === undefined || !schema) throw new Error(`contracts: ${contract.eventType} has no schema version`)
  return [version, schema]
}

/**
 * The AsyncAPI 3.0.0 document of the given topics. Each message is documented at its highest
 * schema version, which is what producers write.
 */
/**
 * A topic whose messages carry no envelope (seed 003's `coffee_orders`: the bare order JSON), so
 * it has one message schema and no message types.
 */
export interface PlainTopicContract {
  topic: string
  description: string
  key: string
  messageName: string
  summary: string
  schema: z.ZodType
}

export function buildAsyncApiDocument(
  topics: readonly TopicContract[],
  info: AsyncApiInfo = {},
  plainTopics: readonly PlainTopicContract[] = [],
): AsyncApiDocument {
  const channels: Record<string, AsyncApiChannel> = {}
  const operations: Record<string, AsyncApiOperation> = {}
  const messages: Record<string, AsyncApiMessage> = {}

  for (const topic of topics) {
    const channelId = safeId(topic.topic)
    const isCommands = topic.discriminator === 'commandType'
    const channelMessages: Record<string, Reference> = {}
    for (const contract of topic.messages) {
      const [version, schema] = latestVersion(contract)
      const messageId = `${channelId}.${safeId(contract.eventType)}`
      const payload = messagePayloadSchema(schema)
      const aliases = contract.aliases ?? []
      if (aliases.length > 0) {
        // The schema names the one type the domain knows; the wire also accepts its aliases.
        if (payload.properties) {
          payload.properties[topic.discriminator] = { type: 'string', enum: [contract.eventType, ...aliases] }
        }
      }
      messages[messageId] = {
        name: contract.eventType,
        title: contract.eventType,
        summary: contract.description ?? `${contract.eventType} on ${topic.topic}`,
        ...(aliases.length > 0
          ? { description: `Also accepted as ${aliases.join(', ')}; decoded as ${contract.eventType}.` }
          : {}),
        contentType: 'application/json',
        headers: isCommands ? commandHeaders : eventHeaders(contract, version),
        payload,
        correlationId: { location: '$message.payload#/correlationId' },
        bindings: kafkaKey(topic.key),
        'x-schema-version': version,
      }
      channelMessages[safeId(contract.eventType)] = { $ref: `#/components/messages/${messageId}` }
    }
    channels[channelId] = {
      address: topic.topic,
      title: topic.topic,
      description: topic.description,
      messages: channelMessages,
      bindings: { kafka: { topic: topic.topic, bindingVersion: KAFKA_BINDING_VERSION } },
    }
    operations[`${isCommands ? 'receive' : 'send'}.${channelId}`] = {
      action: isCommands ? 'receive' : 'send',
      channel: { $ref: `#/channels/${channelId}` },
      summary: isCommands ? `orderflow takes commands from ${topic.topic}` : `orderflow publishes on ${topic.topic}`,
      messages: Object.keys(channelMessages).map((m) => ({ $ref: `#/channels/${channelId}/messages/${m}` })),
    }

    addDeadLetterChannel(topic, channels, operations, messages)
  }

  for (const topic of plainTopics) {
    const channelId = safeId(topic.topic)
    const messageId = `${channelId}.${safeId(topic.messageName)}`
    messages[messageId] = {
      name: topic.messageName,
      title: topic.messageName,
      summary: topic.summary,
      contentType: 'application/json',
      headers: { type: 'object', properties: {} },
      payload: messagePayloadSchema(topic.schema),
      bindings: kafkaKey(topic.key),
    }
    channels[channelId] = {
      address: topic.topic,
      title: topic.topic,
      description: topic.description,
      messages: { [safeId(topic.messageName)]: { $ref: `#/components/messages/${messageId}` } },
      bindings: { kafka: { topic: topic.topic, bindingVersion: KAFKA_BINDING_VERSION } },
    }
    operations[`send.${channelId}`] = {
      action: 'send',
      channel: { $ref: `#/channels/${channelId}` },
      summary: `orderflow publishes on ${topic.topic}`,
      messages: [{ $ref: `#/channels/${channelId}/messages/${safeId(topic.messageName)}` }],
    }
    addDeadLetterChannel(topic, channels, operations, messages)
  }

  return {
    asyncapi: '3.0.0',
    info: {
      title: info.title ?? 'orderflow',
      version: info.version ?? '0.1.0',
      description:
        info.description ??
        'The topics of the orderflow platform: what each carries, its key, headers and message schemas. Messages are JSON; amounts are decimal numbers, timestamps ISO 8601 (written in UTC).',
    },
    defaultContentType: 'application/json',
    channels,
    operations,
    components: { messages },
  }
}

/** The dead-letter channel of `topic`: where its consumers set aside what they cannot process. */
function addDeadLetterChannel(
  topic: { topic: string; key: string },
  channels: Record<string, AsyncApiChannel>,
  operations: Record<string, AsyncApiOperation>,
  messages: Record<string, AsyncApiMessage>,
): void {
  const deadLetter = deadLetterTopicOf(topic.topic)
  const deadLetterId = safeId(deadLetter)
  const deadLetterMessageId = `${deadLetterId}.DeadLetter`
  messages[deadLetterMessageId] = {
    name: 'DeadLetter',
    title: `Dead letter of ${topic.topic}`,
    summary: `A message from ${topic.topic} that could not be decoded or handled`,
    contentType: 'application/json',
    headers: deadLetterHeaders,
    payload: deadLetterRecordSchema,
    bindings: kafkaKey(`the original message key (${topic.key})`),
  }
  channels[deadLetterId] = {
    address: deadLetter,
    title: deadLetter,
    description: `Dead letters of ${topic.topic}: messages that failed to decode (a decoding reason) or that their handler gave up on after its retries. Replay them once the cause is fixed.`,
    messages: { DeadLetter: { $ref: `#/components/messages/${deadLetterMessageId}` } },
    bindings: { kafka: { topic: deadLetter, bindingVersion: KAFKA_BINDING_VERSION } },
  }
  operations[`send.${deadLetterId}`] = {
    action: 'send',
    channel: { $ref: `#/channels/${deadLetterId}` },
    summary: `The consumers of ${topic.topic} set aside what they cannot process`,
    messages: [{ $ref: `#/channels/${deadLetterId}/messages/DeadLetter` }],
  }
}
