import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { App } from '../../src/app.ts'
import { createEmbeddedTransport } from '../../src/platform/transport/embedded.ts'
import type { Transport } from '../../src/platform/transport/port.ts'
import { allModules } from '../../src/services.ts'
import { startTestApp } from '../support/app.ts'
import { pgliteTestDatabase, type TestDatabase } from '../support/index.ts'

/**
 * Every route of every module, driven by the OpenAPI document the app serves: requests built from
 * each operation's parameters and body schema, mixed with hostile values (NUL, unpaired surrogates,
 * very long text, huge and negative numbers, wrong types, random JSON). Whatever arrives, the answer
 * is never a 5xx, and a 4xx writes nothing: no event, no outbox row, no message, no idempotency key.
 *
 * Reproducible: FUZZ_SEED=<n> replays a run (the seed is printed when one fails), FUZZ_RUNS=<n>
 * sets the requests per operation.
 */

type Schema = {
  type?: string | string[]
  properties?: Record<string, Schema>
  required?: string[]
  items?: Schema
  enum?: unknown[]
  const?: unknown
  anyOf?: Schema[]
  oneOf?: Schema[]
  allOf?: Schema[]
  minimum?: number
  maximum?: number
}
interface Parameter {
  in: 'path' | 'query' | 'header'
  name: string
  schema?: Schema
}
interface Operation {
  parameters?: Parameter[]
  requestBody?: { content?: Record<string, { schema?: Schema }> }
}

const seed = Number(process.env.FUZZ_SEED ?? 20261130)
const runs = Number(process.env.FUZZ_RUNS ?? 40)

const hostileText = fc.oneof(
  fc.constantFrom(
    '\u0000',
    'a\u0000b',
    '\ud800',
    'x\udfff',
    "'; DROP TABLE orders; --",
    '%00',
    '../../etc/passwd',
    '😀'.repeat(50),
    ' ',
    '',
    '0',
    '-1',
    '1e309',
    'null',
    '{}',
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.integer({ min: 150, max: 5000 }).map((n) => 'x'.repeat(n)),
)
const hostileNumber = fc.oneof(
  fc.constantFrom(0, -1, -0.01, 0.001, 1e308, -1e308, 2 ** 53 + 1, 123.456789, 1e-9),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
)
const anyJson = fc.jsonValue({ maxDepth: 3 })

function valueFor(schema: Schema | undefined, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || depth > 4) return anyJson
  const choices = schema.anyOf ?? schema.oneOf
  if (choices?.length) return fc.oneof(...choices.map((s) => valueFor(s, depth + 1)))
  if (schema.allOf?.length) return valueFor(Object.assign({}, ...schema.allOf), depth + 1)
  if (schema.const !== undefined) return fc.oneof({ weight: 4, arbitrary: fc.constant(schema.const) }, anyJson)
  if (schema.enum?.length) {
    return fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...schema.enum) }, { weight: 1, arbitrary: hostileText })
  }
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  switch (type) {
    case 'object': {
      const properties = Object.entries(schema.properties ?? {})
      const record = fc.record(Object.fromEntries(properties.map(([name, s]) => [name, valueFor(s, depth + 1)])), {
        requiredKeys: [],
      })
      return fc.oneof({ weight: 6, arbitrary: record }, { weight: 1, arbitrary: anyJson })
    }
    case 'array':
      return fc.oneof(
        { weight: 6, arbitrary: fc.array(valueFor(schema.items, depth + 1), { maxLength: 4 }) },
        { weight: 1, arbitrary: anyJson },
      )
    case 'integer':
    case 'number': {
      const lo = schema.minimum ?? 0
      const hi = schema.maximum ?? Math.max(lo + 1000, 1000)
      const sane = type === 'integer' ? fc.integer({ min: lo, max: hi }) : fc.double({ min: lo, max: hi, noNaN: true })
      return fc.oneof(
        { weight: 5, arbitrary: sane },
        { weight: 2, arbitrary: hostileNumber },
        { weight: 1, arbitrary: hostileText },
      )
    }
    case 'boolean':
      return fc.oneof({ weight: 4, arbitrary: fc.boolean() }, { weight: 1, arbitrary: anyJson })
    case 'string':
      return fc.oneof(
        { weight: 5, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) },
        { weight: 3, arbitrary: hostileText },
        { weight: 1, arbitrary: hostileNumber },
      )
    default:
      return anyJson
  }
}

/** Text for a URL: kept as a string, percent-encoded by the caller. */
const textFor = (schema: Schema | undefined, known: string[]) =>
  fc.oneof(
    { weight: 3, arbitrary: known.length > 0 ? fc.constantFrom(...known) : fc.constant('missing') },
    { weight: 3, arbitrary: valueFor(schema).map((v) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''))) },
    { weight: 2, arbitrary: hostileText },
  )

