import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { joined, pgliteTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { deadLetterConsole } from '../../dead-letters/application/console.ts'
import { createLogger } from '../logger.ts'
import { migratePlatform } from '../sql/migrations.ts'
import { startTestTracing } from '../tracing.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import { instrumentTransport } from '../transport/instrumented.ts'
import type { Transport } from '../transport/port.ts'
import { startReliableConsumer } from '../transport/reliable-consumer.ts'
import { sqlDeadLetterStore } from './store.ts'

/**
 * With tracing on, parking shows in the trace: the consume span of the message that parked its key,
 * of each message parked behind it and of the redrive that released it say so, with the key (the
 * order id on the order service's and the saga's topics) and the dead letter; the redrive is a span
 * of its own.
 */
describe('per-key parking in traces', () => {
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })
  let database: TestDatabase
  let transport: Transport
  let tracing: Awaited<ReturnType<typeof startTestTracing>>
  before(async () => {
    tracing = await startTestTracing()
    database = await pgliteTestDatabase()
    await migratePlatform(database.db)
    transport = instrumentTransport(
      await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 20 }),
      { logger },
    )
  })
  after(async () => {
    await transport.close()
    await database.cleanup()
    await tracing.shutdown()
  })

  it('records the park, each parked message and the release as events on their consume spans', async (t) => {
    const topic = uniqueName('steps')
    const groupId = uniqueName('parking')
    let failing = true
    const handled: string[] = []
    const subscription = await startReliableConsumer({
      transport,
      groupId,
      topics: [topic],
      decode: (message) => ({ ok: true, value: message.value }),
      retry: { max: 0, backoffMs: 1 },
      logger,
      deadLetters: sqlDeadLetterStore(database.db),
      parkKeys: true,
      handle: async (value) => {
        if (value === 'first' && failing) throw new Error('first fails')
        handled.push(value)
      },
    })
    t.after(() => subscription.close())
    await joined(subscription)
    await transport.publish([
      { topic, key: 'order-7', value: 'first' },
      { topic, key: 'order-7', value: 'second' },
    ])
    const console = deadLetterConsole({ db: database.db, transport })
    const dead = await waitFor(async () => (await console.list({ limit: 1, key: 'order-7' })).items[0], {
      message: 'the first message is a dead letter',
    })
    await waitFor(async () => (await console.get(dead.id)).parkedMessages === 1, { message: 'the second is parked' })
    failing = false
    await console.redrive(dead.id, { to: 'consumer', actor: 'operator-1' })
    await waitFor(() => handled.length === 2, { message: 'both handled after the redrive' })
    // The release ends the redrive's consume span.
    const spans = await waitFor(
      async () => {
        await tracing.flush()
        const finished = tracing.exporter.getFinishedSpans()
        return finished.some((span) => span.events.some((e) => e.name === 'orderflow.key_released')) ? finished : null
      },
      { message: 'the release is recorded' },
    )
    const events = spans.flatMap((span) =>
      span.events.map((event) => ({ name: event.name, attributes: event.attributes ?? {} })),
    )
    for (const name of ['orderflow.key_parked', 'orderflow.message_parked', 'orderflow.key_released']) {
      const event = events.find((e) => e.name === name)
      assert.ok(event, `${name} is recorded`)
      assert.equal(event.attributes['messaging.kafka.message.key'], 'order-7')
      assert.equal(event.attributes['orderflow.dead_letter_id'], dead.id)
    }
    const redrive = spans.find((span) => span.name === 'dead-letter redrive')
    assert.equal(redrive?.attributes['orderflow.dead_letter_id'], dead.id)
  })
})
