import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import { context, SpanKind, trace } from '@opentelemetry/api'
import { joined, pgliteTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { startTestTracing } from '../tracing.ts'
import { createEmbeddedTransport } from './embedded.ts'
import { instrumentTransport } from './instrumented.ts'
import type { IncomingMessage, Transport } from './port.ts'

/**
 * The instrumented transport's spans, on the embedded log: a PRODUCER span per message, a child of
 * the context its headers carry, whose traceparent the message leaves with; a CONSUMER span per
 * message handled, a child of that producer span, which the handler sees as the message's
 * traceparent; a backlog handled as a batch, one span linked to every producer.
 */
describe('instrumented transport, traced', () => {
  let tracing: Awaited<ReturnType<typeof startTestTracing>>
  let database: TestDatabase
  let transport: Transport

  before(async () => {
    tracing = await startTestTracing()
    database = await pgliteTestDatabase()
    const embedded = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 50 })
    transport = instrumentTransport(embedded, { logger: createLogger({ level: 'silent' }) })
  })
  after(async () => {
    await transport?.close()
    await database?.cleanup()
    await tracing?.shutdown()
  })

  /** Publishes one message in a trace of its own (as the relay does with an outbox row's context). */
  const publishInTrace = async (topic: string, key: string) => {
    const request = trace.getTracer('test').startSpan(`request ${key}`)
    const carried = `00-${request.spanContext().traceId}-${request.spanContext().spanId}-01`
    request.end()
    await context.with(trace.setSpan(context.active(), trace.getTracer('test').startSpan('relay loop')), () =>
      transport.publish([{ topic, key, value: key, headers: { traceparent: carried, 'event-type': 'Tested' } }]),
    )
    return request
  }

  it('sends each message as a child of the context it carries, and handles it as a child of its producer', async () => {
    const topic = uniqueName('traced')
    const request = await publishInTrace(topic, 'k1')
    const producer = tracing.exporter
      .getFinishedSpans()
      .find((s) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.destination.name'] === topic)
    assert.ok(producer)
    assert.equal(producer.spanContext().traceId, request.spanContext().traceId)
    assert.equal(producer.parentSpanContext?.spanId, request.spanContext().spanId, 'not a child of the relay loop')
    assert.equal(producer.attributes['messaging.system'], 'orderflow_embedded_log')
    assert.equal(producer.attributes['orderflow.message_type'], 'Tested')

    const seen: IncomingMessage[] = []
    let active: string | undefined
    const subscription = await transport.subscribe({
      groupId: uniqueName('one'),
      topics: [topic],
      handler: async (message) => {
        seen.push(message)
        active = trace.getActiveSpan()?.spanContext().spanId
        if (seen.length === 1) throw new Error('first attempt fails')
      },
      onError: () => {},
    })
    await joined(subscription)
    await waitFor(() => seen.length >= 1, { message: 'the message handled' })
    await subscription.close()
    const consume = tracing.exporter
      .getFinishedSpans()
      .find((s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.destination.name'] === topic)
    assert.ok(consume)
    assert.equal(consume.parentSpanContext?.spanId, producer.spanContext().spanId)
    assert.equal(active, consume.spanContext().spanId, 'the handler runs in the consume span')
    assert.equal(seen[0]?.headers.traceparent?.split('-')[2], consume.spanContext().spanId)
    assert.equal(consume.status.code, 2, 'a handler that throws fails its span')
    assert.equal(consume.events[0]?.name, 'exception')
  })

  it('handles a backlog as one span linked to every producer, and a span per message under its own', async () => {
    const topic = uniqueName('batched')
    const requests = [
      await publishInTrace(topic, 'a'),
      await publishInTrace(topic, 'b'),
      await publishInTrace(topic, 'c'),
    ]
    const batches: IncomingMessage[][] = []
    const subscription = await transport.subscribe({
      groupId: uniqueName('batch'),
      topics: [topic],
      handler: async () => {
        throw new Error('the batch handler takes them')
      },
      batch: {
        max: 10,
        handle: async (messages, batchContext) => {
          batches.push(messages)
          for (const m of messages) batchContext.handled(m)
        },
      },
    })
    await joined(subscription)
    await waitFor(() => batches.flat().length === 3, { message: 'the three messages handled' })
    assert.equal(batches.length, 1, 'one batch')
    // Committed once handled, within the log's commit interval.
    let lag: number[] = []
    await waitFor(
      async () => {
        lag = (await subscription.lag()).map((l) => l.lag)
        return isDeepStrictEqual(lag, [0])
      },
      { message: () => `every message committed (lag ${lag.join(', ')})` },
    )
    await subscription.close()

    const spans = tracing.exporter.getFinishedSpans()
    const producers = spans.filter(
      (s) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.destination.name'] === topic,
    )
    const batch = spans.find((s) => s.attributes['messaging.batch.message_count'] === 3)
    assert.ok(batch)
    assert.equal(batch.parentSpanContext, undefined, 'a batch span starts its own trace')
    assert.deepEqual(
      batch.links.map((l) => l.context.spanId).sort(),
      producers.map((p) => p.spanContext().spanId).sort(),
      'linked to every producer',
    )
    const perMessage = spans.filter(
      (s) =>
        s.kind === SpanKind.CONSUMER &&
        s.attributes['messaging.destination.name'] === topic &&
        s.attributes['messaging.kafka.offset'] !== undefined,
    )
    assert.equal(perMessage.length, 3)
    for (const [i, message] of (batches[0] ?? []).entries()) {
      const span = perMessage.find((s) => s.attributes['messaging.kafka.message.key'] === message.key)
      const producer = producers.find((p) => p.attributes['messaging.kafka.message.key'] === message.key)
      assert.ok(span && producer)
      assert.equal(span.parentSpanContext?.spanId, producer.spanContext().spanId)
      assert.equal(span.spanContext().traceId, requests[i]?.spanContext().traceId, "in its own request's trace")
      assert.equal(span.links[0]?.context.spanId, batch.spanContext().spanId)
      assert.equal(message.headers.traceparent?.split('-')[2], span.spanContext().spanId)
    }
  })
})
