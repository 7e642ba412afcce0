import { FastifyOtelInstrumentation, type FastifyOtelInstrumentationOpts } from '@fastify/otel'
import { type Attributes, context, propagation, trace } from '@opentelemetry/api'
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  InMemorySpanExporter,
  ParentBasedSampler,
  type Sampler,
  SimpleSpanProcessor,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base'
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import type { TracingSettings } from './config.ts'
import type { InstalledTracing } from './tracing.ts'

/**
 * The OpenTelemetry SDK, loaded by tracing.ts only when tracing starts (a process with tracing off
 * never loads it): the tracer provider with its sampler and resource, the span processor and
 * exporter (batched OTLP/HTTP, or the console; a simple processor into memory for tests), the W3C
 * propagator, and @fastify/otel for the HTTP server.
 */

export function startSdk(settings: TracingSettings): InstalledTracing {
  const exporter =
    settings.exporter.kind === 'console'
      ? new ConsoleSpanExporter()
      : new OTLPTraceExporter({ url: settings.exporter.url, headers: settings.exporter.headers })
  return install(
    new BatchSpanProcessor(exporter),
    { [ATTR_SERVICE_NAME]: settings.serviceName, ...settings.resourceAttributes },
    samplerOf(settings.sampler),
  )
}

export function startTestSdk(serviceName: string): InstalledTracing & { exporter: InMemorySpanExporter } {
  const exporter = new InMemorySpanExporter()
  const started = install(
    new SimpleSpanProcessor(exporter),
    { [ATTR_SERVICE_NAME]: serviceName },
    new AlwaysOnSampler(),
  )
  return { ...started, exporter }
}

function install(processor: SpanProcessor, resource: Attributes, sampler: Sampler): InstalledTracing {
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes(resource),
    sampler,
    spanProcessors: [processor],
  })
  // W3C trace context (and baggage): the `traceparent`/`tracestate` headers of requests and messages.
  provider.register({
    propagator: new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  })
  return {
    enabled: true,
    flush: () => provider.forceFlush(),
    async shutdown() {
      await provider.shutdown()
      trace.disable()
      propagation.disable()
      context.disable()
    },
    httpPlugin: (options: FastifyOtelInstrumentationOpts) => new FastifyOtelInstrumentation(options).plugin(),
  }
}

function samplerOf({ kind, ratio }: TracingSettings['sampler']): Sampler {
  switch (kind) {
    case 'always_on':
      return new AlwaysOnSampler()
    case 'always_off':
      return new AlwaysOffSampler()
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio)
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) })
  }
}
