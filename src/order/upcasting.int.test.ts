import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { v7 as uuidv7 } from 'uuid'
import { startOrderService, type TestOrderService } from '../../test/support/app.ts'
import { follow, pgliteTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../test/support/index.ts'
import { HeaderNames } from '../contracts/envelope.ts'
import { decodeOrderEvent, ORDER_EVENTS_TOPIC } from '../contracts/order/events.ts'
import { createReplayJob, REPLAY_JOB_HEADER, runReplayJob } from '../platform/es/replay.ts'
import { appendToStream, readStream } from '../platform/eventstore/event-store.ts'
import { createLogger } from '../platform/logger.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import type { Transport } from '../platform/transport/port.ts'
import { toOrderEvent } from './application/order-store.ts'
import { orderReplaySource, orderReplaySourceAsStored } from './index.ts'

/**
 * An OrderCreated written by version 1 of its schema (before orders had a delivery address and a
 * contact) stays readable by every reader of the store, through its upcaster: the read model, the
 * history route and replay all see version 2 with both null. An event of a version newer than the
 * code knows is refused by name, never guessed at.
 */

describe('an OrderCreated of schema version 1 in the store', () => {
  let database: TestDatabase
  let transport: Transport
  let service: TestOrderService
  const orderId = uniqueName('order_v1')

  before(async () => {
    database = await pgliteTestDatabase()
    transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 50 })
    service = await startOrderService({ db: database.db, transport, logger: createLogger({ level: 'silent' }) })
    // As the version before this one wrote it: schemaVersion 1, no deliveryAddress, no contact.
    await database.db.transaction(async (tx) => {
      await appendToStream(tx, { id: orderId, type: 'order', expectedVersion: 0 }, [
        {
          eventId: uuidv7(),
          eventType: 'OrderCreated',
          schemaVersion: 1,
          occurredOn: '2025-06-01T09:00:00.000Z',
          data: {
            customerId: 'customer-v1',
            items: [{ productId: 'p-1', price: 1250, quantity: 2 }],
            subtotal: 2500,
            totalAmount: 2500,
            currency: 'EUR',
          },
          metadata: {},
        },
      ])
    })
  })
  after(async () => {
    await service?.stop()
    await transport?.close()
    await database?.cleanup()
  })

  it('reads as version 2 in the store reader every service uses', async () => {
    const [stored] = await readStream(database.db, orderId)
    assert.equal(stored?.schemaVersion, 1)
    const event = toOrderEvent(stored as NonNullable<typeof stored>)
    assert.equal(event.schemaVersion, 2)
    assert.equal(event.eventType, 'OrderCreated')
    if (event.eventType !== 'OrderCreated') return
    assert.equal(event.deliveryAddress, null)
    assert.equal(event.contact, null)
    assert.equal(event.totalAmount, 2500, 'amounts stay in minor units: the upcast went through the wire form')
  })

  it('is projected into the read model, and shown in the history as version 2', async () => {
    await service.projection.catchUp()
    const list = await service.app.http.inject({ method: 'GET', url: '/api/orders?customerId=customer-v1' })
    const orders = list.json<{ orders: { id: string; totalAmount: number; deliveryAddress: unknown }[] }>().orders
    assert.deepEqual(
      orders.map((o) => [o.id, o.totalAmount, o.deliveryAddress]),
      [[orderId, 25, null]],
    )
    const history = await service.app.http.inject({ method: 'GET', url: `/api/orders/${orderId}/events` })
    const [created] = history.json<{ events: Record<string, unknown>[] }>().events
    assert.equal(created?.schemaVersion, 2)
    assert.equal(created?.deliveryAddress, null)
    assert.equal(created?.totalAmount, 25)
  })

  it('is replayed as version 2 (what consumers of order-events read), which they decode', async () => {
    const reader = await follow(transport, ORDER_EVENTS_TOPIC, 'upcast_reader')
    try {
      const job = await createReplayJob(database.db, orderReplaySource, { kind: 'stream', streamId: orderId })
      await runReplayJob({ db: database.db, transport, source: orderReplaySource }, job.id)
      const replayed = await waitFor(() => reader.seen.find((m) => m.headers[REPLAY_JOB_HEADER] === job.id), {
        message: 'the replayed event to arrive',
      })
      assert.equal(replayed.headers[HeaderNames.schemaVersion], '2')
      const decoded = decodeOrderEvent(replayed.value)
      assert.ok(decoded.ok, JSON.stringify(decoded))
      assert.equal(decoded.event.schemaVersion, 2)
    } finally {
      await reader.sub.close()
    }
  })

  it('is replayed as it was stored (version 1) with --as-stored, for a consumer pinned to it', async () => {
    const reader = await follow(transport, ORDER_EVENTS_TOPIC, 'as_stored_reader')
    try {
      const job = await createReplayJob(database.db, orderReplaySourceAsStored, { kind: 'stream', streamId: orderId })
      await runReplayJob({ db: database.db, transport, source: orderReplaySourceAsStored }, job.id)
      const replayed = await waitFor(() => reader.seen.find((m) => m.headers[REPLAY_JOB_HEADER] === job.id), {
        message: 'the replayed event to arrive',
      })
      assert.equal(replayed.headers[HeaderNames.schemaVersion], '1')
      const body = JSON.parse(replayed.value) as Record<string, unknown>
      assert.equal(body.schemaVersion, 1)
      assert.equal('deliveryAddress' in body, false)
      assert.equal(body.totalAmount, 25)
    } finally {
      await reader.sub.close()
    }
  })

  it('refuses, by name, an event of a version newer than the code knows', async () => {
    const [stored] = await readStream(database.db, orderId)
    assert.throws(
      () => toOrderEvent({ ...(stored as NonNullable<typeof stored>), schemaVersion: 3 }),
      /stored as schemaVersion 3, which order-events does not know \(newest 2\)/,
    )
  })
})
