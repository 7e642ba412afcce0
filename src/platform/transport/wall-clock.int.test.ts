import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { createEmbeddedTransport } from './embedded.ts'
import type { Transport } from './port.ts'
import { startReliableConsumer } from './reliable-consumer.ts'

/**
 * Durations are measured by a monotonic clock. A wall clock that steps (NTP, a VM restored, an
 * operator) must not stop a busy partition of the embedded log from committing what it handled
 * until the clock has caught up again (an hour of handled messages to handle again after a crash),
 * nor make a consumer's running handler look stalled (readiness answers 503 for a stalled one).
 */
describe('consuming whatever the wall clock does', () => {
  let database: TestDatabase
  let transport: Transport
  const realNow = Date.now

  before(async () => {
    database = await pgliteTestDatabase()
    transport = await createEmbeddedTransport({ db: database.db, partitions: 1 })
  })
  after(async () => {
    Date.now = realNow
    await transport?.close()
    await database?.cleanup()
  })

  it('commits under load after the wall clock stepped an hour ahead and back', async () => {
    const topic = uniqueName('busy')
    const groupId = uniqueName('clock')
    await transport.ensureTopics([topic])
    await transport.publish(Array.from({ length: 400 }, (_, i) => ({ topic, key: 'k', value: String(i) })))
    let handled = 0
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    // The wall clock an hour ahead while the reader starts and takes its first message, then back
    // to true time. The partition is never idle: a message every few milliseconds, then one that
    // waits.
    Date.now = () => realNow() + 3_600_000
    const subscription = await transport.subscribe({
      groupId,
      topics: [topic],
      handler: async (message) => {
        Date.now = realNow
        if (message.value === '300') await held
        await new Promise((resolve) => setTimeout(resolve, 5))
        handled++
      },
    })
    try {
      await waitFor(async () => (handled >= 300 ? true : null), { message: () => `300 handled (${handled})` })
      const { rows } = await database.db.query<{ next_offset: string }>(
        'SELECT next_offset::text FROM log_group_offsets WHERE group_id = $1 AND topic = $2',
        [groupId, topic],
      )
      const committed = Number(rows[0]?.next_offset ?? 0)
      assert.ok(committed >= 100, `a second and more of handling, and the committed offset is ${committed}`)
    } finally {
      release()
      await subscription.close()
    }
  })

  it("does not call a consumer stalled when the wall clock steps an hour ahead during a message's handling", async () => {
    const topic = uniqueName('steady')
    await transport.ensureTopics([topic])
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let started = false
    const consumer = await startReliableConsumer<string>({
      transport,
      groupId: uniqueName('stall'),
      topics: [topic],
      decode: (message) => ({ ok: true, value: message.value }),
      retry: { max: 0, backoffMs: 10 },
      logger: createLogger({ level: 'silent' }),
      stallAfterMs: 60_000,
      handle: async () => {
        started = true
        await held
      },
    })
    try {
      await transport.publish([{ topic, key: 'k', value: 'slow' }])
      await waitFor(async () => (started ? true : null), { message: () => 'the handler running' })
      assert.equal(consumer.health().state, 'running')
      Date.now = () => realNow() + 3_600_000
      try {
        assert.equal(consumer.health().state, 'running', consumer.health().detail)
      } finally {
        Date.now = realNow
      }
    } finally {
      release()
      await consumer.close()
    }
  })
})
