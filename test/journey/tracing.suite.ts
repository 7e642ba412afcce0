import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { SpanKind } from '@opentelemetry/api'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { ORDER_ID_ATTRIBUTE, startTestTracing } from '../../src/platform/tracing.ts'
import { waitFor } from '../support/index.ts'
import {
  type Infrastructure,
  type JourneyApp,
  orderReaches,
  placeOrder,
  seed004Order,
  startJourneyApp,
} from './support.ts'

/**
 * One order's trace, end to end, as an OpenTelemetry backend would show it: the POST's SERVER span
 * is the trace's only root; every producer span descends from it (the outbox row kept the
 * request's context, and the relay published in it); every message's consume span is a child of
 * the producer span of that message; and the trace runs through the order, saga, payment,
 * dispatch and delivery services to DELIVERED.
 */

/** The journey's hops: each must be produced and consumed within the order's trace. */
const HOPS = [
  'order-events',
  'payment_commands',
  'payment-events',
  'order_commands',
  'dispatch_commands',
  'dispatch-events',
  'delivery_commands',
  'delivery-events',
]

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId

export function tracingSuite(infra: Infrastructure): void {
  describe(`one order's trace (${infra})`, () => {
    let tracing: Awaited<ReturnType<typeof startTestTracing>>
    let j: JourneyApp | undefined

    before(async () => {
      // Started before the app is built: the HTTP instrumentation is added when tracing is on.
      tracing = await startTestTracing()
      j = await startJourneyApp({ infra, mode: 'orchestration' })
    })
    after(async () => {
      await j?.close()
      await tracing?.shutdown()
    })

    it('runs from the POST through every service to DELIVERED, each hop a child of the one before', async () => {
      const app = (j as JourneyApp).app
      const order = await placeOrder(app, seed004Order)
      await orderReaches(app, order.id, 'DELIVERED')

      const server = tracing.exporter
        .getFinishedSpans()
        .find((s) => s.kind === SpanKind.SERVER && s.attributes['http.route'] === '/api/orders')
      assert.ok(server, 'the POST has a SERVER span')
      assert.equal(server.name, 'POST /api/orders')
      assert.equal(parentOf(server), undefined, 'the request brought no traceparent: its span is the root')
      const traceId = server.spanContext().traceId

      const spansOfTrace = () => tracing.exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId)
      const topicOf = (s: ReadableSpan) => s.attributes['messaging.destination.name']
      // The saga's last step (the DELIVERED order event, consumed) ends the trace's work.
      const trace = await waitFor(
        () => {
          const spans = spansOfTrace()
          const done = spans.some((s) => s.attributes['orderflow.saga.outcome'] === 'DELIVERED')
          const hops = HOPS.every(
            (topic) =>
              spans.some((s) => s.kind === SpanKind.PRODUCER && topicOf(s) === topic) &&
              spans.some((s) => s.kind === SpanKind.CONSUMER && topicOf(s) === topic),
          )
          return done && hops ? spans : null
        },
        {
          timeoutMs: 20_000,
          message: () =>
            `every hop of order ${order.id} in trace ${traceId}; seen: ${[...new Set(spansOfTrace().map((s) => s.name))].join(', ')}`,
        },
      )

      const byId = new Map(trace.map((s) => [s.spanContext().spanId, s]))
      const roots = trace.filter((s) => parentOf(s) === undefined)
      assert.deepEqual(
        roots.map((s) => s.name),
        ['POST /api/orders'],
        'one root: the HTTP request',
      )
      const descendsFromServer = (span: ReadableSpan): boolean => {
        for (let at: ReadableSpan | undefined = span; at; at = byId.get(parentOf(at) ?? '')) {
          if (at === server) return true
        }
        return false
      }
      const producers = trace.filter((s) => s.kind === SpanKind.PRODUCER)
      for (const producer of producers) {
        assert.ok(descendsFromServer(producer), `${producer.name} descends from the POST`)
      }
      // The first event's producer is the request's own: not a child of the relay's loop.
      const created = producers.find((s) => topicOf(s) === 'order-events')
      assert.ok(created)
      const createdParent = byId.get(parentOf(created) ?? '')
      assert.equal(createdParent?.name, 'order command', "OrderCreated's producer span is the command's child")
      assert.equal(byId.get(parentOf(createdParent) ?? '')?.name.startsWith('handler'), true)

      const consumers = trace.filter((s) => s.kind === SpanKind.CONSUMER)
      for (const consumer of consumers) {
        const parent = byId.get(parentOf(consumer) ?? '')
        assert.equal(parent?.kind, SpanKind.PRODUCER, `${consumer.name}'s parent is a producer span`)
        assert.equal(topicOf(parent), topicOf(consumer), `${consumer.name} is a child of its own message's producer`)
      }

      // Every service took part, and the saga's steps name the order.
      for (const group of [
        'create-order-saga',
        'payment-service-commands',
        'dispatch-service-commands',
        'delivery-service-commands',
        'order-service-commands',
      ]) {
        assert.ok(
          consumers.some((s) => String(s.attributes['messaging.consumer.group.name']).endsWith(group)),
          `the ${group} consumer handled a message of the trace`,
        )
      }
      const sagaSteps = trace.filter((s) => s.name.startsWith('saga '))
      assert.ok(sagaSteps.length >= 4, 'the saga took its steps in the trace')
      for (const step of sagaSteps) assert.equal(step.attributes[ORDER_ID_ATTRIBUTE], order.id)
      const commandsOnOrder = trace.filter((s) => s.name.endsWith(' command'))
      assert.ok(commandsOnOrder.every((s) => s.attributes[ORDER_ID_ATTRIBUTE] === order.id))
      // The saga completed, the order DELIVERED, within the trace.
      assert.ok(
        trace.some(
          (s) =>
            s.attributes['orderflow.saga.status'] === 'COMPLETED' &&
            s.attributes['orderflow.saga.outcome'] === 'DELIVERED',
        ),
      )
    })

    it('sends messages with the producer span as their traceparent', async () => {
      const app = (j as JourneyApp).app
      const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
      const response = await app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: seed004Order,
        headers: { traceparent },
      })
      assert.equal(response.statusCode, 201)
      const { id } = response.json<{ id: string }>()
      const { rows } = await (j as JourneyApp).db.db.query<{ headers: Record<string, string> }>(
        `SELECT headers FROM outbox WHERE message_key = $1 ORDER BY id LIMIT 1`,
        [id],
      )
      const rowTrace = rows[0]?.headers.traceparent
      assert.match(rowTrace ?? '', /^00-0af7651916cd43dd8448eb211c80319c-[\da-f]{16}-01$/, "the caller's trace goes on")
      assert.notEqual(rowTrace, traceparent, 'the row names the command span, a child of the request')
      const producer = await waitFor(
        () =>
          tracing.exporter
            .getFinishedSpans()
            .find(
              (s) =>
                s.kind === SpanKind.PRODUCER &&
                s.spanContext().traceId === '0af7651916cd43dd8448eb211c80319c' &&
                s.parentSpanContext?.spanId === rowTrace?.split('-')[2],
            ),
        { message: "the relay's producer span, a child of the outbox row's context" },
      )
      const consumed = await waitFor(
        () =>
          tracing.exporter
            .getFinishedSpans()
            .find((s) => s.kind === SpanKind.CONSUMER && s.parentSpanContext?.spanId === producer.spanContext().spanId),
        { message: 'a consume span whose parent is that producer span: the message carried its traceparent' },
      )
      assert.equal(consumed.attributes['messaging.kafka.message.key'], id)
      await orderReaches(app, id, 'DELIVERED')
    })
  })
}

/** @fastify/otel is 0.x: pinned exactly, and what runs is what is pinned. */
export function fastifyOtelPinned(): void {
  describe('@fastify/otel', () => {
    it('is pinned to an exact version: a 0.x minor may break its API', () => {
      const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
        dependencies: Record<string, string>
      }
      const pinned = manifest.dependencies['@fastify/otel']
      assert.match(pinned ?? '', /^\d+\.\d+\.\d+$/, `@fastify/otel is '${pinned}', not an exact version`)
      const installed = JSON.parse(
        readFileSync(new URL('../../node_modules/@fastify/otel/package.json', import.meta.url), 'utf8'),
      ) as { version: string }
      assert.equal(installed.version, pinned, 'the installed @fastify/otel is the pinned one')
    })
  })
}
