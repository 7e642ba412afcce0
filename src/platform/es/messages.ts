import { HeaderNames } from '../../contracts/envelope.ts'
import type { EventMetadata } from '../eventstore/event-store.ts'
import { EVENT_ID_HEADER } from '../transport/instrumented.ts'
import type { OutgoingMessage } from '../transport/port.ts'

/**
 * The message an event becomes on its topic: the wire body (envelope and fields at the top level),
 * keyed as the service says (per business entity, so its events keep their order), with the headers every topic
 * carries: event id, type, schema version, content type and W3C trace context.
 */
export function eventMessage(input: {
  topic: string
  key: string
  body: unknown
  event: { eventId: string; eventType: string; schemaVersion: number }
  metadata?: EventMetadata
}): OutgoingMessage {
  const { metadata = {} } = input
  return {
    topic: input.topic,
    key: input.key,
    value: JSON.stringify(input.body),
    headers: {
      [EVENT_ID_HEADER]: input.event.eventId,
      [HeaderNames.eventType]: input.event.eventType,
      [HeaderNames.schemaVersion]: String(input.event.schemaVersion),
      [HeaderNames.contentType]: 'application/json',
      ...(metadata.traceparent ? { [HeaderNames.traceparent]: metadata.traceparent } : {}),
      ...(metadata.tracestate ? { [HeaderNames.tracestate]: metadata.tracestate } : {}),
    },
  }
}

/**
 * The message a command becomes on its service's command topic: the encoded body (envelope and
 * fields at the top level), keyed as the topic says, with the command id, type and trace context.
 */
export function commandMessage<Command extends { commandId: string; commandType: string }>(
  topic: { topic: string; encode(command: Command): unknown; keyOf(command: Command): string },
  command: Command,
  metadata: Pick<EventMetadata, 'traceparent' | 'tracestate'> = {},
): OutgoingMessage {
  return {
    topic: topic.topic,
    key: topic.keyOf(command),
    value: JSON.stringify(topic.encode(command)),
    headers: {
      [EVENT_ID_HEADER]: command.commandId,
      [HeaderNames.eventType]: command.commandType,
      [HeaderNames.contentType]: 'application/json',
      ...(metadata.traceparent ? { [HeaderNames.traceparent]: metadata.traceparent } : {}),
      ...(metadata.tracestate ? { [HeaderNames.tracestate]: metadata.tracestate } : {}),
    },
  }
}
