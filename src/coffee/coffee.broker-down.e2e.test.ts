import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type Broker, startBroker } from '../../scripts/kafka.ts'
import { startTestApp } from '../../test/support/app.ts'
import { pgliteTestDatabase, type TestDatabase, uniqueName } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import { createKafkaTransport } from '../platform/transport/kafka.ts'
import type { Transport } from '../platform/transport/port.ts'
import { coffeeModule } from './index.ts'

/**
 * Seed 003's producer waits for the broker's acknowledgement: with the broker gone, placing an
 * order fails with a 500 problem instead of pretending it was placed. A broker of this file's own,
 * since the test stops it.
 */
describe("seed 003's producer with the broker stopped", () => {
  let broker: Broker | undefined
  let database: TestDatabase
  let transport: Transport
  let app: App

  before(async () => {
    broker = await startBroker()
    database = await pgliteTestDatabase()
    transport = await createKafkaTransport({
      brokers: [broker.brokers],
      clientId: uniqueName('coffee-down'),
      partitions: 3,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 1,
      retryBackoffMs: 50,
    })
    app = await startTestApp({
      db: database.db,
      transport,
      modules: [coffeeModule({ consumer: false, publishTimeoutMs: 10_000 })],
    })
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await database?.cleanup()
    await broker?.stop()
  })

  it('answers 200 while the broker acknowledges, and 500 with a problem once it is stopped', async () => {
    const body = { customer_name: 'John Doe', coffee_type: 'Latte' }
    const placed = await app.http.inject({ method: 'POST', url: '/order', payload: body })
    assert.equal(placed.statusCode, 200, placed.body)

    await broker?.stop()
    broker = undefined

    const failed = await app.http.inject({ method: 'POST', url: '/order', payload: body })
    assert.equal(failed.statusCode, 500, failed.body)
    assert.match(String(failed.headers['content-type']), /application\/problem\+json/)
    const problem = failed.json()
    assert.equal(problem.status, 500)
    assert.equal(problem.code, 'PUBLISH_FAILED')
    assert.match(problem.detail, /could not be published to coffee_orders/)
  })
})
