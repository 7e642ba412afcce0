import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type JourneyApp, orderReaches, placeOrder, seed004Order, startJourneyApp } from '../../test/journey/support.ts'
import { startTestApp, testTokens } from '../../test/support/app.ts'
import { pgliteTestDatabase, waitFor } from '../../test/support/index.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import { dashboardModule } from './index.ts'
import type { Journey } from './journey.ts'
import type { Overview } from './overview.ts'
import type { TopicsView } from './topics.ts'

/**
 * The dashboard's JSON, on the embedded default with every module: an order taken through its
 * journey shows in the overview, on its own timeline (events, messages with their offsets, the
 * groups that handled them, the saga) and in the topics' offsets; a dead letter with its key parked
 * shows on the overview and the journey; the stream sends snapshots; the data is operators' only.
 */

describe('dashboard API (embedded)', () => {
  let journey: JourneyApp
  let orderId: string

  before(async () => {
    journey = await startJourneyApp({ infra: 'embedded', mode: 'orchestration' })
    orderId = (await placeOrder(journey.app, seed004Order)).id
    await orderReaches(journey.app, orderId, 'DELIVERED')
  })
  after(async () => {
    await journey?.close()
  })

  const get = async <T>(url: string) => {
    const response = await journey.app.http.inject({ method: 'GET', url })
    assert.equal(response.statusCode, 200, `${url}: ${response.body}`)
    return response.json<T>()
  }

  it('shows one order’s journey through DELIVERED on one timeline', async () => {
    // The last status change is handled by the saga shortly after the order reads DELIVERED.
    const j = await waitFor(
      async () => {
        const view = await get<Journey>(`/api/dashboard/orders/${orderId}/journey`)
        return view.saga?.status === 'COMPLETED' && view.messages.every((m) => m.handledBy.length > 0) ? view : null
      },
      { message: 'the journey to be complete' },
    )
    assert.equal(j.order?.status, 'DELIVERED')
    const types = j.events.map((e) => e.type)
    for (const type of ['OrderCreated', 'PaymentProcessed', 'OrderConfirmed', 'OrderDispatched', 'OrderDelivered']) {
      assert.ok(types.includes(type), `${type} in ${types.join(', ')}`)
    }
    assert.deepEqual(new Set(j.events.map((e) => e.streamType)), new Set(['order', 'payment', 'dispatch', 'delivery']))
    // Each message: published, at a partition and offset of the embedded log, handled by its group.
    const created = j.messages.find((m) => m.type === 'OrderCreated')
    assert.ok(created?.publishedAt, 'OrderCreated was published')
    assert.equal(created.topic, 'order-events')
    assert.equal(typeof created.partition, 'number')
    assert.match(created.offset ?? '', /^\d+$/)
    assert.ok(created.handledBy.some((h) => h.group === 'create-order-saga'))
    // A message is on its topic before any group handles it (the relay marks it published later).
    for (const message of j.messages) {
      for (const handler of message.handledBy) {
        assert.ok(
          (message.onTopicAt ?? '') <= (handler.at ?? ''),
          `${message.type} on its topic before ${handler.group}`,
        )
      }
    }
    const payment = j.messages.find((m) => m.type === 'ProcessPayment')
    assert.ok(payment?.handledBy.some((h) => h.group === 'payment-service-commands'))
    assert.equal(j.saga?.outcome, 'DELIVERED')
    assert.ok(j.saga.history.length > 5)
    // The request that placed it, and the one trace every event and message carries.
    assert.equal(j.traceIds.length, 1)
    assert.match(j.traceIds[0] ?? '', /^[0-9a-f]{32}$/)
    assert.equal(j.requests[0]?.events[0], 'OrderCreated')
    // One timeline, in time order, from the event that opened it to the last message handled.
    const times = j.timeline.map((e) => e.at)
    assert.deepEqual(times, [...times].sort())
    assert.equal(j.timeline[0]?.title, 'OrderCreated')
    for (const kind of ['event', 'published', 'handled', 'saga']) {
      assert.ok(
        j.timeline.some((e) => e.kind === kind),
        `a ${kind} entry`,
      )
    }
  })

  it('answers 404 for an order nothing knows', async () => {
    const response = await journey.app.http.inject({ method: 'GET', url: '/api/dashboard/orders/order-none/journey' })
    assert.equal(response.statusCode, 404)
    assert.equal(response.json<{ code: string }>().code, 'NOT_FOUND')
  })

  it('shows the order in the overview: by status, by saga step, latest, lag and rates', async () => {
    const overview = await waitFor(
      async () => {
        const o = await get<Overview>('/api/dashboard/overview?history=true')
        return (o.rates.history?.length ?? 0) >= 2 && o.lag.total === 0 && o.outbox.backlog === 0 ? o : null
      },
      { timeoutMs: 20_000, message: 'rates sampled and lag drained' },
    )
    assert.equal(overview.transport, 'embedded')
    assert.deepEqual(overview.orders.byStatus, [{ status: 'DELIVERED', count: 1 }])
    assert.deepEqual(overview.sagas.bySteps, [{ status: 'COMPLETED', step: 'DELIVERED', count: 1 }])
    assert.equal(overview.recent[0]?.id, orderId)
    assert.ok(overview.lag.groups.some((g) => g.group === 'create-order-saga'))
    assert.ok(overview.lag.partitions.every((p) => p.lag === 0 && p.committed === p.endOffset))
    assert.equal(overview.outbox.oldestAgeMs, null)
    assert.equal(overview.stuck.total, 0)
    assert.equal(overview.deadLetters.open, 0)
  })

  it('counts orders per second from the event store while they flow', async () => {
    const placed = await Promise.all([1, 2, 3].map(() => placeOrder(journey.app, seed004Order)))
    await waitFor(
      async () => {
        const o = await get<Overview>('/api/dashboard/overview?history=true')
        const orders = (o.rates.history ?? []).reduce((sum, p) => sum + p.orders, 0)
        const published = (o.rates.history ?? []).reduce((sum, p) => sum + (p.published['order-events'] ?? 0), 0)
        return orders > 0 && published > 0
      },
      { message: 'orders/s and published/s above 0' },
    )
    await Promise.all(placed.map((order) => orderReaches(journey.app, order.id, 'DELIVERED')))
  })

  it('lists topics with their partitions and end offsets, and groups with their committed offsets', async () => {
    const view = await get<TopicsView>('/api/dashboard/topics')
    const orderEvents = view.topics.find((t) => t.name === 'order-events')
    assert.equal(orderEvents?.partitions.length, 3)
    assert.ok((orderEvents?.messages ?? 0) >= 4)
    assert.ok(orderEvents?.groups.includes('create-order-saga'))
    const saga = view.groups.find((g) => g.group === 'create-order-saga')
    assert.ok(saga?.partitions.some((p) => p.topic === 'order-events' && p.committed > 0))
    assert.equal(saga?.members, null, 'the embedded log keeps its members in the process')
  })

  it('shows a dead letter and its parked key on the overview, the topics and the journey', async () => {
    const key = orderId
    const { rows } = await journey.db.db.query<{ id: string }>(
      `INSERT INTO dead_letters (group_id, topic, partition, message_offset, message_key, event_id, reason, error,
                                 attempts, headers, payload, payload_bytes, dlq_topic, dlq_partition, dlq_offset, failed_at)
       VALUES ('create-order-saga', 'order-events', 0, '999', $1, 'e-1', 'RETRIES_EXHAUSTED',
               '{"message":"handler failed"}', 4, '{}', '{}', 2, 'order-events-dlq', 0, '0', now())
       RETURNING id::text`,
      [key],
    )
    const deadLetterId = rows[0]?.id
    await journey.db.db.query(
      `INSERT INTO parked_keys (group_id, message_key, topic, dead_letter_id) VALUES ('create-order-saga', $1, 'order-events', $2)`,
      [key, deadLetterId],
    )
    await journey.db.db.query(
      `INSERT INTO parked_messages (group_id, message_key, topic, partition, message_offset, event_id, headers, payload, message_timestamp)
       VALUES ('create-order-saga', $1, 'order-events', 0, '1000', 'e-2', '{}', '{}', now())`,
      [key],
    )
    const overview = await waitFor(
      async () => {
        const o = await get<Overview>('/api/dashboard/overview')
        return o.deadLetters.open === 1 ? o : null
      },
      { message: 'the dead letter on the overview' },
    )
    assert.deepEqual(overview.deadLetters.byReason, [
      { topic: 'order-events', group: 'create-order-saga', reason: 'RETRIES_EXHAUSTED', count: 1 },
    ])
    assert.deepEqual(overview.deadLetters.parked, [
      { topic: 'order-events', group: 'create-order-saga', keys: 1, messages: 1 },
    ])
    const topics = await waitFor(
      async () => {
        const view = await get<TopicsView>('/api/dashboard/topics')
        return view.topics.find((t) => t.name === 'order-events' && t.openDeadLetters === 1)
      },
      { message: 'the open dead letter in the topic list' },
    )
    assert.equal(topics.parkedKeys, 1)
    const j = await get<Journey>(`/api/dashboard/orders/${key}/journey`)
    assert.equal(j.deadLetters[0]?.id, deadLetterId)
    assert.equal(j.deadLetters[0]?.reason, 'RETRIES_EXHAUSTED')
    assert.equal(j.parked[0]?.group, 'create-order-saga')
    assert.deepEqual(
      j.parked[0]?.messages.map((m) => m.offset),
      ['1000'],
    )
    assert.ok(j.timeline.some((e) => e.kind === 'dead-letter' && e.detail?.includes('handler failed')))
    assert.ok(j.timeline.some((e) => e.kind === 'parked'))
  })

  it('streams overview snapshots as server-sent events', async () => {
    const address = await journey.app.http.listen({ port: 0, host: '127.0.0.1' })
    const abort = new AbortController()
    try {
      const response = await fetch(`${address}/api/dashboard/stream`, { signal: abort.signal })
      assert.equal(response.status, 200)
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/)
      const reader = (response.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
      let text = ''
      const snapshots: Overview[] = []
      while (snapshots.length < 2) {
        const { value, done } = await reader.read()
        assert.ok(!done, 'the stream stays open')
        text += value
        for (const match of text.matchAll(/event: overview\ndata: (.*)\n\n/g))
          snapshots.push(JSON.parse(match[1] ?? ''))
        text = text.slice(text.lastIndexOf('\n\n') + 2)
      }
      // The first snapshot carries the charts' history; the next ones only the latest rates.
      assert.ok(Array.isArray(snapshots[0]?.rates.history))
      assert.equal(snapshots[1]?.rates.history, undefined)
      assert.ok((snapshots[1]?.orders.total ?? 0) >= 1)
    } finally {
      abort.abort()
    }
  })
})