/** Percent-encodes any string; an unpaired surrogate becomes its WTF-8 bytes, as a sloppy client sends it. */
function encodeLoosely(text: string): string {
  try {
    return encodeURIComponent(text)
  } catch {
    return [...text]
      .map((ch) => {
        try {
          return encodeURIComponent(ch)
        } catch {
          const unit = ch.charCodeAt(0)
          return [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)]
            .map((byte) => `%${byte.toString(16).toUpperCase()}`)
            .join('')
        }
      })
      .join('')
  }
}

describe('every route, fuzzed from the OpenAPI document', () => {
  let database: TestDatabase
  let transport: Transport
  let app: App
  let paths: Record<string, Record<string, Operation>>
  const known: string[] = []

  before(async () => {
    database = await pgliteTestDatabase()
    transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
    app = await startTestApp({ db: database.db, transport, modules: allModules() })
    paths = (await app.http.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: typeof paths }>().paths
    // Real ids too, so that requests also reach the code behind "found".
    const order = await app.http.inject({
      method: 'POST',
      url: '/api/orders',
      payload: { customerId: 'c-fuzz', items: [{ productId: 'p', price: 1, quantity: 1 }] },
    })
    const cart = await app.http.inject({ method: 'POST', url: '/api/carts', payload: { customerId: 'c-fuzz' } })
    await app.http.inject({ method: 'POST', url: '/create-order', payload: { order_id: '1', number_of_items: 2 } })
    known.push(order.json<{ id: string }>().id, cart.json<{ id: string }>().id, 'ORD-1', 'p', 'orders.events')
    // Only requests write from here on: the relay, consumers and projections are stopped, so a
    // change in the counts below is the request's doing.
    await app.stopWorkers()
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await database?.cleanup()
  })

  const writes = async () => {
    const { rows } = await database.db.query<{ n: string }>(
      `SELECT ((SELECT count(*) FROM es_events) + (SELECT count(*) FROM outbox) + (SELECT count(*) FROM log_messages)
         + (SELECT count(*) FROM idempotency_keys))::text AS n`,
    )
    return Number(rows[0]?.n)
  }

  it('never answers 5xx, and writes nothing when it answers 4xx', async () => {
    const operations = Object.entries(paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({ path, method: method.toUpperCase(), operation })),
    )
    assert.ok(operations.length >= 20, `the document lists ${operations.length} operations`)
    let requests = 0
    for (const { path, method, operation } of operations) {
      const parameters = operation.parameters ?? []
      const bodySchema = operation.requestBody?.content?.['application/json']?.schema
      const request = fc.record({
        path: fc.record(
          Object.fromEntries(parameters.filter((p) => p.in === 'path').map((p) => [p.name, textFor(p.schema, known)])),
        ),
        query: fc.record(
          Object.fromEntries(parameters.filter((p) => p.in === 'query').map((p) => [p.name, textFor(p.schema, known)])),
          { requiredKeys: [] },
        ),
        headers: fc.record(
          Object.fromEntries(
            parameters
              .filter((p) => p.in === 'header')
              .map((p) => [p.name, fc.string({ unit: 'grapheme-ascii', maxLength: 60 })]),
          ),
          { requiredKeys: [] },
        ),
        body: bodySchema
          ? fc.oneof({ weight: 8, arbitrary: valueFor(bodySchema) }, { weight: 1, arbitrary: fc.constant(undefined) })
          : fc.constant(undefined),
        rawBody: fc.option(fc.constantFrom('{', 'not json', '[]', 'null', '"\\u0000"', '{"a":'), { freq: 8 }),
      })
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          requests++
          const url =
            path.replace(/\{(\w+)\}/g, (_, name: string) => encodeLoosely(String(r.path[name] ?? ''))) +
            (Object.keys(r.query).length > 0
              ? `?${Object.entries(r.query)
                  .map(([k, v]) => `${encodeLoosely(k)}=${encodeLoosely(String(v))}`)
                  .join('&')}`
              : '')
          const payload = r.rawBody ?? (r.body === undefined ? undefined : JSON.stringify(r.body))
          const before = method === 'GET' ? 0 : await writes()
          const response = await app.http.inject({
            method: method as 'GET',
            url,
            headers: {
              ...(r.headers as Record<string, string>),
              ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
            },
            ...(payload === undefined ? {} : { payload }),
          })
          assert.ok(
            response.statusCode < 500,
            `${method} ${url} → ${response.statusCode} ${response.body.slice(0, 300)}`,
          )
          if (response.statusCode >= 400 && method !== 'GET') {
            assert.equal(await writes(), before, `${method} ${url} → ${response.statusCode} wrote something`)
          }
        }),
        { numRuns: runs, seed, endOnFailure: true },
      )
    }
    assert.ok(requests >= operations.length * runs)
  })
})
