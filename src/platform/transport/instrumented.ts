import { type Context, context, type Link, type Span, SpanKind, trace } from '@opentelemetry/api'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import {
  contextFromHeaders,
  failSpan,
  linkFromHeaders,
  parentContext,
  traceHeadersOf,
  tracer,
  tracingEnabled,
} from '../tracing.ts'
import type {
  BatchHandler,
  IncomingMessage,
  MessageHandler,
  OutgoingMessage,
  PublishedPosition,
  PublishOptions,
  Subscription,
  Transport,
} from './port.ts'

/** Header naming the event a message carries, so logs and tools need not parse the body. */
export const EVENT_ID_HEADER = 'event-id'

/**
 * Logs every publish with its event id, topic, partition and offset (seed 001's "Successfully
 * published event <id> to topic <topic> at offset <n>") and counts it, and
 * samples the lag of every subscription into `orderflow_consumer_lag_messages`.
 *
 * With tracing on (tracing.ts), every message published gets a PRODUCER span, a child of the trace
 * context its headers carry (an outbox row's: the request or the consumer that wrote it) or else of
 * the active one, and leaves with that span's `traceparent`. Every message handled gets a CONSUMER
 * span, a child of the producer span its headers name, and the handler sees the consume span's
 * `traceparent` in the message's headers, so what it writes to the outbox carries the trace on. A
 * batch handled at once gets one span linked to every producer, and a span per message, each a
 * child of its producer and linked to the batch's (a batch of one is just the message's span).
 *
 * Why here, and not with @platformatic/kafka's diagnostics channels (`plt:kafka:producer:sends`,
 * `plt:kafka:consumer:receives`) or @platformatic/kafka-opentelemetry: those see the Kafka client
 * only, not the embedded log, and its receive channel fires when the client decodes a message, not
 * while our handler runs it (messages are queued per partition and handled later, maybe in a
 * batch), so a span there could neither enclose the handler nor be active while it writes the
 * outbox. At the transport port the same spans come out on both transports.
 */
export function instrumentTransport(
  transport: Transport,
  deps: { logger: Logger; metrics?: Metrics; lagIntervalMs?: number },
): Transport {
  const { logger, metrics } = deps
  const subscriptions = new Set<Subscription>()
  const sampleLag = async () => {
    if (!metrics) return
    for (const subscription of subscriptions) {
      try {
        const perTopic = new Map<string, number>()
        for (const { topic, lag } of await subscription.lag()) perTopic.set(topic, (perTopic.get(topic) ?? 0) + lag)
        for (const [topic, lag] of perTopic) metrics.consumerLag.set({ topic, group: subscription.groupId }, lag)
      } catch (error) {
        logger.debug({ err: error, groupId: subscription.groupId }, 'could not read consumer lag')
      }
    }
  }
  // Spans say which log carried the message: Kafka, or the embedded log (Kafka's model, in SQL).
  const system = transport.kind === 'kafka' ? 'kafka' : 'orderflow_embedded_log'
  const lagTimer = setInterval(() => void sampleLag(), deps.lagIntervalMs ?? 10_000)
  lagTimer.unref()
  return {
    kind: transport.kind,
    ensureTopics: (topics) => transport.ensureTopics(topics),
    ping: () => transport.ping(),
    groupLag: (groups) => transport.groupLag(groups),
    readTopic: (topic, visit, options) => transport.readTopic(topic, visit, options),
    describeLog: (options) => transport.describeLog(options),
    async subscribe(options) {
      const subscription = await transport.subscribe(
        tracingEnabled()
          ? {
              ...options,
              handler: tracedHandler(options.handler, options.groupId, system),
              ...(options.batch
                ? { batch: { ...options.batch, handle: tracedBatch(options.batch.handle, options.groupId, system) } }
                : {}),
            }
          : options,
      )
      subscriptions.add(subscription)
      return {
        groupId: subscription.groupId,
        ready: subscription.ready,
        lag: () => subscription.lag(),
        async close() {
          subscriptions.delete(subscription)
          await subscription.close()
        },
      }
    },
    async close() {
      clearInterval(lagTimer)
      await transport.close()
    },
    async publish(outgoing: OutgoingMessage[], options?: PublishOptions): Promise<PublishedPosition[]> {
      const spans = tracingEnabled() ? outgoing.map((m) => producerSpan(m, system)) : undefined
      const messages = spans ? outgoing.map((m, i) => withTraceOf(m, spans[i])) : outgoing
      let positions: PublishedPosition[]
      try {
        positions = await transport.publish(messages, options)
      } catch (error) {
        for (const span of spans ?? []) {
          failSpan(span, error)
          span.end()
        }
        for (const m of messages) metrics?.publishFailures.inc({ topic: m.topic })
        logger.error(
          { err: error, topics: [...new Set(messages.map((m) => m.topic))], count: messages.length },
          'publish failed',
        )
        throw error
      }
      messages.forEach((m, i) => {
        metrics?.published.inc({ topic: m.topic })
        const span = spans?.[i]
        if (span) {
          const p = positions[i]
          if (p) {
            span.setAttribute('messaging.destination.partition.id', String(p.partition))
            span.setAttribute('messaging.kafka.offset', Number(p.offset))
          }
          span.end()
        }
        // Debug, not info: one line per event would be most of the log under load. LOG_LEVEL=debug
        // shows seed 001's "published … at offset …" for every event.
        if (logger.isLevelEnabled('debug')) {
          const p = positions[i]
          const eventId = m.headers?.[EVENT_ID_HEADER]
          const eventType = m.headers?.['event-type']
          logger.debug(
            {
              eventId,
              eventType,
              key: m.key,
              topic: m.topic,
              partition: p?.partition,
              offset: p?.offset,
            },
            // Seed 001's two publish log lines (which event for which key, and where it landed), in one.
            `published ${eventType ?? 'message'}${eventId ? ` ${eventId}` : ''} for ${m.key} to topic ${m.topic} partition ${p?.partition} at offset ${p?.offset}`,
          )
        }
      })
      return positions
    },
  }
}

