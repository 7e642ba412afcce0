import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import { SignJWT, UnsecuredJWT } from 'jose'
import { startTestApp, type TestTokens, testTokens } from '../../../test/support/app.ts'
import { pgliteTestDatabase, type TestDatabase } from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { auditModule } from '../../audit/index.ts'
import { cartModule } from '../../cart/index.ts'
import { orderModule } from '../../order/index.ts'
import type { ServiceModule } from '../module.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import type { Transport } from '../transport/port.ts'
import { createDevelopmentTokens, DEVELOPMENT_AUDIENCE, DEVELOPMENT_ISSUER } from './dev-tokens.ts'
import type { Problem } from './problem.ts'

/**
 * Access control through HTTP, with development tokens (the real verification path with a local
 * key): who is refused (401), which role a route needs (403), what a customer sees of others'
 * orders and carts (404, and nothing changed), idempotency keys per client, and rate limits (429).
 */

interface Running {
  app: App
  tokens: TestTokens
  close(): Promise<void>
}

async function start(
  options: { env?: Record<string, string>; modules?: () => ServiceModule[] } = {},
): Promise<Running> {
  const database: TestDatabase = await pgliteTestDatabase()
  const transport: Transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 50 })
  const tokens = await testTokens()
  const app = await startTestApp({
    db: database.db,
    transport,
    modules: (options.modules ?? (() => [cartModule(), orderModule(), auditModule()]))(),
    ...(options.env ? { env: options.env } : {}),
    app: { authenticate: tokens.authenticate },
  })
  return {
    app,
    tokens,
    async close() {
      await app.close()
      await transport.close()
      await database.cleanup()
    },
  }
}

const orderBody = (customerId: string) => ({
  customerId,
  items: [{ productId: 'p-1', name: 'Pizza', price: 12.5, quantity: 2 }],
})

const problemOf = (response: LightMyRequestResponse) => {
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/)
  return response.json<Problem>()
}

