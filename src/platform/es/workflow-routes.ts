import { HeaderNames } from '../../contracts/envelope.ts'
import { EVENT_ID_HEADER } from '../transport/instrumented.ts'
import type { OutgoingMessage } from '../transport/port.ts'

/**
 * The routing table of a workflow (`workflow-processor.ts`): where each message it sends or
 * publishes goes and how it is encoded, so that the workflow decides what to say and never where
 * (a command type, or a topic the workflow already names, is the route).
 */

/** What the processor adds to every message it sends or publishes. */
export interface MessageEnvelope {
  /** Deterministic: uuid v5 (see `messageIds`). */
  id: string
  /** The decision's time. */
  at: string
  /** The input's correlation id, or the instance id. */
  correlationId: string
  /** The input's causation id, or its message id. */
  causationId: string
}

/** Where messages of one kind go: the topic, and their value on the wire. */
export interface MessageRoute<Message> {
  topic: string
  /** The message's value (turned into JSON), from the message and its envelope. */
  encode(message: Message, envelope: MessageEnvelope): unknown
}

/** The routing table of what a workflow sends (commands) or publishes (events). */
export interface MessageRouting<Message> {
  /** The route a message takes: its type, or a topic the workflow names. */
  routeOf(message: Message): string
  /** Its type, for the `event-type` header. */
  typeOf(message: Message): string
  /** Its message key: every message of one key keeps its order. */
  keyOf(message: Message): string
  routes: Readonly<Record<string, MessageRoute<Message>>>
}

/** The outbox message for `message`: its route's topic and encoding, its key, and the headers every topic carries. */
export function routedMessage<Message>(
  routing: MessageRouting<Message>,
  message: Message,
  envelope: MessageEnvelope,
  traceparent: string | undefined,
): OutgoingMessage {
  const route = routeOf(routing, message)
  return {
    topic: route.topic,
    key: routing.keyOf(message),
    value: JSON.stringify(route.encode(message, envelope)),
    headers: {
      [EVENT_ID_HEADER]: envelope.id,
      [HeaderNames.eventType]: routing.typeOf(message),
      [HeaderNames.contentType]: 'application/json',
      ...(traceparent ? { [HeaderNames.traceparent]: traceparent } : {}),
    },
  }
}

function routeOf<Message>(routing: MessageRouting<Message>, message: Message): MessageRoute<Message> {
  const name = routing.routeOf(message)
  // Own keys only: a message named `constructor` must not find Object's.
  const route = Object.hasOwn(routing.routes, name) ? routing.routes[name] : undefined
  if (!route) throw new Error(`no route for ${name}`)
  return route
}
