import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { waitFor } from '../support/index.ts'
import { type JourneyApp, orderReaches, placeOrder, seed004Order, startJourneyApp } from './support.ts'

/**
 * The metrics an operator graphs (infra/grafana/orderflow-dashboard.json), as `GET /metrics`
 * serves them: HTTP per route pattern, the journey's duration by outcome, and the gauges read from
 * the database at scrape time (sagas in flight, dead letters open, parked keys and messages).
 */

const DECLINED = 'customer-declined'

/** The value of one series of a scrape, by its labels (undefined when the series is absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const series = line.slice(0, line.lastIndexOf(' '))
    if (Object.entries(labels).every(([key, value]) => series.includes(`${key}="${value}"`))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1))
    }
  }
  return undefined
}

describe('metrics (embedded)', () => {
  let j: JourneyApp
  const scrape = async () => {
    const response = await j.app.http.inject({ method: 'GET', url: '/metrics' })
    assert.equal(response.statusCode, 200)
    return response.body
  }

  before(async () => {
    j = await startJourneyApp({
      infra: 'embedded',
      mode: 'orchestration',
      env: { PAYMENT_GATEWAY_DECLINED_CUSTOMERS: DECLINED },
    })
  })
  after(() => j?.close())

  it('times each journey from its POST to DELIVERED or CANCELLED, once per order', async () => {
    const delivered = await placeOrder(j.app, seed004Order)
    const declined = await placeOrder(j.app, { ...seed004Order, customerId: DECLINED })
    await orderReaches(j.app, delivered.id, 'DELIVERED')
    await orderReaches(j.app, declined.id, 'CANCELLED')
    const text = await waitFor(
      async () => {
        const body = await scrape()
        return sample(body, 'orderflow_journey_duration_seconds_count', { outcome: 'DELIVERED' }) === 1 &&
          sample(body, 'orderflow_journey_duration_seconds_count', { outcome: 'CANCELLED' }) === 1
          ? body
          : null
      },
      { message: 'one journey DELIVERED and one CANCELLED, timed' },
    )
    const seconds = sample(text, 'orderflow_journey_duration_seconds_sum', { outcome: 'DELIVERED' }) ?? 0
    assert.ok(seconds > 0 && seconds < 60, `a journey of ${seconds} s`)
  })

  it('counts HTTP requests per route pattern, method and status class, never per URL', async () => {
    const order = await placeOrder(j.app, seed004Order)
    await j.app.http.inject({ method: 'GET', url: `/api/orders/${order.id}` })
    await j.app.http.inject({ method: 'GET', url: '/api/orders/order-that-does-not-exist' })
    await j.app.http.inject({ method: 'GET', url: '/no/such/route' })
    const text = await scrape()
    const byRoute = { method: 'GET', route: '/api/orders/:id' }
    assert.ok((sample(text, 'orderflow_http_requests_total', { ...byRoute, status_class: '2xx' }) ?? 0) >= 1)
    assert.equal(sample(text, 'orderflow_http_requests_total', { ...byRoute, status_class: '4xx' }), 1)
    assert.ok(
      (sample(text, 'orderflow_http_requests_total', { method: 'POST', route: '/api/orders', status_class: '2xx' }) ??
        0) >= 1,
    )
    assert.equal(sample(text, 'orderflow_http_requests_total', { route: '(no route)', status_class: '4xx' }), 1)
    assert.ok(
      (sample(text, 'orderflow_http_request_duration_seconds_count', { ...byRoute, status_class: '2xx' }) ?? 0) >= 1,
    )
    assert.ok(!text.includes(order.id), 'no series names an order')
    assert.ok(!text.includes('order-that-does-not-exist'))
  })

  it('reads sagas in flight, open dead letters and parked keys from their tables at each scrape', async () => {
    const db = j.db.db
    await db.query(
      `INSERT INTO sagas (id, order_id, status, step, attempt, version, state, started_at, updated_at)
       VALUES ('saga-metrics-1', 'order-metrics-1', 'PARKED', 'DISPATCH', 1, 1, '{}', now(), now())`,
    )
    const { rows } = await db.query<{ id: string }>(
      `INSERT INTO dead_letters (group_id, topic, partition, message_offset, message_key, reason, error, attempts,
                                 headers, payload, payload_bytes, dlq_topic, failed_at)
       VALUES ('create-order-saga', 'order-events', 0, '7', 'order-metrics-1', 'RETRIES_EXHAUSTED', '{"message":"x"}', 4,
               '{}', '{}', 2, 'order-events-dlq', now())
       RETURNING id::text`,
    )
    await db.query(
      `INSERT INTO parked_keys (group_id, message_key, topic, dead_letter_id) VALUES ('create-order-saga', 'order-metrics-1', 'order-events', $1)`,
      [rows[0]?.id],
    )
    for (const offset of ['8', '9']) {
      await db.query(
        `INSERT INTO parked_messages (group_id, message_key, topic, partition, message_offset, headers, payload, message_timestamp)
         VALUES ('create-order-saga', 'order-metrics-1', 'order-events', 0, $1, '{}', '{}', now())`,
        [offset],
      )
    }
    const text = await scrape()
    assert.equal(sample(text, 'orderflow_sagas_in_progress', { status: 'PARKED', step: 'DISPATCH' }), 1)
    assert.equal(
      sample(text, 'orderflow_dead_letters_open', {
        topic: 'order-events',
        group: 'create-order-saga',
        reason: 'RETRIES_EXHAUSTED',
      }),
      1,
    )
    assert.equal(sample(text, 'orderflow_parked_keys', { group: 'create-order-saga', topic: 'order-events' }), 1)
    assert.equal(sample(text, 'orderflow_parked_messages', { group: 'create-order-saga', topic: 'order-events' }), 2)

    // Resolved, the dead letter is no longer open: the next scrape says so.
    await db.query(`DELETE FROM parked_messages WHERE message_key = 'order-metrics-1'`)
    await db.query(`DELETE FROM parked_keys WHERE message_key = 'order-metrics-1'`)
    await db.query(`UPDATE dead_letters SET state = 'discarded' WHERE message_key = 'order-metrics-1'`)
    const after = await scrape()
    assert.equal(sample(after, 'orderflow_dead_letters_open', { reason: 'RETRIES_EXHAUSTED' }), undefined)
    assert.equal(sample(after, 'orderflow_parked_keys', { group: 'create-order-saga' }), undefined)
  })
})
