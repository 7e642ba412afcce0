import { HeaderNames } from '../../contracts/envelope.ts'
import type { IncomingMessage } from '../transport/port.ts'
import type { Decoded } from '../transport/reliable-consumer.ts'
import type { CommandMetadata } from './command-handler.ts'

/**
 * What every consumer that turns a message into a command needs, written once: the contract
 * decoder's answer as the consumer's `decode`, and the metadata the resulting command carries (the
 * message's correlation id, the message as its cause, its trace context, and its id in the
 * consumer's inbox, so a redelivered message changes nothing).
 */

type ContractResult<T> =
  | { ok: true; event: T }
  | { ok: true; command: T }
  | { ok: false; reason: string; message: string }

/** A contract decoder (`decodeOrderEvent`, `decodePaymentCommand`, …) as a consumer's `decode`. */
export function decodeWith<T>(decode: (raw: string) => ContractResult<T>): (message: IncomingMessage) => Decoded<T> {
  return (message) => {
    const result = decode(message.value)
    if (!result.ok) return result
    return { ok: true, value: 'event' in result ? result.event : result.command }
  }
}

/** The metadata of a command caused by a consumed command or event. */
export function causedBy(
  raw: IncomingMessage,
  consumer: string,
  cause:
    | { commandId: string; correlationId?: string | undefined }
    | { eventId: string; correlationId?: string | undefined },
): CommandMetadata {
  const id = 'commandId' in cause ? cause.commandId : cause.eventId
  const traceparent = raw.headers[HeaderNames.traceparent]
  const tracestate = raw.headers[HeaderNames.tracestate]
  return {
    correlationId: cause.correlationId ?? id,
    causationId: id,
    ...(traceparent ? { traceparent, ...(tracestate ? { tracestate } : {}) } : {}),
    inbox: { consumer, messageId: id },
  }
}
