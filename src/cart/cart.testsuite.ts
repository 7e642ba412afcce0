import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestApp } from '../../test/support/app.ts'
import { follow, waitFor } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import { CART_EVENTS_TOPIC } from '../contracts/cart/events.ts'
import { deliveryModule } from '../delivery/index.ts'
import { dispatchModule } from '../dispatch/index.ts'
import { CART_CHECKOUT_GROUP } from '../order/consumers/cart-checkout.ts'
import { type OrderModule, orderModule } from '../order/index.ts'
import { paymentModule } from '../payment/index.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import type { Transport } from '../platform/transport/port.ts'
import { sagaModule } from '../saga/index.ts'
import { cartModule } from './index.ts'

/**
 * Seed 004's first step end to end: a cart filled and checked out over HTTP becomes an order that
 * goes through payment, dispatch and delivery, and a redelivered CartCheckedOut creates nothing.
 */

export interface CartSetup {
  db: SqlDatabase
  transport: Transport
  cleanup(): Promise<void>
}

type Json = Record<string, unknown>

export function cartSuite(name: string, setup: () => Promise<CartSetup>, timeoutMs = 40_000): void {
  describe(`seed 004's carts on ${name}`, () => {
    let context: CartSetup
    let app: App

    before(async () => {
      context = await setup()
      app = await startTestApp({
        db: context.db,
        transport: context.transport,
        env: { DELIVERY_DELAY_MS: '50', SCHEDULER_POLL_INTERVAL_MS: '100' },
        modules: [cartModule(), orderModule(), paymentModule(), dispatchModule(), deliveryModule(), sagaModule()],
        app: { pollIntervalMs: 100 },
      })
    })
    after(async () => {
      await app?.close()
      await context?.cleanup()
    })

    const call = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: Json) => {
      const response = await app.http.inject({ method, url, ...(payload ? { payload } : {}) })
      return { status: response.statusCode, body: response.json<Json>(), headers: response.headers }
    }

    it('opens a cart, adds, changes and removes items, validates, and refuses changes after checkout', async () => {
      const opened = await call('POST', '/api/carts', { customerId: 'customer-1' })
      assert.equal(opened.status, 201, JSON.stringify(opened.body))
      const cartId = String(opened.body.id)
      assert.equal(opened.headers.location, `/api/carts/${cartId}`)
      assert.equal(opened.body.currency, 'USD')

      const invalid = await call('POST', `/api/carts/${cartId}/items`, { productId: 'beans', price: -1, quantity: 0 })
      assert.equal(invalid.status, 400)
      assert.deepEqual((invalid.body.errors as { field: string }[]).map((e) => e.field).sort(), ['price', 'quantity'])
      const emptyCheckout = await call('POST', `/api/carts/${cartId}/checkout`)
      assert.equal(emptyCheckout.status, 409, 'an empty cart cannot be checked out')

      await call('POST', `/api/carts/${cartId}/items`, { productId: 'beans', name: 'Beans', price: 12.5, quantity: 1 })
      await call('POST', `/api/carts/${cartId}/items`, { productId: 'beans', price: 12.5, quantity: 1 })
      await call('POST', `/api/carts/${cartId}/items`, { productId: 'mug', price: 8, quantity: 1 })
      const changed = await call('PATCH', `/api/carts/${cartId}/items/mug`, { quantity: 3 })
      assert.equal(changed.status, 200)
      const removed = await call('DELETE', `/api/carts/${cartId}/items/mug`)
      assert.equal(removed.status, 200)
      assert.deepEqual(removed.body.items, [{ productId: 'beans', name: 'Beans', price: 12.5, quantity: 2 }])
      assert.equal(removed.body.totalAmount, 25)
      assert.equal((await call('DELETE', `/api/carts/${cartId}/items/mug`)).status, 404)
      assert.equal((await call('GET', '/api/carts/cart-unknown')).status, 404)

      const checkedOut = await call('POST', `/api/carts/${cartId}/checkout`)
      assert.equal(checkedOut.status, 200, JSON.stringify(checkedOut.body))
      assert.equal(checkedOut.body.status, 'CHECKED_OUT')
      const afterwards = await call('POST', `/api/carts/${cartId}/items`, { productId: 'mug', price: 8, quantity: 1 })
      assert.equal(afterwards.status, 409)
      assert.match(String(afterwards.headers['content-type']), /application\/problem\+json/)
    })

    it('documents every cart route in the OpenAPI document, with problem+json errors', async () => {
      const document = (await call('GET', '/openapi.json')).body as {
        paths: Record<string, Record<string, { operationId?: string; responses?: Record<string, { content?: Json }> }>>
      }
      const operations = {
        '/api/carts': ['post', 'createCart'],
        '/api/carts/{id}': ['get', 'getCart'],
        '/api/carts/{id}/items': ['post', 'addCartItem'],
        '/api/carts/{id}/items/{productId}': ['patch', 'changeCartItem'],
        '/api/carts/{id}/checkout': ['post', 'checkOutCart'],
      } as const
      for (const [path, [method, operationId]] of Object.entries(operations)) {
        const operation = document.paths[path]?.[method]
        assert.equal(operation?.operationId, operationId, `${method.toUpperCase()} ${path} is documented`)
        assert.ok(operation?.responses?.['400']?.content?.['application/problem+json'], `${path} documents its 400`)
      }
      assert.equal(document.paths['/api/carts/{id}/items/{productId}']?.delete?.operationId, 'removeCartItem')
    })

    it('carries the delivery address and contact given at checkout to the order, sealed on cart-events', async () => {
      const checkouts = await follow(context.transport, CART_EVENTS_TOPIC, 'cart-address-reader')
      try {
        const address = { name: 'Cy Cart', street: '3 Basket Road', city: 'Lyon', postalCode: '69001', country: 'FR' }
        const contact = { phone: '+33 4 00 00 00 00' }
        const opened = await call('POST', '/api/carts', { customerId: 'customer-3' })
        const cartId = String(opened.body.id)
        await call('POST', `/api/carts/${cartId}/items`, { productId: 'mug', price: 8, quantity: 2 })
        const refused = await call('POST', `/api/carts/${cartId}/checkout`, {
          deliveryAddress: { ...address, city: '' },
        })
        assert.equal(refused.status, 400)
        const checkedOut = await call('POST', `/api/carts/${cartId}/checkout`, { deliveryAddress: address, contact })
        assert.equal(checkedOut.status, 200, JSON.stringify(checkedOut.body))
        const orderId = String(checkedOut.body.orderId)
        const order = await waitFor(
          async () => {
            const current = await call('GET', `/api/orders/${orderId}`)
            return current.status === 200 ? current.body : undefined
          },
          { timeoutMs, message: () => `order ${orderId} was not created` },
        )
        assert.deepEqual(order.deliveryAddress, address)
        assert.deepEqual(order.contact, contact)
        const event = await waitFor(
          () => checkouts.seen.find((m) => m.key === cartId && m.value.includes('"CartCheckedOut"')),
          { timeoutMs, message: 'CartCheckedOut was not on cart-events' },
        )
        assert.ok(!event.value.includes('Basket Road') && event.value.includes('"$enc":1'), event.value)
      } finally {
        await checkouts.sub.close()
      }
    })

    it('turns a checked-out cart into an order that reaches its terminal state, once even when redelivered', async () => {
      const checkouts = await follow(context.transport, CART_EVENTS_TOPIC, 'cart-events-reader')
      try {
        const opened = await call('POST', '/api/carts', { customerId: 'customer-2' })
        const cartId = String(opened.body.id)
        await call('POST', `/api/carts/${cartId}/items`, {
          productId: 'kettle',
          name: 'Kettle',
          price: 30,
          quantity: 1,
        })
        await call('POST', `/api/carts/${cartId}/items`, { productId: 'filter', price: 2.25, quantity: 4 })
        const checkedOut = await call('POST', `/api/carts/${cartId}/checkout`)
        assert.equal(checkedOut.status, 200)
        const orderId = String(checkedOut.body.orderId)
        assert.equal(checkedOut.headers.location, `/api/orders/${orderId}`)

        const order = await waitFor(
          async () => {
            const current = await call('GET', `/api/orders/${orderId}`)
            return current.status === 200 && current.body.status === 'DELIVERED' ? current.body : undefined
          },
          { timeoutMs, message: () => `order ${orderId} did not reach DELIVERED` },
        )
        assert.equal(order.customerId, 'customer-2')
        assert.equal(order.totalAmount, 39)
        assert.deepEqual(order.items, [
          { productId: 'kettle', name: 'Kettle', price: 30, quantity: 1 },
          { productId: 'filter', price: 2.25, quantity: 4 },
        ])

        // The broker hands the same CartCheckedOut over again (a consumer crashed before committing).
        const event = await waitFor(
          () => checkouts.seen.find((m) => m.key === cartId && m.value.includes('"CartCheckedOut"')),
          { timeoutMs, message: 'CartCheckedOut was not on cart-events' },
        )
        const [position] = await context.transport.publish([
          { topic: CART_EVENTS_TOPIC, key: event.key, value: event.value, headers: event.headers },
        ])
        const subscription = app.module<OrderModule>('order').subscriptions?.get(CART_CHECKOUT_GROUP)
        assert.ok(subscription, 'the order service consumes cart-events')
        await waitFor(
          async () => {
            const lag = (await subscription.lag()).filter((l) => l.partition === position?.partition)
            return lag.length > 0 && lag.every((l) => l.lag === 0)
          },
          { timeoutMs, message: 'the redelivered CartCheckedOut was not handled' },
        )
        const history = await call('GET', `/api/orders/${orderId}/events`)
        const types = (history.body.events as { eventType: string }[]).map((e) => e.eventType)
        assert.equal(types.filter((t) => t === 'OrderCreated').length, 1, `one OrderCreated: ${types}`)
        assert.equal((await call('GET', `/api/orders/${orderId}`)).body.status, 'DELIVERED', 'the order is untouched')
        const deadLetters = (await app.runtime.metrics.deadLettered.get()).values.filter(
          (v) => v.labels.topic === CART_EVENTS_TOPIC,
        )
        assert.deepEqual(deadLetters, [], 'the redelivery was skipped, not dead-lettered')
      } finally {
        await checkouts.sub.close()
      }
    })
  })
}