describe('access control', () => {
  let running: Running
  let alice: { authorization: string }
  let bob: { authorization: string }
  let service: { authorization: string }
  let operator: { authorization: string }

  before(async () => {
    running = await start()
    alice = await running.tokens.headers('alice')
    bob = await running.tokens.headers('bob', ['customer'])
    service = await running.tokens.headers('payments', ['service'])
    operator = await running.tokens.headers('ops-1', ['operator'])
  })
  after(() => running?.close())

  const call = (method: 'GET' | 'POST' | 'PATCH', url: string, headers: Record<string, string> = {}, body?: unknown) =>
    running.app.http.inject({ method, url, headers, ...(body === undefined ? {} : { payload: body as object }) })

  const createOrder = async (as: { authorization: string }, customerId: string) => {
    const response = await call('POST', '/api/orders', as, orderBody(customerId))
    assert.equal(response.statusCode, 201, response.body)
    return response.json<{ id: string; customerId: string; version: number; status: string }>()
  }

  describe('authentication', () => {
    it('refuses anonymous calls with 401, a problem and WWW-Authenticate; health stays open', async () => {
      for (const [method, url] of [
        ['GET', '/api/orders'],
        ['GET', '/api/orders/order-1'],
        ['POST', '/api/orders/order-1/cancel'],
        ['GET', '/api/carts/cart-1'],
        ['GET', '/metrics'],
      ] as const) {
        const response = await call(method, url, {}, method === 'POST' ? { reason: 'x' } : undefined)
        assert.equal(response.statusCode, 401, `${method} ${url}: ${response.body}`)
        assert.equal(problemOf(response).code, 'UNAUTHENTICATED')
        assert.equal(response.headers['www-authenticate'], 'Bearer realm="orderflow"')
      }
      const created = await call('POST', '/api/orders', {}, orderBody('alice'))
      assert.equal(created.statusCode, 401)
      assert.equal((await call('GET', '/health')).statusCode, 200)
      assert.deepEqual((await call('GET', '/health')).json(), { status: 'ok' })
    })

    it('refuses a token with a wrong signature, alg none, an expiry passed, or a not-before to come', async () => {
      const otherKey = await createDevelopmentTokens()
      const forged = await otherKey.issue('alice', ['operator'])
      const unsigned = new UnsecuredJWT({ roles: ['operator'] })
        .setSubject('alice')
        .setIssuer(DEVELOPMENT_ISSUER)
        .setAudience(DEVELOPMENT_AUDIENCE)
        .setExpirationTime('1h')
        .encode()
      const hs256 = await new SignJWT({ roles: ['operator'] })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('alice')
        .setIssuer(DEVELOPMENT_ISSUER)
        .setAudience(DEVELOPMENT_AUDIENCE)
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode('a shared secret the server never configured, 32+ bytes'))
      const expired = await running.tokens.issue('alice', ['customer'], { expiresInSeconds: -120 })
      const early = await running.tokens.issue('alice', ['customer'], { notBeforeSeconds: 120 })
      const cases = { forged, unsigned, hs256, expired, early, garbage: 'not-a-jwt' }
      for (const [name, token] of Object.entries(cases)) {
        const response = await call('GET', '/api/orders', { authorization: `Bearer ${token}` })
        assert.equal(response.statusCode, 401, `${name}: ${response.body}`)
        assert.equal(problemOf(response).code, 'UNAUTHENTICATED', name)
        assert.equal(response.headers['www-authenticate'], 'Bearer realm="orderflow", error="invalid_token"', name)
      }
      const expiredProblem = problemOf(await call('GET', '/api/orders', { authorization: `Bearer ${expired}` }))
      assert.match(expiredProblem.detail, /expired/)
      // Not the scheme: Basic credentials are no bearer token.
      const basic = await call('GET', '/api/orders', { authorization: 'Basic YWxpY2U6c2VjcmV0' })
      assert.equal(basic.statusCode, 401)
      // The same request with a good token passes: the refusals above are about the tokens.
      assert.equal((await call('GET', '/api/orders', alice)).statusCode, 200)
    })
  })

  describe('object-level rules: a customer reaches only their own orders and carts', () => {
    it("answers 404 for B reading, listing, changing or cancelling A's order, and changes nothing", async () => {
      const order = await createOrder(alice, 'alice')
      const missing = problemOf(await call('GET', '/api/orders/order-does-not-exist', bob))

      const read = await call('GET', `/api/orders/${order.id}`, bob)
      assert.equal(read.statusCode, 404)
      const readProblem = problemOf(read)
      // The same answer as for an order that does not exist, apart from the id it names.
      assert.deepEqual(
        { ...readProblem, id: undefined, instance: undefined, detail: readProblem.detail.replace(order.id, '?') },
        { ...missing, id: undefined, instance: undefined, detail: missing.detail.replace('order-does-not-exist', '?') },
      )
      assert.equal((await call('GET', `/api/orders/${order.id}/events`, bob)).statusCode, 404)
      const patched = await call('PATCH', `/api/orders/${order.id}`, bob, { notes: 'mine now' })
      assert.equal(patched.statusCode, 404, patched.body)
      const cancelled = await call('POST', `/api/orders/${order.id}/cancel`, bob, { reason: 'not mine' })
      assert.equal(cancelled.statusCode, 404, cancelled.body)
      assert.equal(problemOf(cancelled).code, 'NOT_FOUND')

      const after = await call('GET', `/api/orders/${order.id}`, alice)
      assert.equal(after.statusCode, 200)
      assert.equal(after.json<{ status: string }>().status, 'PENDING')
      assert.equal(after.json<{ version: number }>().version, order.version)
      assert.equal(after.json<{ notes: string | null }>().notes, null)
    })

    it("lists only the caller's orders, whatever customerId the query names", async () => {
      const mine = await createOrder(bob, 'bob')
      const theirs = await createOrder(alice, 'alice')
      await running.app.projections.catchUp()
      const listed = (response: LightMyRequestResponse) => {
        assert.equal(response.statusCode, 200, response.body)
        return response.json<{ orders: { id: string; customerId: string }[] }>().orders
      }
      const bobs = listed(await call('GET', '/api/orders?limit=100', bob))
      assert.ok(bobs.some((o) => o.id === mine.id))
      assert.ok(
        bobs.every((o) => o.customerId === 'bob'),
        JSON.stringify(bobs),
      )
      assert.deepEqual(listed(await call('GET', '/api/orders?customerId=alice', bob)), [])
      // An operator lists every customer's.
      const all = listed(await call('GET', '/api/orders?limit=100', operator))
      assert.ok(all.some((o) => o.id === theirs.id) && all.some((o) => o.id === mine.id))
    })

    it('takes the customer from the token, not the body', async () => {
      const order = await createOrder(bob, 'alice')
      assert.equal(order.customerId, 'bob')
      assert.equal((await call('GET', `/api/orders/${order.id}`, alice)).statusCode, 404)
      const cart = await call('POST', '/api/carts', bob, { customerId: 'alice' })
      assert.equal(cart.statusCode, 201, cart.body)
      assert.equal(cart.json<{ customerId: string }>().customerId, 'bob')
    })

    it("answers 404 for another customer's cart, and leaves it as it was", async () => {
      const created = await call('POST', '/api/carts', alice, { customerId: 'alice' })
      const cartId = created.json<{ id: string }>().id
      const item = { productId: 'p-9', name: 'Tea', price: 3.5, quantity: 1 }
      assert.equal((await call('POST', `/api/carts/${cartId}/items`, alice, item)).statusCode, 200)
      for (const [method, url, body] of [
        ['GET', `/api/carts/${cartId}`, undefined],
        ['POST', `/api/carts/${cartId}/items`, item],
        ['PATCH', `/api/carts/${cartId}/items/p-9`, { quantity: 5 }],
        ['POST', `/api/carts/${cartId}/checkout`, undefined],
      ] as const) {
        const response = await call(method, url, bob, body)
        assert.equal(response.statusCode, 404, `${method} ${url}: ${response.body}`)
      }
      const cart = (await call('GET', `/api/carts/${cartId}`, alice)).json<{
        status: string
        items: { quantity: number }[]
      }>()
      assert.equal(cart.status, 'OPEN')
      assert.deepEqual(
        cart.items.map((i) => i.quantity),
        [1],
      )
    })
  })

  describe('function-level rules', () => {
    it('refuses service transitions to customers (403), lets services make them and customers cancel their own', async () => {
      const order = await createOrder(alice, 'alice')
      const confirm = await call('POST', `/api/orders/${order.id}/confirm`, alice, { paymentId: 'pay-1' })
      assert.equal(confirm.statusCode, 403, confirm.body)
      assert.equal(problemOf(confirm).code, 'FORBIDDEN')
      const status = await call('POST', `/api/orders/${order.id}/status`, alice, { status: 'DISPATCHED' })
      assert.equal(status.statusCode, 403)
      // Operators are not services either: fulfilment is not done by hand.
      assert.equal(
        (await call('POST', `/api/orders/${order.id}/confirm`, operator, { paymentId: 'pay-1' })).statusCode,
        403,
      )
      assert.equal((await call('GET', `/api/orders/${order.id}`, alice)).json<{ status: string }>().status, 'PENDING')

      const other = await createOrder(alice, 'alice')
      const confirmed = await call('POST', `/api/orders/${other.id}/confirm`, service, { paymentId: 'pay-2' })
      assert.equal(confirmed.statusCode, 200, confirmed.body)
      assert.equal(confirmed.json<{ status: string }>().status, 'CONFIRMED')

      const cancel = await call('POST', `/api/orders/${order.id}/cancel`, alice, { reason: 'changed my mind' })
      assert.equal(cancel.statusCode, 200, cancel.body)
      assert.equal(cancel.json<{ status: string }>().status, 'CANCELLED')
    })

    it('lets operators reach the admin routes, and no one else', async () => {
      for (const url of ['/metrics', '/api/audit']) {
        for (const who of [alice, service]) {
          const refused = await call('GET', url, who)
          assert.equal(refused.statusCode, 403, `${url}: ${refused.body}`)
          assert.equal(problemOf(refused).requiredRole, 'operator')
        }
        const allowed = await call('GET', url, operator)
        assert.equal(allowed.statusCode, 200, `${url}: ${allowed.body}`)
      }
    })
  })

  describe('idempotency keys are per client', () => {
    it("gives another client's reuse of a key a new, independent order", async () => {
      const key = { 'idempotency-key': 'key-shared-by-chance' }
      const first = await call('POST', '/api/orders', { ...alice, ...key }, orderBody('alice'))
      assert.equal(first.statusCode, 201)
      const replay = await call('POST', '/api/orders', { ...alice, ...key }, orderBody('alice'))
      assert.equal(replay.headers['idempotent-replayed'], 'true')
      assert.equal(replay.json<{ id: string }>().id, first.json<{ id: string }>().id)

      const other = await call('POST', '/api/orders', { ...bob, ...key }, orderBody('alice'))
      assert.equal(other.statusCode, 201, other.body)
      assert.equal(other.headers['idempotent-replayed'], undefined)
      assert.notEqual(other.json<{ id: string }>().id, first.json<{ id: string }>().id)
      assert.equal(other.json<{ customerId: string }>().customerId, 'bob')
    })
  })
})

