import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort, waitFor } from '../test/support/index.ts'

/**
 * `npm start` with OpenTelemetry's standard variables: OTEL_EXPORTER_OTLP_ENDPOINT turns tracing
 * on, spans reach the collector over OTLP/HTTP under OTEL_SERVICE_NAME, the last ones go out when
 * the process stops; a wrong OTEL_ value stops start-up naming it.
 */

interface OtlpSpan {
  name: string
  traceId: string
  spanId: string
  parentSpanId?: string
  kind: number
}
interface OtlpExport {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] }
    scopeSpans: { spans: OtlpSpan[] }[]
  }[]
}

function run(args: { dataDir: string; port: number; env: Record<string, string> }) {
  const child: ChildProcess = spawn(process.execPath, ['src/main.ts'], {
    cwd: join(import.meta.dirname, '..'),
    env: {
      PATH: process.env.PATH ?? '',
      DATA_DIR: args.dataDir,
      PORT: String(args.port),
      LOG_LEVEL: 'info',
      ...args.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, output: () => output, exited }
}

describe('npm start with OTEL_EXPORTER_OTLP_ENDPOINT', () => {
  let dataDir: string
  let collector: Server
  let collectorUrl: string
  const received: { service: string | undefined; span: OtlpSpan }[] = []

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'orderflow-tracing-'))
    collector = createServer((request, response) => {
      let body = ''
      request.on('data', (chunk) => {
        body += chunk
      })
      request.on('end', () => {
        if (request.url === '/v1/traces') {
          const exported = JSON.parse(body) as OtlpExport
          for (const resourceSpans of exported.resourceSpans) {
            const service = resourceSpans.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue
            for (const scope of resourceSpans.scopeSpans)
              for (const span of scope.spans) received.push({ service, span })
          }
        }
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      })
    })
    const port = await freePort()
    await new Promise<void>((resolve) => collector.listen(port, '127.0.0.1', resolve))
    collectorUrl = `http://127.0.0.1:${port}`
  })
  after(async () => {
    await new Promise((resolve) => collector.close(resolve))
    await rm(dataDir, { recursive: true, force: true })
  })

  it('sends the spans of an order to the collector, and the last ones when it stops', async () => {
    const port = await freePort()
    const server = run({
      dataDir: join(dataDir, 'on'),
      port,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl, OTEL_SERVICE_NAME: 'orderflow-e2e' },
    })
    try {
      await waitFor(() => server.output().includes('orderflow listening on') || server.child.exitCode !== null, {
        timeoutMs: 60_000,
        message: () => `the server did not start:\n${server.output()}`,
      })
      assert.match(server.output(), /tracing is on: spans of orderflow-e2e go to http:\/\/127\.0\.0\.1:\d+\/v1\/traces/)
      const response = await fetch(`http://127.0.0.1:${port}/api/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ customerId: 'c-1', items: [{ productId: 'p-1', price: 10, quantity: 1 }] }),
      })
      assert.equal(response.status, 201)
      server.child.kill('SIGTERM')
      assert.equal(await server.exited, 0, server.output())
      // The batch processor's last spans are flushed at shutdown, the POST's among them.
      const post = received.find((r) => r.span.name === 'POST /api/orders')
      assert.ok(post, `the POST's span reached the collector (got ${received.map((r) => r.span.name).join(', ')})`)
      assert.equal(post.service, 'orderflow-e2e')
      const producer = received.find((r) => r.span.name === 'send order-events')
      assert.ok(producer, 'the relay published OrderCreated in a span')
      assert.equal(producer.span.traceId, post.span.traceId, "the publish is in the request's trace")
    } finally {
      server.child.kill('SIGKILL')
    }
  })

  it('refuses to start with a wrong OTEL_ value, naming it', async () => {
    const server = run({
      dataDir: join(dataDir, 'bad'),
      port: await freePort(),
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl, OTEL_TRACES_SAMPLER: 'sometimes' },
    })
    assert.equal(await server.exited, 2)
    assert.match(server.output(), /orderflow cannot start\. .*OTEL_TRACES_SAMPLER must be one of always_on/s)
  })
})
