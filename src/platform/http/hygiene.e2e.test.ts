import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import { startTestApp } from '../../../test/support/app.ts'
import {
  follow,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  waitFor,
} from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { ORDER_COMMANDS_TOPIC } from '../../contracts/order/commands.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import type { Transport } from '../transport/port.ts'
import type { DeadLetterRecord } from '../transport/reliable-consumer.ts'

/**
 * Bad input never causes a 500: text PostgreSQL cannot store, forged cursors and Fastify's own
 * client errors are all 400-class problems with a stable code, the field named and no SQLSTATE, and
 * nothing is written. The same on PGlite and PostgreSQL.
 */

const NUL = '\u0000'
const LONE = '\ud800'
const item = { productId: 'p-1', price: 9.99, quantity: 1 }
const sqlState = /"code":"(?:\d{2}[0-9A-Z]{3})"/

function assertProblem(
  response: LightMyRequestResponse | { statusCode: number; body: string; headers: Record<string, unknown> },
  status: number,
  code: string,
) {
  assert.equal(response.statusCode, status, response.body)
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/)
  assert.doesNotMatch(response.body, sqlState)
  const problem = JSON.parse(response.body) as { code: string; errors?: Array<{ field: string; message: string }> }
  assert.equal(problem.code, code)
  return problem
}