describe('dashboard access', () => {
  it('serves the page to anyone and its data to operators only', async () => {
    const database = await pgliteTestDatabase()
    const transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 50 })
    const tokens = await testTokens()
    const app = await startTestApp({
      db: database.db,
      transport,
      modules: [dashboardModule()],
      app: { authenticate: tokens.authenticate },
    })
    try {
      const page = await app.http.inject({ method: 'GET', url: '/dashboard' })
      assert.equal(page.statusCode, 200)
      assert.match(page.headers['content-type'] as string, /^text\/html/)
      assert.match(page.body, /Sign in with a token/)
      assert.match(page.headers['content-security-policy'] as string, /default-src 'self'/)
      const chart = await app.http.inject({ method: 'GET', url: '/dashboard/uplot.js' })
      assert.equal(chart.statusCode, 200)
      assert.match(chart.body.slice(-200), /export (default uPlot|\{ uPlot as default \})/)
      assert.equal((await app.http.inject({ method: 'GET', url: '/dashboard/..%2Fpackage.json' })).statusCode, 404)
      for (const url of ['/api/dashboard/overview', '/api/dashboard/topics', '/api/dashboard/stream']) {
        assert.equal((await app.http.inject({ method: 'GET', url })).statusCode, 401, url)
        const customer = await app.http.inject({
          method: 'GET',
          url,
          headers: await tokens.headers('c-1', ['customer']),
        })
        assert.equal(customer.statusCode, 403, url)
      }
      const operator = await app.http.inject({
        method: 'GET',
        url: '/api/dashboard/overview',
        headers: await tokens.headers('operator-1', ['operator']),
      })
      assert.equal(operator.statusCode, 200)
      // Tables of modules this process does not run count as empty.
      assert.deepEqual(operator.json<Overview>().orders, { total: 0, byStatus: [] })
    } finally {
      await app.close()
      await transport.close()
      await database.cleanup()
    }
  })
})