/** A PRODUCER span for a message, a child of the context its headers carry (else the active one). */
function producerSpan(message: OutgoingMessage, system: string): Span {
  return tracer.startSpan(
    `send ${message.topic}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': system,
        'messaging.operation.type': 'send',
        'messaging.destination.name': message.topic,
        'messaging.kafka.message.key': message.key,
        ...messageType(message.headers),
      },
    },
    parentContext(message.headers),
  )
}

/** The message with `span`'s trace context in its headers (as it is when the span has none). */
function withTraceOf<M extends { headers?: Record<string, string> }>(message: M, span: Span | undefined): M {
  const trace = traceHeadersOf(span)
  if (!trace.traceparent) return message
  const { tracestate: _dropped, ...headers } = message.headers ?? {}
  return { ...message, headers: { ...headers, ...trace } }
}

function consumeAttributes(message: IncomingMessage, groupId: string, system: string) {
  return {
    'messaging.system': system,
    'messaging.operation.type': 'process',
    'messaging.destination.name': message.topic,
    'messaging.consumer.group.name': groupId,
    'messaging.destination.partition.id': String(message.partition),
    'messaging.kafka.offset': Number(message.offset),
    'messaging.kafka.message.key': message.key,
    ...messageType(message.headers),
  }
}

/** The event or command type a message's headers name (`event-type`), as a span attribute. */
function messageType(headers: Record<string, string> | undefined): Record<string, string> {
  const type = headers?.['event-type']
  return type ? { 'orderflow.message_type': type } : {}
}

/** A CONSUMER span for one message: a child of its producer's span, linked to `batch` when given. */
function consumeSpan(message: IncomingMessage, groupId: string, system: string, batch?: Span): Span {
  return tracer.startSpan(
    `process ${message.topic}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: consumeAttributes(message, groupId, system),
      ...(batch ? { links: [{ context: batch.spanContext() }] } : {}),
    },
    contextFromHeaders(message.headers),
  )
}

async function settle(spans: Span[], work: () => Promise<void>): Promise<void> {
  try {
    await work()
  } catch (error) {
    for (const span of spans) failSpan(span, error)
    throw error
  } finally {
    for (const span of spans) span.end()
  }
}

function tracedHandler(handler: MessageHandler, groupId: string, system: string): MessageHandler {
  return (message, handlerContext) => {
    const span = consumeSpan(message, groupId, system)
    const active: Context = trace.setSpan(contextFromHeaders(message.headers), span)
    return settle([span], () => context.with(active, () => handler(withTraceOf(message, span), handlerContext)))
  }
}

function tracedBatch(handle: BatchHandler, groupId: string, system: string): BatchHandler {
  return (messages, batchContext) => {
    const [first] = messages
    if (messages.length === 1 && first) {
      // A batch of one is the message's own span.
      const span = consumeSpan(first, groupId, system)
      const traced = withTraceOf(first, span)
      const active = trace.setSpan(contextFromHeaders(first.headers), span)
      return settle([span], () =>
        context.with(active, () =>
          handle([traced], { ...batchContext, handled: (m) => batchContext.handled(m === traced ? first : m) }),
        ),
      )
    }
    const links = messages.map((m) => linkFromHeaders(m.headers)).filter((link): link is Link => link !== undefined)
    const topics = [...new Set(messages.map((m) => m.topic))]
    const batch = tracer.startSpan(`process ${topics.join(',')}`, {
      kind: SpanKind.CONSUMER,
      links,
      attributes: {
        'messaging.system': system,
        'messaging.operation.type': 'process',
        'messaging.destination.name': topics.join(','),
        'messaging.consumer.group.name': groupId,
        'messaging.batch.message_count': messages.length,
      },
    })
    const spans = messages.map((m) => consumeSpan(m, groupId, system, batch))
    // The handler sees each message with its own span's context: what it writes for a message
    // carries that message's trace on, though the batch shares one transaction.
    const traced = messages.map((m, i) => withTraceOf(m, spans[i]))
    const original = new Map(traced.map((m, i) => [m, messages[i] as IncomingMessage]))
    return settle([batch, ...spans], () =>
      context.with(trace.setSpan(context.active(), batch), () =>
        handle(traced, { ...batchContext, handled: (m) => batchContext.handled(original.get(m) ?? m) }),
      ),
    )
  }
}
