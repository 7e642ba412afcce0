import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { HTTPMethods, LightMyRequestResponse } from 'fastify'
import { startTestApp } from '../../../test/support/app.ts'
import { pgliteTestDatabase, type TestDatabase } from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { OPENAPI_PATH, registeredRoutes } from '../../platform/http/server.ts'
import { createEmbeddedTransport } from '../../platform/transport/embedded.ts'
import type { Transport } from '../../platform/transport/port.ts'

/**
 * `GET /openapi.json` against the routes the server really has: every route is documented with its
 * method, and what the API answers is what the document says it may answer.
 */

interface JsonSchema {
  type?: string | string[]
  properties?: Record<string, JsonSchema>
  items?: JsonSchema
  required?: string[]
}

interface MediaType {
  schema: JsonSchema
}

interface Operation {
  operationId?: string
  parameters?: Array<{ name: string; in: string; required?: boolean }>
  requestBody?: { content: Record<string, MediaType> }
  responses: Record<string, { description: string; content?: Record<string, MediaType>; headers?: object }>
}

interface OpenApiDocument {
  openapi: string
  info: { title: string; version: string }
  paths: Record<string, Record<string, Operation>>
}

const toOpenApiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}')
const mediaTypeOf = (response: LightMyRequestResponse) => String(response.headers['content-type']).split(';')[0] ?? ''

const seed001 = {
  customerId: 'customer-123',
  restaurantId: 'restaurant-456',
  totalAmount: 45.99,
  items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
}

