import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import { startTestApp } from '../../../test/support/app.ts'
import {
  pgliteTestDatabase,
  postgresTestDatabase,
  testDatabaseUrl,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { ORDER_EVENTS_TOPIC } from '../../contracts/order/events.ts'
import type { Problem } from '../../platform/http/problem.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import { openPostgres } from '../../platform/sql/postgres.ts'
import { createEmbeddedTransport } from '../../platform/transport/embedded.ts'
import type { IncomingMessage, Transport } from '../../platform/transport/port.ts'
import type { OrderStore } from '../application/order-store.ts'
import type { OrderModule } from '../index.ts'
import type { OrderView } from './routes.ts'

/**
 * The order API through HTTP, against the real service (event store, outbox, read model, embedded
 * log), once on PGlite and once on PostgreSQL.
 */

// Seed 001's request, and seed 004's exactly as written there (`100.00` included).
const seed001 = {
  customerId: 'customer-123',
  restaurantId: 'restaurant-456',
  totalAmount: 45.99,
  items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
}
const seed004 = '{"customerId":"customer123","items":[{"productId":"product123","quantity":1,"price":100.00}]}'

type Harness = App & { transport: Transport; store: OrderStore }

async function startApi(db: SqlDatabase): Promise<Harness> {
  const transport = await createEmbeddedTransport({ db, partitions: 3, pollIntervalMs: 50 })
  const app = await startTestApp({ db, transport })
  const closeApp = app.close
  return Object.assign(app, {
    transport,
    store: app.module<OrderModule>('order').store,
    async close() {
      await closeApp()
      await transport.close()
    },
  })
}

interface TestDatabaseWithOutage {
  db: SqlDatabase
  /** Makes the database unreachable, as a crashed or partitioned server would be. */
  takeDown(): Promise<void>
  cleanup(): Promise<void>
}

interface DatabaseSetup {
  name: string
  open(): Promise<TestDatabaseWithOutage>
}

const pglite: DatabaseSetup = {
  name: 'PGlite',
  async open() {
    const database = await pgliteTestDatabase()
    let down = false
    return {
      db: database.db,
      async takeDown() {
        down = true
        await database.db.close()
      },
      cleanup: async () => {
        if (!down) await database.cleanup()
      },
    }
  },
}

const postgres: DatabaseSetup = {
  name: 'PostgreSQL',
  async open() {
    // The service talks to PostgreSQL through a TCP proxy; stopping the proxy cuts every connection
    // and refuses new ones, which is what the pool sees when the server goes away.
    const database = await postgresTestDatabase('of_http')
    const { rows } = await database.db.query<{ schema: string }>('SELECT current_schema() AS schema')
    const target = new URL(testDatabaseUrl)
    const proxy = await startProxy(target.hostname, Number(target.port || 5432))
    const url = new URL(testDatabaseUrl)
    url.hostname = '127.0.0.1'
    url.port = String(proxy.port)
    const db = openPostgres({ connectionString: url.toString(), schema: rows[0]?.schema ?? 'public' })
    return {
      db,
      takeDown: () => proxy.stop(),
      async cleanup() {
        await proxy.stop()
        await db.close()
        await database.cleanup()
      },
    }
  },
}

async function startProxy(host: string, port: number): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(port, host)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP port')
  return {
    port: address.port,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      await closed
    },
  }
}

const body = <T = OrderView>(response: LightMyRequestResponse) => response.json() as T
const problem = (response: LightMyRequestResponse) => response.json() as Problem
const fieldsOf = (response: LightMyRequestResponse) => (problem(response).errors ?? []).map((e) => e.field).sort()

function assertProblem(response: LightMyRequestResponse, status: number, code: string) {
  assert.equal(response.statusCode, status, response.body)
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/)
  const details = problem(response)
  assert.equal(details.status, status)
  assert.equal(details.code, code)
  return details
}

