import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { joined, pgliteTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { createMetrics } from '../metrics.ts'
import { createEmbeddedTransport } from './embedded.ts'
import { instrumentTransport } from './instrumented.ts'
import type { Transport } from './port.ts'

describe('instrumented transport', () => {
  let database: TestDatabase
  let transport: Transport
  const metrics = createMetrics()

  before(async () => {
    database = await pgliteTestDatabase()
    const embedded = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
    transport = instrumentTransport(embedded, { logger: createLogger({ level: 'silent' }), metrics, lagIntervalMs: 20 })
  })
  after(async () => {
    await transport?.close()
    await database?.cleanup()
  })

  it('counts publishes and exposes each group’s lag on /metrics while its handler is behind', async () => {
    const topic = uniqueName('lagging')
    const groupId = uniqueName('slow')
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let handled = 0
    const subscription = await transport.subscribe({
      groupId,
      topics: [topic],
      handler: async () => {
        handled++
        await gate
      },
    })
    await joined(subscription)
    await transport.publish(Array.from({ length: 12 }, (_, i) => ({ topic, key: `k${i}`, value: String(i) })))

    const lagLine = new RegExp(`orderflow_consumer_lag_messages\\{topic="${topic}",group="${groupId}"\\} (\\d+)`)
    let lag = -1
    const lagOf = async () => {
      lag = Number(lagLine.exec(await metrics.registry.metrics())?.[1] ?? -1)
      return lag
    }
    await waitFor(async () => (await lagOf()) === 12, { message: () => `lag on /metrics: ${lag}, expected 12` })
    assert.match(
      await metrics.registry.metrics(),
      new RegExp(`orderflow_messages_published_total\\{topic="${topic}"\\} 12`),
    )

    release()
    await waitFor(async () => handled === 12 && (await lagOf()) === 0, {
      message: () => `lag on /metrics after handling: ${lag}, expected 0`,
    })
    await subscription.close()
  })
})
