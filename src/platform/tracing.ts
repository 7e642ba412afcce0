import type { FastifyOtelInstrumentationOpts } from '@fastify/otel'
import {
  type Attributes,
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api'
import type { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base'
import type { FastifyPluginCallback } from 'fastify'
import type { TracingSettings } from './config.ts'

/**
 * OpenTelemetry traces, off by default. `startTracing` installs a tracer provider for the process
 * when the configuration says so (`OTEL_EXPORTER_OTLP_ENDPOINT` and the other `OTEL_*` variables,
 * validated in config.ts): spans are batched to an OTLP/HTTP collector, and the W3C trace-context
 * propagator reads and writes `traceparent`/`tracestate`. Everything that makes spans uses
 * `@opentelemetry/api` only, which is a no-op without a provider: tracing off costs a few function
 * calls, and no header or row changes. The SDK, the exporter and @fastify/otel (tracing-sdk.ts)
 * are loaded only when tracing starts.
 *
 * How one order's trace holds together across Kafka: the HTTP request's span (@fastify/otel, see
 * http/server.ts) is the root; the command's transaction is its child; every outbox row keeps the
 * trace context it was written in (the `traceparent` of its headers, see es/command-handler.ts and
 * outbox/outbox.ts), and the relay publishes each row in that context, so its PRODUCER span is a
 * child of the request, not of the relay's loop (transport/instrumented.ts). A consumer's CONSUMER
 * span is a child of the producer span whose context the message carries, and hands its own
 * context on to the outbox rows its handler writes: POST → order → saga → payment → dispatch →
 * delivery → DELIVERED is one trace.
 */

/** The attribute naming the order a span is about (saga steps, parking, redrive, commands on orders). */
export const ORDER_ID_ATTRIBUTE = 'orderflow.order_id'

export interface Tracing {
  readonly enabled: boolean
  /** Sends what is buffered. */
  flush(): Promise<void>
  /** Sends what is buffered and uninstalls the provider. */
  shutdown(): Promise<void>
}

/** The installed SDK (tracing-sdk.ts), while tracing runs. */
export interface InstalledTracing extends Tracing {
  /** @fastify/otel's plugin: a SERVER span per request, a child of the caller's traceparent. */
  httpPlugin(options: FastifyOtelInstrumentationOpts): FastifyPluginCallback
}

let installed: InstalledTracing | undefined

/** Whether a tracer provider is installed in this process (HTTP instrumentation is added only then). */
export function tracingEnabled(): boolean {
  return installed !== undefined
}

const disabled: Tracing = { enabled: false, flush: async () => {}, shutdown: async () => {} }

/** Starts tracing as `settings` say (loading the SDK); nothing at all when they are undefined. */
export async function startTracing(settings: TracingSettings | undefined): Promise<Tracing> {
  if (!settings) return disabled
  const sdk = await import('./tracing-sdk.ts')
  return install(sdk.startSdk(settings))
}

/**
 * For tests: every span ends up in the returned exporter as soon as it ends (a simple processor,
 * always sampled). Call before building the app (the HTTP instrumentation is added at build).
 */
export async function startTestTracing(
  serviceName = 'orderflow-test',
): Promise<Tracing & { exporter: InMemorySpanExporter }> {
  const sdk = await import('./tracing-sdk.ts')
  const { exporter, ...started } = sdk.startTestSdk(serviceName)
  return { ...install(started), exporter }
}

function install(started: InstalledTracing): Tracing {
  if (installed) {
    void started.shutdown()
    throw new Error('tracing is already started in this process')
  }
  installed = started
  return {
    enabled: true,
    flush: () => started.flush(),
    async shutdown() {
      if (installed !== started) return
      installed = undefined
      await started.shutdown()
    },
  }
}

/** @fastify/otel's plugin when tracing is on (see http/server.ts), else undefined. */
export function httpTracingPlugin(options: FastifyOtelInstrumentationOpts): FastifyPluginCallback | undefined {
  return installed?.httpPlugin(options)
}

/** orderflow's tracer (a no-op until a provider is installed: the API's proxy resolves it then). */
export const tracer = trace.getTracer('orderflow')

/** The trace context a message's (or a row's) headers carry; the empty context when none. */
export function contextFromHeaders(headers: Record<string, string> | undefined): Context {
  if (!installed || !headers) return ROOT_CONTEXT
  return propagation.extract(ROOT_CONTEXT, headers)
}

/** The context `headers` carry when they carry one, else the active one. */
export function parentContext(headers: Record<string, string> | undefined): Context {
  const carried = contextFromHeaders(headers)
  return trace.getSpan(carried) ? carried : context.active()
}

/**
 * `traceparent` (and `tracestate`) of `span`, to carry on in headers or a command's metadata;
 * empty when tracing is off or the span has no valid context. A span sampled out still propagates
 * (flag 00), so what it causes is not sampled either.
 */
export function traceHeadersOf(span: Span | undefined): { traceparent?: string; tracestate?: string } {
  if (!installed || !span || !isSpanContextValid(span.spanContext())) return {}
  const carrier: Record<string, string> = {}
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), carrier)
  return {
    ...(carrier.traceparent ? { traceparent: carrier.traceparent } : {}),
    ...(carrier.tracestate ? { tracestate: carrier.tracestate } : {}),
  }
}

/** `traceHeadersOf` the active span. */
export function activeTraceHeaders(): { traceparent?: string; tracestate?: string } {
  return installed ? traceHeadersOf(trace.getActiveSpan()) : {}
}

/** A link to the span context `headers` carry, when they carry one. */
export function linkFromHeaders(headers: Record<string, string> | undefined): Link | undefined {
  const span = trace.getSpan(contextFromHeaders(headers))
  return span ? { context: span.spanContext() } : undefined
}

/** Marks the active span as being about `orderId` (a no-op when tracing is off). */
export function annotateOrder(orderId: string | undefined): void {
  if (installed && orderId) trace.getActiveSpan()?.setAttribute(ORDER_ID_ATTRIBUTE, orderId)
}

/**
 * Runs `work` in a span of its own (a child of `parent`, the active context by default), ended when
 * `work` settles; an error is recorded on the span and thrown on.
 */
export async function inSpan<T>(
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes; links?: Link[]; parent?: Context },
  work: (span: Span) => Promise<T>,
): Promise<T> {
  if (!installed) return work(trace.wrapSpanContext(INVALID_SPAN_CONTEXT))
  const parent = options.parent ?? context.active()
  const span = tracer.startSpan(
    name,
    {
      kind: options.kind ?? SpanKind.INTERNAL,
      ...(options.attributes ? { attributes: options.attributes } : {}),
      ...(options.links ? { links: options.links } : {}),
    },
    parent,
  )
  try {
    return await context.with(trace.setSpan(parent, span), () => work(span))
  } catch (error) {
    failSpan(span, error)
    throw error
  } finally {
    span.end()
  }
}

/** What `work` settles with, once it has ended `span` (failed, when `work` failed). */
export async function endingSpan<T>(span: Span, work: Promise<T>): Promise<T> {
  try {
    return await work
  } catch (error) {
    failSpan(span, error)
    throw error
  } finally {
    span.end()
  }
}

/** Records `error` on `span` and marks it failed. */
export function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return
  span.recordException(error instanceof Error ? error : String(error))
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) })
}

export { SpanKind }
