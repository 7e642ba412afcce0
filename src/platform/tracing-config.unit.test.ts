import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, knownVariables, loadConfig } from './config.ts'
import { unknownVariables } from './unknown-variables.ts'

/** OpenTelemetry's standard variables: off by default, on with an exporter, refused when wrong. */
describe('tracing configuration (OTEL_*)', () => {
  it('is off by default, and off with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none', () => {
    assert.equal(loadConfig({}).tracing, undefined)
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }
    assert.equal(loadConfig({ ...endpoint, OTEL_SDK_DISABLED: 'TRUE' }).tracing, undefined)
    assert.equal(loadConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }).tracing, undefined)
    assert.notEqual(loadConfig({ ...endpoint, OTEL_SDK_DISABLED: 'false' }).tracing, undefined)
  })

  it("sends to the collector's v1/traces, named orderflow, parent-based, always on", () => {
    assert.deepEqual(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing, {
      serviceName: 'orderflow',
      resourceAttributes: {},
      exporter: { kind: 'otlp', url: 'http://collector:4318/v1/traces', headers: {} },
      sampler: { kind: 'parentbased_always_on', ratio: 1 },
    })
  })

  it('takes the signal endpoint as it is, the service name, resource attributes, headers and sampler', () => {
    const tracing = loadConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://otlp.example.com/api/traces',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attributes,deployment.environment=prod%20eu',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc,x-tenant=a',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-tenant=b',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
    }).tracing
    assert.deepEqual(tracing, {
      serviceName: 'from-attributes',
      resourceAttributes: { 'deployment.environment': 'prod eu' },
      exporter: {
        kind: 'otlp',
        url: 'https://otlp.example.com/api/traces',
        headers: { authorization: 'Bearer abc', 'x-tenant': 'b' },
      },
      sampler: { kind: 'parentbased_traceidratio', ratio: 0.25 },
    })
    assert.equal(
      loadConfig({ OTEL_TRACES_EXPORTER: 'console', OTEL_SERVICE_NAME: 'orders-eu' }).tracing?.serviceName,
      'orders-eu',
    )
  })

  it('names every wrong OTEL_ variable and what it accepts', () => {
    assert.throws(
      () =>
        loadConfig({
          OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
          OTEL_TRACES_SAMPLER: 'sometimes',
          OTEL_TRACES_SAMPLER_ARG: '2',
          OTEL_SDK_DISABLED: 'maybe',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
          OTEL_EXPORTER_OTLP_HEADERS: 'novalue',
          OTEL_TRACES_EXPORTER: 'zipkin',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError)
        const text = error.message
        assert.match(text, /OTEL_EXPORTER_OTLP_ENDPOINT must be an http\(s\) URL/)
        assert.match(text, /OTEL_TRACES_SAMPLER must be one of always_on, .* \(got 'sometimes'\)/)
        assert.match(text, /OTEL_TRACES_SAMPLER_ARG must be a sampling ratio from 0 to 1 \(got '2'\)/)
        assert.match(text, /OTEL_SDK_DISABLED must be 'true' or 'false' \(got 'maybe'\)/)
        assert.match(text, /OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported/)
        assert.match(text, /OTEL_EXPORTER_OTLP_HEADERS must be a comma-separated list of key=value/)
        assert.match(text, /OTEL_TRACES_EXPORTER must be 'otlp', 'console' or 'none' \(got 'zipkin'\)/)
        return true
      },
    )
  })

  it('knows the OTEL_ variables it reads, and names the one a misspelling meant', () => {
    assert.deepEqual(
      unknownVariables(
        {
          OTEL_SERVICE_NAME: 'a',
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
          OTEL_BSP_SCHEDULE_DELAY: '500',
          OTEL_SERVICE_NAM: 'b',
        },
        knownVariables,
      ),
      [{ name: 'OTEL_SERVICE_NAM', closest: 'OTEL_SERVICE_NAME' }],
    )
  })
})