describe('OpenAPI document', () => {
  let database: TestDatabase
  let transport: Transport
  let app: App
  let document: OpenApiDocument
  let routes: Array<{ method: string; url: string }> = []

  before(async () => {
    database = await pgliteTestDatabase()
    transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
    app = await startTestApp({ db: database.db, transport })
    // HEAD is Fastify's automatic twin of each GET; the documents themselves are not API routes.
    routes = registeredRoutes(app.http).filter((r) => r.method !== 'HEAD' && !r.hidden)
    const response = await app.http.inject({ method: 'GET', url: OPENAPI_PATH })
    assert.equal(response.statusCode, 200)
    document = response.json() as OpenApiDocument
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    // The last example closed the database already.
    await database?.cleanup().catch(() => {})
  })

  const operation = (method: string, url: string): Operation => {
    const found = document.paths[toOpenApiPath(url)]?.[method.toLowerCase()]
    assert.ok(found, `${method} ${url} is not in the document`)
    return found
  }

  it('documents every registered route with its method, and nothing else', () => {
    assert.match(document.openapi, /^3\./)
    assert.equal(document.info.title, 'orderflow')
    const registered = routes.map((r) => `${r.method} ${toOpenApiPath(r.url)}`).sort()
    // The hook must have seen the server's own routes and the order API, or this test proves nothing.
    for (const expected of ['GET /health', 'GET /metrics', 'POST /api/orders', 'POST /api/orders/{id}/status']) {
      assert.ok(registered.includes(expected), `${expected} was not registered`)
    }
    const documented = Object.entries(document.paths)
      .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`))
      .sort()
    assert.deepEqual(documented, registered)
  })

  it('documents the request bodies from the contracts, decimal amounts as numbers', () => {
    const create = operation('POST', '/api/orders').requestBody?.content['application/json']?.schema
    assert.ok(create)
    assert.deepEqual(create.required, ['customerId', 'items'])
    assert.equal(create.properties?.totalAmount?.type, 'number')
    const item = create.properties?.items?.items
    assert.equal(item?.properties?.price?.type, 'number')
    assert.equal(item?.properties?.quantity?.type, 'integer')

    const update = operation('PATCH', '/api/orders/:id').requestBody?.content['application/json']?.schema
    assert.equal(update?.properties?.items?.items?.properties?.price?.type, 'number')
    assert.deepEqual(
      operation('POST', '/api/orders/:id/confirm').requestBody?.content['application/json']?.schema.required,
      ['paymentId'],
    )
    assert.deepEqual(
      operation('POST', '/api/orders/:id/cancel').requestBody?.content['application/json']?.schema.required,
      ['reason'],
    )
    assert.deepEqual(
      operation('POST', '/api/orders/:id/status').requestBody?.content['application/json']?.schema.required,
      ['status'],
    )

    const listParameters = operation('GET', '/api/orders').parameters?.map((p) => `${p.in}:${p.name}`)
    assert.deepEqual(listParameters?.sort(), ['query:cursor', 'query:customerId', 'query:limit', 'query:status'])
    const createHeaders = operation('POST', '/api/orders').parameters?.map((p) => `${p.in}:${p.name}`)
    assert.ok(createHeaders?.includes('header:idempotency-key'))
    assert.ok(operation('POST', '/api/orders/:id/confirm').parameters?.some((p) => p.name === 'if-match'))
  })

  it('documents the responses: orders with their headers, every API error as problem+json', () => {
    const created = operation('POST', '/api/orders').responses['201']
    assert.ok(created?.content?.['application/json'])
    assert.deepEqual(Object.keys(created.headers ?? {}).sort(), ['etag', 'location'])
    assert.equal(created.content['application/json']?.schema.properties?.totalAmount?.type, 'number')
    assert.deepEqual(Object.keys(operation('GET', '/api/orders/:id').responses['200']?.headers ?? {}), ['etag'])

    for (const [path, operations] of Object.entries(document.paths)) {
      if (!path.startsWith('/api/')) continue
      for (const [method, documented] of Object.entries(operations)) {
        assert.ok(documented.operationId, `${method} ${path} has an operationId`)
        assert.ok(documented.responses['503'], `${method} ${path} documents 503`)
        for (const [status, response] of Object.entries(documented.responses)) {
          if (Number(status) < 400) continue
          const problem = response.content?.['application/problem+json']?.schema
          assert.ok(problem, `${method} ${path} ${status} is problem+json`)
          assert.deepEqual(problem.required, ['type', 'title', 'status', 'detail', 'code'])
        }
      }
    }
  })

  it('answers example calls only with statuses and content types documented for the route', async () => {
    const observed = new Set<number>()
    const call = async (
      method: HTTPMethods,
      route: string,
      options: { id?: string; query?: string; payload?: object; headers?: Record<string, string> } = {},
    ) => {
      const url = `${route.replace(':id', encodeURIComponent(options.id ?? ''))}${options.query ?? ''}`
      const response = await app.http.inject({
        method,
        url,
        ...(options.payload ? { payload: options.payload } : {}),
        ...(options.headers ? { headers: options.headers } : {}),
      })
      const documented = operation(method, route).responses[String(response.statusCode)]
      assert.ok(
        documented,
        `${method} ${url} answered ${response.statusCode} (${response.body}), documented: ${Object.keys(operation(method, route).responses)}`,
      )
      if (documented.content) {
        assert.ok(
          Object.hasOwn(documented.content, mediaTypeOf(response)),
          `${method} ${url} ${response.statusCode} sent ${mediaTypeOf(response)}, documented: ${Object.keys(documented.content)}`,
        )
      }
      observed.add(response.statusCode)
      return response
    }

    await call('GET', '/health')
    await call('GET', '/health/ready')
    await call('GET', '/metrics')

    const created = await call('POST', '/api/orders', { payload: seed001, headers: { 'idempotency-key': 'doc-1' } })
    const id = (created.json() as { id: string }).id
    await call('POST', '/api/orders', { payload: seed001, headers: { 'idempotency-key': 'doc-1' } })
    await call('POST', '/api/orders', {
      payload: { ...seed001, totalAmount: 50 },
      headers: { 'idempotency-key': 'doc-1' },
    })
    await call('POST', '/api/orders', { payload: { ...seed001, totalAmount: 1 } })
    await call('POST', '/api/orders', { payload: { items: [] } })

    await call('GET', '/api/orders/:id', { id })
    await call('GET', '/api/orders/:id', { id: 'order-unknown' })
    await call('GET', '/api/orders/:id/events', { id })
    await call('GET', '/api/orders/:id/events', { id: 'order-unknown' })
    await app.projections.catchUp()
    await call('GET', '/api/orders', { query: '?customerId=customer-123&status=PENDING&limit=1' })
    await call('GET', '/api/orders', { query: '?limit=1000' })

    await call('PATCH', '/api/orders/:id', { id, payload: { notes: 'ring twice' }, headers: { 'if-match': '"1"' } })
    await call('PATCH', '/api/orders/:id', { id, payload: { notes: 'stale' }, headers: { 'if-match': '"1"' } })
    await call('PATCH', '/api/orders/:id', { id, payload: {} })
    await call('POST', '/api/orders/:id/status', { id, payload: { status: 'DISPATCHED' } })
    await call('POST', '/api/orders/:id/confirm', { id, payload: { paymentId: 'payment-1' } })
    await call('POST', '/api/orders/:id/confirm', { id: 'order-unknown', payload: { paymentId: 'payment-1' } })
    await call('POST', '/api/orders/:id/status', { id, payload: { status: 'DISPATCHED' } })
    await call('POST', '/api/orders/:id/status', { id, payload: { status: 'LOST' } })
    await call('POST', '/api/orders/:id/cancel', { id, payload: { reason: 'too late' } })
    await call('POST', '/api/orders/:id/cancel', { id, payload: { reason: '' } })

    // The database goes away: the API and the health check answer 503.
    await app.stopWorkers()
    await database.db.close()
    await call('GET', '/health')
    const ready = await call('GET', '/health/ready')
    assert.equal(ready.statusCode, 503)
    await call('GET', '/api/orders/:id', { id })
    await call('GET', '/api/orders', {})
    await call('POST', '/api/orders', { payload: seed001 })
    await call('POST', '/api/orders/:id/cancel', { id, payload: { reason: 'outage' } })

    assert.deepEqual(
      [...observed].sort(),
      [200, 201, 400, 404, 409, 422, 503],
      'the examples cover every documented status',
    )
  })
})