describe('rate limits', () => {
  let running: Running
  before(async () => {
    running = await start({
      env: { RATE_LIMIT_PER_CLIENT: '3', RATE_LIMIT_PER_IP: '8', RATE_LIMIT_WINDOW_MS: '60000' },
      modules: () => [orderModule()],
    })
  })
  after(() => running?.close())

  it('answers 429 problem+json with Retry-After past the per-client limit, other clients unaffected', async () => {
    const carol = await running.tokens.headers('carol')
    const dave = await running.tokens.headers('dave')
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) {
      statuses.push((await running.app.http.inject({ method: 'GET', url: '/api/orders', headers: carol })).statusCode)
    }
    assert.deepEqual(statuses, [200, 200, 200, 429])
    const limited = await running.app.http.inject({ method: 'GET', url: '/api/orders', headers: carol })
    assert.equal(limited.statusCode, 429)
    const problem = problemOf(limited)
    assert.equal(problem.code, 'TOO_MANY_REQUESTS')
    assert.ok(Number(limited.headers['retry-after']) >= 1, `retry-after: ${limited.headers['retry-after']}`)
    assert.equal((await running.app.http.inject({ method: 'GET', url: '/api/orders', headers: dave })).statusCode, 200)
  })

  it('limits per address before authentication, so bad tokens count too; health probes are not counted', async () => {
    const from = (ip: string) => ({ remoteAddress: ip })
    const statuses: number[] = []
    for (let i = 0; i < 9; i++) {
      const response = await running.app.http.inject({
        method: 'GET',
        url: '/api/orders',
        headers: { authorization: 'Bearer forged' },
        ...from('10.9.9.9'),
      })
      statuses.push(response.statusCode)
    }
    assert.deepEqual(statuses, [...Array(8).fill(401), 429])
    const health = await running.app.http.inject({ method: 'GET', url: '/health', ...from('10.9.9.9') })
    assert.equal(health.statusCode, 200)
  })
})

