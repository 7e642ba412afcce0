import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { type Broker, startBroker } from '../../scripts/kafka.ts'
import { startTestApp } from '../../test/support/app.ts'
import { freePort, postgresTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import { createKafkaTransport } from '../platform/transport/kafka.ts'
import { namespaceTransport } from '../platform/transport/namespaced.ts'
import type { Transport } from '../platform/transport/port.ts'
import { shopModule } from '../shop/index.ts'
import { orderDetailsModule } from './index.ts'

/**
 * Seed 002 through a broker outage, on a broker of its own: the order consumer starts before its
 * topic exists; with the broker stopped the cart API keeps accepting (the seed answered 503; here
 * the outbox holds the events), and once the broker is back the events are published and the
 * consumer, reconnected, applies them.
 */
describe('seed 002 through a Kafka outage', () => {
  let dir: string
  let port: number
  let controllerPort: number
  let broker: Broker | undefined
  let database: TestDatabase
  let transport: Transport
  let app: App

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orderflow-seed002-outage-'))
    port = await freePort()
    controllerPort = await freePort()
    broker = await startBroker({ dir, port, controllerPort })
    database = await postgresTestDatabase('of_seed002_outage')
    const prefix = `${uniqueName('s2')}.`
    transport = namespaceTransport(
      await createKafkaTransport({
        brokers: [broker.brokers],
        clientId: uniqueName('seed002-outage'),
        partitions: 3,
        replicationFactor: 1,
        requiredAcks: 'all',
        retries: 1,
        retryBackoffMs: 100,
        maxReconnectDelayMs: 1_000,
      }),
      prefix,
    )
    // No topic exists yet: the consumer must start cleanly all the same.
    app = await startTestApp({
      db: database.db,
      transport,
      env: { KAFKA_BROKERS: broker.brokers, KAFKA_TOPIC_PREFIX: prefix },
      modules: [shopModule(), orderDetailsModule({ groupId: uniqueName('order-details') })],
      app: { pollIntervalMs: 100, relay: { retryMaxMs: 1_000 } },
    })
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await broker?.stop()
    await database?.cleanup()
    await rm(dir, { recursive: true, force: true })
  })

  const details = async (orderId: string) => {
    const response = await app.http.inject({ method: 'GET', url: `/order-details?orderId=${orderId}` })
    return response.statusCode === 200 ? response.json<{ order: { status: string } }>() : null
  }

  it('accepts orders while the broker is down and applies them once it is back', async () => {
    const first = await app.http.inject({
      method: 'POST',
      url: '/create-order',
      payload: { order_id: '1', number_of_items: 1 },
    })
    assert.equal(first.statusCode, 200, first.body)
    await waitFor(() => details('ORD-1'), { timeoutMs: 60_000, message: 'ORD-1 reaches the order consumer' })

    await broker?.stop()
    broker = undefined
    const created = await app.http.inject({
      method: 'POST',
      url: '/create-order',
      payload: { order_id: '2', number_of_items: 2 },
    })
    assert.equal(created.statusCode, 200, `accepted while Kafka is down, not 503: ${created.body}`)
    const updated = await app.http.inject({
      method: 'PUT',
      url: '/update-order',
      payload: { order_id: 'ORD-2', status: 'confirmed' },
    })
    assert.equal(updated.statusCode, 200, updated.body)
    assert.equal(await details('ORD-2'), null, 'nothing reached the consumer while the broker was down')

    broker = await startBroker({ dir, port, controllerPort })
    const seen = await waitFor(async () => ((await details('ORD-2'))?.order.status === 'confirmed' ? true : null), {
      timeoutMs: 90_000,
      message: 'ORD-2, created and confirmed during the outage, reaches the reconnected consumer',
    })
    assert.ok(seen)
  })
})