function orderApiSuite(setup: DatabaseSetup) {
  describe(`order HTTP API on ${setup.name}`, () => {
    let database: TestDatabaseWithOutage
    let api: Harness

    before(async () => {
      database = await setup.open()
      api = await startApi(database.db)
    })
    after(async () => {
      await api?.close()
      await database?.cleanup()
    })

    const create = (payload: object | string, headers: Record<string, string> = {}) =>
      api.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload,
        headers: typeof payload === 'string' ? { 'content-type': 'application/json', ...headers } : headers,
      })
    const createFor = async (customerId: string) => {
      const response = await create({ ...seed001, customerId })
      assert.equal(response.statusCode, 201, response.body)
      return body(response)
    }
    const command = (orderId: string, action: string, payload: object, headers: Record<string, string> = {}) =>
      api.http.inject({ method: 'POST', url: `/api/orders/${orderId}/${action}`, payload, headers })
    const history = async (orderId: string) => {
      const response = await api.http.inject({ method: 'GET', url: `/api/orders/${orderId}/events` })
      assert.equal(response.statusCode, 200, response.body)
      return body<{ orderId: string; events: Array<Record<string, unknown>> }>(response).events
    }
    const list = async (query: string) => {
      await api.projections.catchUp()
      const response = await api.http.inject({ method: 'GET', url: `/api/orders?${query}` })
      assert.equal(response.statusCode, 200, response.body)
      return body<{ orders: OrderView[]; nextCursor: string | null }>(response)
    }

    it("creates seed 001's order: 201, Location, ETag and the totals in decimals", async () => {
      const response = await create(seed001)

      assert.equal(response.statusCode, 201, response.body)
      assert.match(String(response.headers['content-type']), /^application\/json/)
      const order = body(response)
      assert.match(order.id, /^order-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/)
      assert.equal(response.headers.location, `/api/orders/${order.id}`)
      assert.equal(response.headers.etag, '"1"')
      assert.deepEqual(
        { ...order, createdAt: undefined, updatedAt: undefined },
        {
          id: order.id,
          version: 1,
          status: 'PENDING',
          customerId: 'customer-123',
          restaurantId: 'restaurant-456',
          items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
          subtotal: 25.98,
          totalAmount: 45.99,
          currency: 'USD',
          notes: null,
          paymentId: null,
          cancellationReason: null,
          deliveryAddress: null,
          contact: null,
          createdAt: undefined,
          updatedAt: undefined,
        },
      )
      assert.equal(order.createdAt, order.updatedAt)

      const fetched = await api.http.inject({ method: 'GET', url: String(response.headers.location) })
      assert.equal(fetched.statusCode, 200)
      assert.equal(fetched.headers.etag, '"1"')
      assert.deepEqual(body(fetched), order)
    })

    it('publishes OrderCreated on order-events in seed 001 shape, with the correlation id and trace context', async () => {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
      const response = await create(seed001, { 'x-correlation-id': 'checkout-42', traceparent })
      const orderId = body(response).id
      const seen: IncomingMessage[] = []
      await api.transport.ensureTopics([ORDER_EVENTS_TOPIC])
      const subscription = await api.transport.subscribe({
        groupId: uniqueName('http_reader'),
        topics: [ORDER_EVENTS_TOPIC],
        handler: async (message) => void seen.push(message),
      })
      try {
        const message = await waitFor(() => seen.find((m) => m.key === orderId), {
          message: `OrderCreated for ${orderId} on ${ORDER_EVENTS_TOPIC}`,
        })
        const event = JSON.parse(message.value) as Record<string, unknown>
        assert.match(String(event.eventId), /^[0-9a-f]{8}-[0-9a-f]{4}-7/)
        assert.match(String(event.occurredOn), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
        assert.deepEqual(
          {
            aggregateId: event.aggregateId,
            version: event.version,
            eventType: event.eventType,
            customerId: event.customerId,
            restaurantId: event.restaurantId,
            totalAmount: event.totalAmount,
            items: event.items,
            correlationId: event.correlationId,
          },
          {
            aggregateId: orderId,
            version: 1,
            eventType: 'OrderCreated',
            customerId: 'customer-123',
            restaurantId: 'restaurant-456',
            totalAmount: 45.99,
            items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
            correlationId: 'checkout-42',
          },
        )
        assert.equal(message.headers.traceparent, traceparent)
      } finally {
        await subscription.close()
      }
    })

    it('records the request id as correlation id when the caller sends none, and starts a new trace for a missing or malformed traceparent', async () => {
      for (const headers of [{ traceparent: 'not-a-trace' }, {}] as Record<string, string>[]) {
        const response = await create(seed001, headers)
        assert.equal(response.statusCode, 201, response.body)
        const orderId = body(response).id
        const [created] = await history(orderId)
        assert.match(String(created?.correlationId), /.+/)
        const stored = (await api.store.history(orderId))[0]
        assert.match(String(stored?.metadata.traceparent), /^00-[\da-f]{32}-[\da-f]{16}-01$/)
        assert.notEqual(stored?.metadata.traceparent, 'not-a-trace')
      }
    })

    it("creates seed 004's order as written, its total computed from the items", async () => {
      const response = await create(seed004)

      assert.equal(response.statusCode, 201, response.body)
      const order = body(response)
      assert.equal(order.customerId, 'customer123')
      assert.equal(order.restaurantId, null)
      assert.deepEqual(order.items, [{ productId: 'product123', price: 100, quantity: 1 }])
      assert.equal(order.subtotal, 100)
      assert.equal(order.totalAmount, 100)
      assert.equal(order.currency, 'USD')
    })

    it('rejects a totalAmount below the subtotal with a 400 naming totalAmount, and stores nothing', async () => {
      const customerId = uniqueName('cheap')
      const response = await create({ ...seed001, customerId, totalAmount: 20 })

      const details = assertProblem(response, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(response), ['totalAmount'])
      assert.match(details.detail, /totalAmount 20\.00 is below the items' subtotal 25\.98/)
      assert.deepEqual((await list(`customerId=${customerId}`)).orders, [])
    })

    it('names every invalid field of a body in one 400', async () => {
      const response = await create({
        restaurantId: 'restaurant-456',
        totalAmount: 'a lot',
        currency: 'usd',
        items: [
          { menuItemId: 'item-1', price: -1, quantity: 0 },
          { menuItemId: 'item-2', price: 12.999, quantity: 1.5 },
          { name: 'Soup', price: 4, quantity: 1 },
        ],
      })

      assertProblem(response, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(response), [
        'currency',
        'customerId',
        'items.0.price',
        'items.0.quantity',
        'items.1.price',
        'items.1.quantity',
        'items.2.menuItemId',
        'totalAmount',
      ])
      for (const error of problem(response).errors ?? []) assert.ok(error.message.length > 0, error.field)
    })

    it('answers a body that is not JSON, or not sent as JSON, with a 400 naming the body', async () => {
      const broken = await create('{"customerId": "customer-123", ')
      assertProblem(broken, 400, 'VALIDATION_FAILED')
      assert.deepEqual(problem(broken).errors, [{ field: '(body)', message: 'is not valid JSON' }])

      const empty = await api.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: '',
        headers: { 'content-type': 'application/json', 'content-length': '0' },
      })
      assertProblem(empty, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(empty), ['(body)'])

      for (const contentType of ['text/plain', 'application/x-www-form-urlencoded']) {
        const response = await api.http.inject({
          method: 'POST',
          url: '/api/orders',
          payload: 'customerId=customer-123',
          headers: { 'content-type': contentType },
        })
        assertProblem(response, 400, 'VALIDATION_FAILED')
        assert.deepEqual(problem(response).errors, [
          { field: '(body)', message: `must be application/json, not ${contentType}` },
        ])
      }

      const missing = await api.http.inject({ method: 'POST', url: `/api/orders/order-x/confirm` })
      assertProblem(missing, 400, 'VALIDATION_FAILED')
      assert.deepEqual(problem(missing).errors, [{ field: '(body)', message: 'is missing: send a JSON object' }])
    })

    it('answers an unknown order with 404 NOT_FOUND, for reads and commands', async () => {
      for (const [method, url, payload] of [
        ['GET', '/api/orders/order-unknown', undefined],
        ['GET', '/api/orders/order-unknown/events', undefined],
        ['POST', '/api/orders/order-unknown/confirm', { paymentId: 'payment-1' }],
        ['PATCH', '/api/orders/order-unknown', { notes: 'hello' }],
      ] as const) {
        const response = await api.http.inject({ method, url, ...(payload ? { payload } : {}) })
        const details = assertProblem(response, 404, 'NOT_FOUND')
        assert.match(details.detail, /order-unknown/)
      }
    })

    it("lists a customer's orders newest first, a page at a time", async () => {
      const customerId = uniqueName('pages')
      const first = await createFor(customerId)
      const second = await createFor(customerId)
      const third = await createFor(customerId)

      const page1 = await list(`customerId=${customerId}&limit=2`)
      assert.deepEqual(
        page1.orders.map((o) => o.id),
        [third.id, second.id],
      )
      assert.deepEqual(page1.orders[0], third)
      assert.ok(page1.nextCursor)

      const page2 = await list(`customerId=${customerId}&limit=2&cursor=${page1.nextCursor}`)
      assert.deepEqual(
        page2.orders.map((o) => o.id),
        [first.id],
      )
      assert.equal(page2.nextCursor, null)
    })

    it('lists orders by status', async () => {
      const customerId = uniqueName('statuses')
      const pending = await createFor(customerId)
      const confirmed = await createFor(customerId)
      const response = await command(confirmed.id, 'confirm', { paymentId: 'payment-1' })
      assert.equal(response.statusCode, 200, response.body)

      const confirmedOnly = await list(`customerId=${customerId}&status=CONFIRMED`)
      assert.deepEqual(
        confirmedOnly.orders.map((o) => [o.id, o.status]),
        [[confirmed.id, 'CONFIRMED']],
      )
      // Statuses are not case-sensitive, as in the commands other services send.
      const pendingOnly = await list(`customerId=${customerId}&status=pending`)
      assert.deepEqual(
        pendingOnly.orders.map((o) => o.id),
        [pending.id],
      )
      const anyCustomer = await list('status=CONFIRMED&limit=100')
      assert.ok(anyCustomer.orders.every((o) => o.status === 'CONFIRMED'))
      assert.ok(anyCustomer.orders.some((o) => o.id === confirmed.id))
      const newestFirst = anyCustomer.orders.map((o) => o.createdAt)
      assert.deepEqual(newestFirst, [...newestFirst].sort().reverse())
    })

    it('rejects an invalid status, limit or cursor with a 400 naming each', async () => {
      const response = await api.http.inject({ method: 'GET', url: '/api/orders?status=SHIPPED&limit=0&cursor=abc' })
      assertProblem(response, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(response), ['cursor', 'limit', 'status'])

      for (const limit of ['101', 'ten', '2.5']) {
        const tooMany = await api.http.inject({ method: 'GET', url: `/api/orders?limit=${limit}` })
        assertProblem(tooMany, 400, 'VALIDATION_FAILED')
        assert.deepEqual(fieldsOf(tooMany), ['limit'])
      }
      const forged = Buffer.from(JSON.stringify(['yesterday', 'order-1'])).toString('base64url')
      const forgedCursor = await api.http.inject({ method: 'GET', url: `/api/orders?cursor=${forged}` })
      assertProblem(forgedCursor, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(forgedCursor), ['cursor'])
    })

    it('shows the history: OrderCreated then OrderConfirmed, amounts in decimals', async () => {
      const order = await createFor(uniqueName('history'))
      await command(order.id, 'confirm', { paymentId: 'payment-9' })

      const events = await history(order.id)
      assert.deepEqual(
        events.map((e) => [e.eventType, e.version, e.aggregateId, e.schemaVersion]),
        [
          ['OrderCreated', 1, order.id, 2],
          ['OrderConfirmed', 2, order.id, 1],
        ],
      )
      assert.equal(events[0]?.totalAmount, 45.99)
      assert.equal(events[0]?.subtotal, 25.98)
      assert.deepEqual(events[0]?.items, seed001.items)
      assert.equal(events[1]?.paymentId, 'payment-9')
      for (const event of events) assert.match(String(event.eventId), /^[0-9a-f-]{36}$/)
    })

    it('confirms, dispatches and delivers an order, each answer with the new version as ETag', async () => {
      const order = await createFor(uniqueName('fulfil'))

      const confirmed = await command(order.id, 'confirm', { paymentId: 'payment-1' })
      assert.equal(confirmed.statusCode, 200, confirmed.body)
      assert.equal(confirmed.headers.etag, '"2"')
      assert.equal(body(confirmed).status, 'CONFIRMED')
      assert.equal(body(confirmed).paymentId, 'payment-1')

      const dispatched = await command(order.id, 'status', { status: 'DISPATCHED' }, { 'if-match': '"2"' })
      assert.equal(dispatched.statusCode, 200, dispatched.body)
      assert.equal(body(dispatched).status, 'DISPATCHED')

      const delivered = await command(order.id, 'status', { status: 'delivered' }, { 'if-match': '3' })
      assert.equal(delivered.statusCode, 200, delivered.body)
      assert.equal(delivered.headers.etag, '"4"')
      assert.equal(body(delivered).status, 'DELIVERED')

      const cancel = await command(order.id, 'cancel', { reason: 'too late' })
      const details = assertProblem(cancel, 409, 'INVALID_TRANSITION')
      assert.equal(details.detail, 'cannot cancel an order that is DELIVERED')
      assert.equal((await history(order.id)).length, 4)
    })

    it('refuses to confirm a cancelled order with 409 INVALID_TRANSITION and stores nothing', async () => {
      const order = await createFor(uniqueName('cancelled'))
      const cancelled = await command(order.id, 'cancel', { reason: 'customer changed their mind' })
      assert.equal(cancelled.statusCode, 200, cancelled.body)
      assert.equal(body(cancelled).status, 'CANCELLED')
      assert.equal(body(cancelled).cancellationReason, 'customer changed their mind')

      const confirm = await command(order.id, 'confirm', { paymentId: 'payment-1' })
      const details = assertProblem(confirm, 409, 'INVALID_TRANSITION')
      assert.equal(details.detail, 'cannot confirm an order that is CANCELLED')
      assert.equal((await history(order.id)).length, 2)
      const current = await api.http.inject({ method: 'GET', url: `/api/orders/${order.id}` })
      assert.equal(body(current).status, 'CANCELLED')
      assert.equal(current.headers.etag, '"2"')
    })

    it('refuses a status change the lifecycle does not allow, and one that needs a payment without it', async () => {
      const order = await createFor(uniqueName('skip'))
      const deliver = await command(order.id, 'status', { status: 'DELIVERED' })
      assert.equal(assertProblem(deliver, 409, 'INVALID_TRANSITION').detail, 'cannot deliver an order that is PENDING')

      const confirm = await command(order.id, 'status', { status: 'CONFIRMED' })
      assertProblem(confirm, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(confirm), ['paymentId'])

      const unknown = await command(order.id, 'status', { status: 'SHIPPED' })
      assertProblem(unknown, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(unknown), ['status'])
      assert.equal((await history(order.id)).length, 1)
    })

    it('updates the items and notes of a pending order when the total stays, and refuses a new total with 409', async () => {
      const order = await createFor(uniqueName('update'))
      // Seed 001: two pizzas at 12.99 charged 45.99. One pizza and a pasta at 12.99 keep that total.
      const sameValue = [
        { menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 1 },
        { menuItemId: 'item-3', name: 'Pasta', price: 12.99, quantity: 1 },
      ]
      const response = await api.http.inject({
        method: 'PATCH',
        url: `/api/orders/${order.id}`,
        payload: { items: sameValue, notes: 'no onions' },
        headers: { 'if-match': '"1"' },
      })

      assert.equal(response.statusCode, 200, response.body)
      assert.equal(response.headers.etag, '"2"')
      const updated = body(response)
      assert.equal(updated.subtotal, 25.98)
      assert.equal(updated.totalAmount, 45.99)
      assert.equal(updated.notes, 'no onions')

      // The payment was requested for 45.99 when the order was placed: another total is refused.
      const repriced = await api.http.inject({
        method: 'PATCH',
        url: `/api/orders/${order.id}`,
        payload: { items: [{ menuItemId: 'item-2', name: 'Salad', price: 9.5, quantity: 1 }], totalAmount: 29.51 },
      })
      const refused = assertProblem(repriced, 409, 'ORDER_TOTAL_FIXED')
      assert.match(String(refused.detail), /the total is fixed once payment is requested; cancel and place a new order/)
      assert.deepEqual(fieldsOf(repriced), ['items', 'totalAmount'])
      assert.equal((await history(order.id)).length, 2)

      const empty = await api.http.inject({ method: 'PATCH', url: `/api/orders/${order.id}`, payload: {} })
      assertProblem(empty, 400, 'VALIDATION_FAILED')
      assert.deepEqual(problem(empty).errors, [
        { field: '(body)', message: 'at least one of items or notes is required' },
      ])
    })

    it('checks If-Match: a stale version is 409 VERSION_CONFLICT, the current one in any form is accepted', async () => {
      const order = await createFor(uniqueName('ifmatch'))
      const notes = (value: string, ifMatch: string) =>
        api.http.inject({
          method: 'PATCH',
          url: `/api/orders/${order.id}`,
          payload: { notes: value },
          headers: { 'if-match': ifMatch },
        })

      assert.equal((await notes('first', '"1"')).statusCode, 200)
      const stale = await notes('second', '"1"')
      const details = assertProblem(stale, 409, 'VERSION_CONFLICT')
      assert.equal(details.currentVersion, 2)
      assert.equal(details.expectedVersion, 1)

      assert.equal((await notes('weak', 'W/"2"')).statusCode, 200)
      assert.equal((await notes('bare', '3')).statusCode, 200)
      assert.equal((await notes('any', '*')).statusCode, 200)

      const invalid = await notes('invalid', 'yesterday')
      assertProblem(invalid, 400, 'VALIDATION_FAILED')
      assert.deepEqual(fieldsOf(invalid), ['if-match'])
      assert.equal((await history(order.id)).length, 5)
    })

    it('lets exactly one of a concurrent confirm and cancel based on the same version through', async () => {
      const order = await createFor(uniqueName('race'))
      const headers = { 'if-match': '"1"' }

      const [confirm, cancel] = await Promise.all([
        command(order.id, 'confirm', { paymentId: 'payment-1' }, headers),
        command(order.id, 'cancel', { reason: 'changed my mind' }, headers),
      ])

      assert.deepEqual([confirm.statusCode, cancel.statusCode].sort(), [200, 409])
      const loser = confirm.statusCode === 409 ? confirm : cancel
      assert.equal(problem(loser).code, 'VERSION_CONFLICT')
      const types = (await history(order.id)).map((e) => e.eventType)
      assert.equal(types.length, 2)
      assert.equal(types[0], 'OrderCreated')
      assert.ok(types[1] === 'OrderConfirmed' || types[1] === 'OrderCancelled', String(types[1]))
    })

    it('replays the first response for a retried Idempotency-Key and creates one order', async () => {
      const customerId = uniqueName('retry')
      const key = uniqueName('key')
      const first = await create({ ...seed001, customerId }, { 'idempotency-key': key })
      assert.equal(first.statusCode, 201, first.body)
      assert.equal(first.headers['idempotent-replayed'], undefined)

      // The same request, its fields in another order and an amount as a string.
      const retried = JSON.stringify({
        items: seed001.items,
        totalAmount: '45.99',
        restaurantId: 'restaurant-456',
        customerId,
      })
      const second = await create(retried, { 'idempotency-key': key })

      assert.equal(second.statusCode, 201, second.body)
      assert.equal(second.headers.location, first.headers.location)
      assert.equal(second.headers.etag, first.headers.etag)
      assert.equal(second.headers['idempotent-replayed'], 'true')
      assert.deepEqual(body(second), body(first))
      assert.deepEqual(
        (await list(`customerId=${customerId}`)).orders.map((o) => o.id),
        [body(first).id],
      )
    })

    it('creates one order for concurrent requests with the same Idempotency-Key', async () => {
      const customerId = uniqueName('burst')
      const key = uniqueName('key')
      const responses = await Promise.all(
        Array.from({ length: 5 }, () => create({ ...seed001, customerId }, { 'idempotency-key': key })),
      )

      for (const response of responses) assert.equal(response.statusCode, 201, response.body)
      const ids = new Set(responses.map((r) => body(r).id))
      assert.equal(ids.size, 1)
      assert.deepEqual(
        (await list(`customerId=${customerId}`)).orders.map((o) => o.id),
        [...ids],
      )
    })

    it('refuses an Idempotency-Key reused for a different request with 422', async () => {
      const customerId = uniqueName('reuse')
      const key = uniqueName('key')
      assert.equal((await create({ ...seed001, customerId }, { 'idempotency-key': key })).statusCode, 201)

      const reused = await create({ ...seed001, customerId, totalAmount: 50 }, { 'idempotency-key': key })

      const details = assertProblem(reused, 422, 'IDEMPOTENCY_KEY_REUSED')
      assert.match(details.detail, new RegExp(key))
      assert.equal((await list(`customerId=${customerId}`)).orders.length, 1)
    })

    // Last: it takes the database down for good.
    it('answers 503 DATABASE_UNAVAILABLE with Retry-After once the database is down', async () => {
      const created = await create(seed001)
      assert.equal(created.statusCode, 201, created.body)
      const orderId = body(created).id
      // What is under test is the API's answer. The background workers are stopped first so that
      // their own reaction to the outage (retries, failed polls) cannot interleave with it.
      await api.stopWorkers()

      await database.takeDown()

      for (const [method, url, payload] of [
        ['GET', `/api/orders/${orderId}`, undefined],
        ['GET', '/api/orders', undefined],
        ['POST', '/api/orders', seed001],
        ['POST', `/api/orders/${orderId}/confirm`, { paymentId: 'payment-1' }],
      ] as const) {
        const response = await api.http.inject({ method, url, ...(payload ? { payload } : {}) })
        const details = assertProblem(response, 503, 'DATABASE_UNAVAILABLE')
        assert.equal(response.headers['retry-after'], '5', `${method} ${url}`)
        assert.equal(details.detail, 'the database is unavailable; retry later')
      }
    })
  })
}

orderApiSuite(pglite)
orderApiSuite(postgres)