describe('rate limits for operators and services', () => {
  let running: Running
  before(async () => {
    running = await start({
      env: { RATE_LIMIT_PER_CLIENT: '100', RATE_LIMIT_PER_IP: '3', RATE_LIMIT_WINDOW_MS: '60000' },
      modules: () => [orderModule(), auditModule()],
    })
  })
  after(() => running?.close())

  const burst = async (url: string, headers: Record<string, string>, ip: string, n: number) => {
    const statuses: number[] = []
    for (let i = 0; i < n; i++) {
      statuses.push((await running.app.http.inject({ method: 'GET', url, headers, remoteAddress: ip })).statusCode)
    }
    return statuses
  }

  it('does not count operators and services by address: a burst of /api/audit gets no 429', async () => {
    const operator = await running.tokens.headers('ops-1', ['operator'])
    const service = await running.tokens.headers('payments', ['service'])
    assert.deepEqual(await burst('/api/audit', operator, '10.7.7.7', 10), Array(10).fill(200))
    assert.deepEqual(await burst('/api/orders', service, '10.7.7.7', 10), Array(10).fill(200))
  })

  it('still limits anonymous callers and customers from one address', async () => {
    assert.deepEqual(await burst('/api/audit', {}, '10.8.8.8', 4), [401, 401, 401, 429])
    const forged = { authorization: 'Bearer forged' }
    assert.deepEqual(await burst('/api/audit', forged, '10.8.8.9', 4), [401, 401, 401, 429])
    const customer = await running.tokens.headers('erin')
    assert.deepEqual(await burst('/api/orders', customer, '10.8.8.10', 4), [200, 200, 200, 429])
  })
})

describe('readiness with authentication on', () => {
  // A check that is down, and says why in terms an outsider should not read.
  const failing: ServiceModule = {
    name: 'ledger',
    start: async () => ({
      health: [
        {
          name: 'ledger',
          check: async () => {
            throw new Error('connect ECONNREFUSED 10.1.2.3:5432')
          },
        },
      ],
    }),
  }
  let running: Running
  before(async () => {
    running = await start({ modules: () => [orderModule(), failing] })
  })
  after(() => running?.close())

  it("shows why a check is down to operators only; anyone sees each check's status", async () => {
    const anonymous = await running.app.http.inject({ method: 'GET', url: '/health/ready' })
    assert.equal(anonymous.statusCode, 503)
    const body = anonymous.json<{ checks: Record<string, { status: string; error?: string }> }>()
    assert.deepEqual(body.checks.ledger, { status: 'down' })
    assert.doesNotMatch(anonymous.body, /10\.1\.2\.3/)

    const operator = await running.app.http.inject({
      method: 'GET',
      url: '/health/ready',
      headers: await running.tokens.headers('ops-1', ['operator']),
    })
    assert.equal(operator.statusCode, 503)
    assert.match(
      operator.json<{ checks: Record<string, { error?: string }> }>().checks.ledger?.error ?? '',
      /ECONNREFUSED 10\.1\.2\.3/,
    )
  })
})
