import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestApp } from '../../../test/support/app.ts'
import { postgresTestDatabase, type TestDatabase, waitFor } from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import type { Transport } from '../transport/port.ts'

/**
 * Load shedding over real HTTP, on PostgreSQL: with HTTP_MAX_IN_FLIGHT requests held in flight (their
 * transactions wait at a gate, the one fault injected), the next ones are answered 503 OVERLOADED
 * with Retry-After at once and leave no trace; the probes and the metrics scrape still answer; a
 * client that gives up frees its place; once the held ones are answered, requests are taken again.
 */

const MAX_IN_FLIGHT = 3

const order = {
  customerId: 'customer-shedding',
  items: [{ productId: 'p-1', name: 'Pizza', price: 10, quantity: 1 }],
}

function gated(real: SqlDatabase) {
  let open: () => void = () => {}
  let opened: Promise<void> = Promise.resolve()
  const gate = {
    held: 0,
    close() {
      opened = new Promise((resolve) => {
        open = resolve
      })
    },
    open: () => open(),
  }
  // The pg adapter is a plain object: spread, it keeps every method but the one replaced.
  const db: SqlDatabase = {
    ...real,
    async transaction(work) {
      gate.held++
      try {
        await opened
      } finally {
        gate.held--
      }
      return real.transaction(work)
    },
  }
  return { db, gate }
}

describe('load shedding (HTTP_MAX_IN_FLIGHT)', () => {
  let database: TestDatabase
  let transport: Transport
  let app: App
  let gate: ReturnType<typeof gated>['gate']
  let base: string

  before(async () => {
    database = await postgresTestDatabase('of_shedding')
    const wrapped = gated(database.db)
    gate = wrapped.gate
    transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
    app = await startTestApp({ db: wrapped.db, transport, env: { HTTP_MAX_IN_FLIGHT: String(MAX_IN_FLIGHT) } })
    base = await app.http.listen({ port: 0, host: '127.0.0.1' })
  })
  after(async () => {
    gate?.open()
    await app?.close()
    await transport?.close()
    await database?.cleanup()
  })

  const post = (signal?: AbortSignal) =>
    fetch(`${base}/api/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(order),
      ...(signal ? { signal } : {}),
    })
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${base}/metrics`)).text()
    const values = text
      .split('\n')
      .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)))
    return values.reduce((a, b) => a + b, 0)
  }
  const orders = async () =>
    Number((await database.db.query<{ n: string }>('SELECT count(*)::text AS n FROM orders')).rows[0]?.n)

  it('sheds what comes past the limit at once, unhandled, and takes requests again once the held ones are answered', async () => {
    const before = await orders()
    gate.close()
    const giveUp = new AbortController()
    const held = [post(giveUp.signal), post(), post()]
    held[0]?.catch(() => {})
    await waitFor(async () => (await metric('orderflow_http_requests_in_flight')) === MAX_IN_FLIGHT, {
      message: `${MAX_IN_FLIGHT} requests in flight`,
    })

    // Past the limit: 503 OVERLOADED with Retry-After, while the held ones still wait.
    for (let i = 0; i < 2; i++) {
      const shed = await post()
      assert.equal(shed.status, 503)
      assert.equal(shed.headers.get('retry-after'), '1')
      assert.match(String(shed.headers.get('content-type')), /^application\/problem\+json/)
      const problem = (await shed.json()) as { code: string; detail: string; maxInFlight: number; instance: string }
      assert.equal(problem.code, 'OVERLOADED')
      assert.match(problem.detail, /HTTP_MAX_IN_FLIGHT/)
      assert.equal(problem.maxInFlight, MAX_IN_FLIGHT)
      assert.equal(problem.instance, '/api/orders')
    }
    // An overloaded process is alive and says why it is busy: probes and the scrape are never shed.
    assert.equal((await fetch(`${base}/health/live`)).status, 200)
    assert.equal(await metric('orderflow_http_requests_shed_total'), 2)
    assert.equal(await metric('orderflow_http_requests_in_flight'), MAX_IN_FLIGHT)

    // A client that gives up frees its place: the next request is taken (and held).
    giveUp.abort()
    await waitFor(async () => (await metric('orderflow_http_requests_in_flight')) === MAX_IN_FLIGHT - 1, {
      message: 'the abandoned request no longer counts',
    })
    held.push(post())
    await waitFor(async () => (await metric('orderflow_http_requests_in_flight')) === MAX_IN_FLIGHT, {
      message: 'the next request is taken in its place',
    })

    gate.open()
    const answered = await Promise.allSettled(held.slice(1))
    for (const outcome of answered) {
      assert.equal(outcome.status, 'fulfilled')
      assert.equal(outcome.value.status, 201, await outcome.value.text())
    }
    await waitFor(async () => (await metric('orderflow_http_requests_in_flight')) === 0, {
      message: 'nothing is in flight once every request is answered',
    })
    const next = await post()
    assert.equal(next.status, 201, await next.text())

    // The shed requests did nothing: the orders are the taken ones (the abandoned one was taken too,
    // its transaction only waited at the gate), and the next one.
    await waitFor(async () => (await orders()) === before + held.length + 1, {
      message: () => `one order per request taken (${held.length + 1}), none for the shed ones`,
    })
    assert.equal(await metric('orderflow_http_requests_shed_total'), 2)
  })
})