function hygieneSuite(name: string, open: () => Promise<TestDatabase>) {
  describe(`input hygiene on ${name}`, () => {
    let database: TestDatabase
    let transport: Transport
    let app: App
    let orderId: string

    before(async () => {
      database = await open()
      transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
      app = await startTestApp({ db: database.db, transport })
      const created = await app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: { customerId: 'c-1', items: [item] },
      })
      orderId = created.json<{ id: string }>().id
    })
    after(async () => {
      await app?.close()
      await transport?.close()
      await database?.cleanup()
    })

    const countEvents = async () =>
      Number((await database.db.query<{ n: string }>('SELECT count(*)::text AS n FROM es_events')).rows[0]?.n)

    it('refuses an unknown property at any depth with a 400 naming it, and writes nothing', async () => {
      const before = await countEvents()
      const created = await app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: { customerId: 'c-1', deliveryAddress: '1 Main St', items: [{ ...item, colour: 'red' }] },
      })
      const problem = assertProblem(created, 400, 'VALIDATION_FAILED')
      assert.deepEqual(problem.errors?.map((e) => e.field).sort(), ['deliveryAddress', 'items.0.colour'])
      const patched = await app.http.inject({
        method: 'PATCH',
        url: `/api/orders/${orderId}`,
        payload: { notes: 'ring twice', priority: 'high' },
      })
      assert.deepEqual(
        assertProblem(patched, 400, 'VALIDATION_FAILED').errors?.map((e) => e.field),
        ['priority'],
      )
      assert.equal(await countEvents(), before)
      // Seed 001's body holds only known fields (menuItemId, name): it still passes.
      const seed001 = await app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: {
          customerId: 'customer-123',
          restaurantId: 'restaurant-456',
          totalAmount: 45.99,
          items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
        },
      })
      assert.equal(seed001.statusCode, 201, seed001.body)
    })

    it('refuses NUL and unpaired surrogates in every body field with a 400 naming it, and writes nothing', async () => {
      const before = await countEvents()
      const cases: Array<[string, string, (bad: string) => object, string]> = [
        ['POST', '/api/orders', (bad) => ({ customerId: `a${bad}`, items: [item] }), 'customerId'],
        ['POST', '/api/orders', (bad) => ({ customerId: 'c', restaurantId: bad, items: [item] }), 'restaurantId'],
        ['POST', '/api/orders', (bad) => ({ customerId: 'c', items: [{ ...item, name: bad }] }), 'items.0.name'],
        ['POST', '/api/orders', (bad) => ({ customerId: 'c', items: [item], notes: bad }), 'notes'],
        ['PATCH', `/api/orders/${orderId}`, (bad) => ({ notes: `x${bad}y` }), 'notes'],
        ['POST', `/api/orders/${orderId}/confirm`, (bad) => ({ paymentId: bad }), 'paymentId'],
        ['POST', `/api/orders/${orderId}/cancel`, (bad) => ({ reason: bad }), 'reason'],
        ['POST', `/api/orders/${orderId}/status`, (bad) => ({ status: 'CANCELLED', reason: bad }), 'reason'],
      ]
      for (const bad of [NUL, LONE]) {
        for (const [method, url, body, field] of cases) {
          const response = await app.http.inject({
            method: method as 'POST' | 'PATCH',
            url,
            headers: { 'content-type': 'application/json' },
            // JSON.stringify escapes both as \u0000 / \ud800, as a client would send them.
            payload: JSON.stringify(body(bad)),
          })
          const problem = assertProblem(response, 400, 'VALIDATION_FAILED')
          assert.deepEqual(
            problem.errors?.map((e) => e.field),
            [field],
            `${method} ${url}`,
          )
        }
      }
      assert.equal(await countEvents(), before, 'nothing was written')
    })

    it('refuses %00 in a path id and in a query value, and a forged list cursor, with a 400', async () => {
      assertProblem(await app.http.inject({ method: 'GET', url: '/api/orders/a%00b' }), 400, 'VALIDATION_FAILED')
      assertProblem(await app.http.inject({ method: 'GET', url: '/api/orders/a%00b/events' }), 400, 'VALIDATION_FAILED')
      assertProblem(
        await app.http.inject({ method: 'GET', url: '/api/orders?customerId=a%00b' }),
        400,
        'VALIDATION_FAILED',
      )
      const forged = Buffer.from(JSON.stringify(['1', 'x'])).toString('base64url')
      const problem = assertProblem(
        await app.http.inject({ method: 'GET', url: `/api/orders?cursor=${forged}` }),
        400,
        'VALIDATION_FAILED',
      )
      assert.deepEqual(
        problem.errors?.map((e) => e.field),
        ['cursor'],
      )
      const nulCursor = Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', `x${NUL}`])).toString('base64url')
      assertProblem(
        await app.http.inject({ method: 'GET', url: `/api/orders?cursor=${nulCursor}` }),
        400,
        'VALIDATION_FAILED',
      )
    })

    it("answers Fastify's own client errors as problems: a bad URL, a path segment too long, headers too large", async () => {
      assertProblem(await app.http.inject({ method: 'GET', url: '/api/orders/%E0%A4%A' }), 400, 'VALIDATION_FAILED')
      assertProblem(
        await app.http.inject({ method: 'GET', url: `/api/orders/${'x'.repeat(600)}` }),
        414,
        'URI_TOO_LONG',
      )
      const tooLong = assertProblem(
        await app.http.inject({ method: 'GET', url: `/api/orders/${'x'.repeat(250)}` }),
        400,
        'VALIDATION_FAILED',
      )
      assert.match(JSON.stringify(tooLong), /at most 200 characters/)
      const url = await app.http.listen({ port: 0, host: '127.0.0.1' })
      const response = await fetch(`${url}/api/orders`, { headers: { 'x-huge': 'y'.repeat(20_000) } })
      assertProblem(
        {
          statusCode: response.status,
          body: await response.text(),
          headers: { 'content-type': response.headers.get('content-type') },
        },
        431,
        'HEADERS_TOO_LARGE',
      )
    })

    it('says "at most 200 characters" for a 201-character id, not "must be a string"', async () => {
      const response = await app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: { customerId: 'x'.repeat(201), items: [item] },
      })
      const problem = assertProblem(response, 400, 'VALIDATION_FAILED')
      assert.deepEqual(problem.errors, [{ field: 'customerId', message: 'customerId must be at most 200 characters' }])
    })

    it('dead-letters a command carrying NUL as INVALID_COMMAND at once, not after retries', async () => {
      const dlq = await follow(transport, `${ORDER_COMMANDS_TOPIC}-dlq`, 'hygiene_dlq')
      try {
        await transport.publish([
          {
            topic: ORDER_COMMANDS_TOPIC,
            key: orderId,
            value: JSON.stringify({
              commandId: crypto.randomUUID(),
              commandType: 'CancelOrder',
              orderId,
              issuedOn: new Date().toISOString(),
              reason: `bad${NUL}`,
            }),
          },
        ])
        const message = await waitFor(() => dlq.seen.find((m) => m.key === orderId), {
          message: 'the command is dead-lettered',
        })
        const record = JSON.parse(message.value) as DeadLetterRecord
        assert.equal(record.reason, 'INVALID_COMMAND')
        assert.equal(record.attempts, 0)
        assert.match(record.error.message, /reason: must not contain NUL/)
      } finally {
        await dlq.sub.close()
      }
    })
  })
}

hygieneSuite('PGlite', pgliteTestDatabase)
hygieneSuite('PostgreSQL', () => postgresTestDatabase('of_hygiene'))
