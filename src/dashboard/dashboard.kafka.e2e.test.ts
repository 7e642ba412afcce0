import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type JourneyApp, orderReaches, placeOrder, seed004Order, startJourneyApp } from '../../test/journey/support.ts'
import { waitFor } from '../../test/support/index.ts'
import type { Journey } from './journey.ts'
import type { Overview } from './overview.ts'
import type { TopicsView } from './topics.ts'

/**
 * The dashboard on Kafka: topics, end offsets, committed offsets and members come from the brokers
 * (under this app's topic prefix, named as the services name them), and an order's journey joins
 * the database's view of it the same way as on the embedded log.
 */

describe('dashboard API (Kafka)', () => {
  let journey: JourneyApp
  let orderId: string

  before(async () => {
    journey = await startJourneyApp({ infra: 'kafka', mode: 'orchestration' })
    orderId = (await placeOrder(journey.app, seed004Order)).id
    await orderReaches(journey.app, orderId, 'DELIVERED', 60_000)
  })
  after(async () => {
    await journey?.close()
  })

  const get = async <T>(url: string) => {
    const response = await journey.app.http.inject({ method: 'GET', url })
    assert.equal(response.statusCode, 200, `${url}: ${response.body}`)
    return response.json<T>()
  }

  it('reads topics and groups from the brokers, with members and without the prefix', async () => {
    const view = await waitFor(
      async () => {
        const topics = await get<TopicsView>('/api/dashboard/topics')
        const saga = topics.groups.find((g) => g.group === 'create-order-saga')
        return saga && saga.lag === 0 && (saga.members?.length ?? 0) > 0 ? topics : null
      },
      { timeoutMs: 30_000, message: 'the saga group with its members and no lag' },
    )
    assert.equal(view.transport, 'kafka')
    assert.ok(view.topics.every((t) => !t.name.startsWith(journey.prefix)))
    const orderEvents = view.topics.find((t) => t.name === 'order-events')
    assert.equal(orderEvents?.partitions.length, 3)
    assert.ok((orderEvents?.messages ?? 0) >= 4)
    const saga = view.groups.find((g) => g.group === 'create-order-saga')
    assert.equal(saga?.state, 'Stable')
    assert.ok(saga?.members?.[0]?.assignments.some((a) => a.topic === 'order-events'))
    assert.ok(saga?.partitions.some((p) => p.topic === 'order-events' && p.committed > 0))
    const overview = await get<Overview>('/api/dashboard/overview')
    assert.equal(overview.transport, 'kafka')
    assert.equal(overview.lag.error, undefined)
  })

  it('shows the order’s journey: messages published and handled by their groups', async () => {
    const j = await waitFor(
      async () => {
        const view = await get<Journey>(`/api/dashboard/orders/${orderId}/journey`)
        return view.saga?.status === 'COMPLETED' && view.messages.every((m) => m.handledBy.length > 0) ? view : null
      },
      { timeoutMs: 30_000, message: 'the journey to be complete' },
    )
    assert.ok(j.messages.every((m) => m.publishedAt !== null))
    assert.ok(j.events.some((e) => e.type === 'OrderDelivered'))
    // Where Kafka put each message, as the relay was told when the broker acknowledged it.
    assert.ok(
      j.messages.every(
        (m) => m.partition !== null && m.partition >= 0 && m.partition < 3 && /^\d+$/.test(m.offset ?? ''),
      ),
      JSON.stringify(j.messages.map((m) => [m.topic, m.partition, m.offset])),
    )
  })
})
