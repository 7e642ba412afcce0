import { DELIVERY_EVENTS_TOPIC, decodeDeliveryEvent } from '../../contracts/delivery/events.ts'
import { DISPATCH_EVENTS_TOPIC, decodeDispatchEvent } from '../../contracts/dispatch/events.ts'
import { HeaderNames } from '../../contracts/envelope.ts'
import { decodeOrderEvent, ORDER_EVENTS_TOPIC } from '../../contracts/order/events.ts'
import { decodePaymentEvent, PAYMENT_EVENTS_TOPIC } from '../../contracts/payment/events.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { IncomingMessage, Subscription } from '../../platform/transport/port.ts'
import type { Decoded } from '../../platform/transport/reliable-consumer.ts'
import type { SagaInputMetadata, SagaProcessor } from '../application/saga-processor.ts'
import type { SagaEventInput } from '../domain/create-order-saga.ts'

/** The orchestrator's consumer group: it reads the four event topics of the journey. */
export const SAGA_GROUP = 'create-order-saga'

export const SAGA_INPUT_TOPICS = [
  ORDER_EVENTS_TOPIC,
  PAYMENT_EVENTS_TOPIC,
  DISPATCH_EVENTS_TOPIC,
  DELIVERY_EVENTS_TOPIC,
]

const decoders: Record<
  string,
  (raw: string) => { ok: true; event: unknown } | { ok: false; reason: string; message: string }
> = {
  [ORDER_EVENTS_TOPIC]: decodeOrderEvent,
  [PAYMENT_EVENTS_TOPIC]: decodePaymentEvent,
  [DISPATCH_EVENTS_TOPIC]: decodeDispatchEvent,
  [DELIVERY_EVENTS_TOPIC]: decodeDeliveryEvent,
}

function decodeSagaInput(message: IncomingMessage): Decoded<SagaEventInput> {
  const decode = decoders[message.topic]
  if (!decode) return { ok: false, reason: 'UNKNOWN_TOPIC', message: `the saga does not read ${message.topic}` }
  const decoded = decode(message.value)
  return decoded.ok ? { ok: true, value: decoded.event as SagaEventInput } : decoded
}

/** The saga's inbox entry and trace for an event: the event id is the entry. */
function metadataOf(input: SagaEventInput, raw: IncomingMessage, groupId: string): SagaInputMetadata {
  const traceparent = raw.headers[HeaderNames.traceparent]
  return {
    consumer: groupId,
    messageId: input.eventId,
    causationId: input.eventId,
    ...(input.correlationId ? { correlationId: input.correlationId } : {}),
    ...(traceparent ? { traceparent } : {}),
  }
}

/**
 * Every event of the journey into the saga, once each. A partition's backlog goes in as one batch
 * (the inbox, the sagas, then their rows, commands and timers: one statement each, whatever its
 * size); a batch that fails is handed back one event at a time through `handle`.
 */
export function consumeSagaInputs(
  context: Pick<ModuleContext, 'consume'>,
  processor: SagaProcessor,
  groupId = SAGA_GROUP,
): Promise<Subscription> {
  return context.consume<SagaEventInput>({
    groupId,
    batch: true,
    // A saga takes its order's events in order: one that fails for good holds the later ones
    // (the saga shows as parked) until an operator redrives or discards it.
    parkKeys: true,
    topics: SAGA_INPUT_TOPICS,
    decode: decodeSagaInput,
    handle: async (input, raw) => {
      await processor.handle(input, metadataOf(input, raw, groupId))
    },
    handleBatch: async (items) => {
      await processor.handleBatch(
        items.map(({ value, message }) => ({ input: value, metadata: metadataOf(value, message, groupId) })),
      )
    },
  })
}
