import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase, waitFor } from '../../test/support/index.ts'
import { DELIVERY_COMMANDS_TOPIC } from '../contracts/delivery/commands.ts'
import { DISPATCH_COMMANDS_TOPIC } from '../contracts/dispatch/commands.ts'
import { ORDER_COMMANDS_TOPIC } from '../contracts/order/commands.ts'
import type { OrderEvent } from '../contracts/order/events.ts'
import { PAYMENT_COMMANDS_TOPIC } from '../contracts/payment/commands.ts'
import { scheduleTimer, startTimerPoller, type TimerPoller } from '../platform/es/scheduler.ts'
import { createLogger } from '../platform/logger.ts'
import { createOutboxSignal, type OutboxRelay, startOutboxRelay } from '../platform/outbox/outbox.ts'
import { migratePlatform, migrationsBeside, runMigrations } from '../platform/sql/migrations.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import type { Transport } from '../platform/transport/port.ts'
import {
  createSagaProcessor,
  SAGA_TIMEOUT_TIMER,
  type SagaProcessor,
  sagaTimerId,
} from './application/saga-processor.ts'
import { createOrderSagaSteps, defineCreateOrderSaga, type SagaStepTimedOut } from './domain/create-order-saga.ts'

/**
 * A saga step's timeout runs from the publish of the step's command, on the database's clock: not
 * while the command waits in the outbox (broker unreachable), and not by the app's clock.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

const PAYMENT_TIMEOUT_MS = 300

/** The real embedded transport, with a fault: while `down`, every publish fails as if the broker were away. */
function failingWhileDown(inner: Transport) {
  const state = { down: false, failedPublishes: 0 }
  const transport: Transport = {
    kind: inner.kind,
    ensureTopics: (topics) => inner.ensureTopics(topics),
    ping: () => inner.ping(),
    subscribe: (options) => inner.subscribe(options),
    groupLag: (groups) => inner.groupLag(groups),
    readTopic: (topic, visit, options) => inner.readTopic(topic, visit, options),
    describeLog: (options) => inner.describeLog(options),
    close: () => inner.close(),
    publish: async (messages, options) => {
      if (state.down) {
        state.failedPublishes++
        throw new Error('broker unreachable')
      }
      return inner.publish(messages, options)
    },
  }
  return { transport, state }
}

function orderCreated(orderId: string): OrderEvent {
  return {
    eventId: `created-${orderId}`,
    aggregateId: orderId,
    occurredOn: new Date().toISOString(),
    version: 1,
    schemaVersion: 1,
    eventType: 'OrderCreated',
    customerId: 'customer-1',
    items: [{ productId: 'product-1', price: 1_000, quantity: 1 }],
    subtotal: 1_000,
    totalAmount: 1_000,
    currency: 'USD',
  } as unknown as OrderEvent
}

interface Fired {
  id: string
  timeout: SagaStepTimedOut
  /** The database's time when it fired. */
  at: Date
}

function suite(name: string, open: () => Promise<TestDatabase>) {
  describe(`saga step timeouts on ${name}`, () => {
    let database: TestDatabase
    let db: SqlDatabase
    let processor: SagaProcessor
    let relay: OutboxRelay
    let timers: TimerPoller
    let broker: ReturnType<typeof failingWhileDown>
    /** The app's clock is this far off the real one; the tests step it. */
    let appClockOffsetMs = 0
    const fired: Fired[] = []

    before(async () => {
      database = await open()
      db = database.db
      await migratePlatform(db)
      await runMigrations(db, [
        { module: 'saga', directory: migrationsBeside(new URL('./index.ts', import.meta.url).href) },
      ])
      const embedded = await createEmbeddedTransport({ db, pollIntervalMs: 20 })
      await embedded.ensureTopics([
        PAYMENT_COMMANDS_TOPIC,
        ORDER_COMMANDS_TOPIC,
        DISPATCH_COMMANDS_TOPIC,
        DELIVERY_COMMANDS_TOPIC,
      ])
      broker = failingWhileDown(embedded)
      const signal = createOutboxSignal()
      relay = startOutboxRelay({
        db,
        transport: broker.transport,
        signal,
        logger,
        pollIntervalMs: 20,
        retryBaseMs: 20,
        retryMaxMs: 50,
      })
      processor = createSagaProcessor({
        db,
        workflow: defineCreateOrderSaga({
          ...createOrderSagaSteps,
          PAYMENT: { ...createOrderSagaSteps.PAYMENT, timeoutMs: PAYMENT_TIMEOUT_MS },
        }),
        onCommitted: signal.notify,
        onScheduled: (inMs) => timers.wake(inMs),
        clock: () => new Date(Date.now() + appClockOffsetMs),
      })
      timers = startTimerPoller<SagaStepTimedOut>({
        db,
        kind: SAGA_TIMEOUT_TIMER,
        logger,
        pollIntervalMs: 50,
        // As the saga module does, and records when (by the database) each timer fired.
        fire: async (timer) => {
          const { rows } = await db.query<{ now: Date }>('SELECT now() AS now')
          fired.push({ id: timer.id, timeout: timer.payload, at: new Date(rows[0]?.now ?? Number.NaN) })
          await processor.handle(timer.payload, {
            consumer: SAGA_TIMEOUT_TIMER,
            messageId: `${timer.id}:${timer.payload.step}:${timer.payload.attempt}`,
          })
        },
      })
    })

    after(async () => {
      await timers?.stop()
      await relay?.stop()
      await broker?.transport.close()
      await database?.cleanup()
    })

    const firedFor = (orderId: string) => fired.filter((f) => f.id === sagaTimerId(orderId))

    const timedOutSteps = async (orderId: string) =>
      ((await processor.get(orderId))?.history ?? []).filter((h) => h.type === 'SagaStepTimedOut')

    /** When (by the database) the outbox row of the order's command of `commandType` was published. */
    const publishedAt = async (orderId: string, commandType: string): Promise<Date | null> => {
      const { rows } = await db.query<{ published_at: Date | null }>(
        `SELECT published_at FROM outbox
          WHERE message_key = $1 AND headers->>'event-type' = $2 ORDER BY id LIMIT 1`,
        [orderId, commandType],
      )
      return rows[0]?.published_at ?? null
    }

    it('does not time a step out while its command waits in the outbox, and times it out once published', async () => {
      const orderId = `order-outage-${name}`
      broker.state.down = true
      const failedBefore = broker.state.failedPublishes
      await processor.handle(orderCreated(orderId), { consumer: 'test', messageId: `created-${orderId}` })
      // A control timer of the same kind, due well after the step's would be if it ran from the
      // decision: once it has fired, the poller has passed the step's would-be deadline.
      const controlId = `${SAGA_TIMEOUT_TIMER}:control-${name}`
      await scheduleTimer(db, {
        id: controlId,
        kind: SAGA_TIMEOUT_TIMER,
        delayMs: 3 * PAYMENT_TIMEOUT_MS,
        payload: { eventType: 'SagaStepTimedOut', orderId: `control-${name}`, step: 'PAYMENT', attempt: 1 },
      })
      timers.wake(3 * PAYMENT_TIMEOUT_MS)
      await waitFor(() => fired.some((f) => f.id === controlId), { message: 'the control timer fires' })
      await waitFor(() => broker.state.failedPublishes > failedBefore, { message: 'the relay tried to publish' })

      assert.deepEqual(firedFor(orderId), [], 'the PAYMENT timeout did not fire while ProcessPayment was unpublished')
      assert.deepEqual(await timedOutSteps(orderId), [])
      assert.equal((await processor.get(orderId))?.attempt, 1)
      const { rows } = await db.query<{ due_at: Date | null }>('SELECT due_at FROM scheduled_timers WHERE id = $1', [
        sagaTimerId(orderId),
      ])
      assert.equal(rows.length, 1, 'the timer is kept')
      assert.equal(rows[0]?.due_at, null, 'unarmed while its command waits')
      assert.equal(await publishedAt(orderId, 'ProcessPayment'), null)

      broker.state.down = false
      await waitFor(async () => (await relay.pending()) === 0, { message: 'the outbox drains once the broker is back' })
      await waitFor(async () => (await processor.get(orderId))?.attempt === 2, {
        message: 'PAYMENT times out after the publish and is sent again',
      })
      const first = firedFor(orderId)[0]
      assert.deepEqual(first?.timeout, { eventType: 'SagaStepTimedOut', orderId, step: 'PAYMENT', attempt: 1 })
      assert.equal((await timedOutSteps(orderId)).length, 1)
      const published = await publishedAt(orderId, 'ProcessPayment')
      assert.ok(published, 'ProcessPayment was published')
      assert.ok(
        first && first.at.getTime() >= published.getTime() + PAYMENT_TIMEOUT_MS,
        `the timeout ran from the publish (${published.toISOString()}), fired at ${first?.at.toISOString()}`,
      )
    })

    it('times a step out by the database clock when the app clock steps back or forward an hour', async () => {
      for (const stepMs of [-3_600_000, 3_600_000]) {
        appClockOffsetMs = 0
        const orderId = `order-clock-${stepMs}-${name}`
        await processor.handle(orderCreated(orderId), { consumer: 'test', messageId: `created-${orderId}` })
        // The clock jumps right after the decision, before the timeout is due.
        appClockOffsetMs = stepMs
        await waitFor(async () => (await processor.get(orderId))?.attempt === 2, {
          message: `PAYMENT times out with the app clock stepped ${stepMs} ms`,
        })
        const first = firedFor(orderId)[0]
        const published = await publishedAt(orderId, 'ProcessPayment')
        assert.ok(published, 'ProcessPayment was published')
        assert.ok(
          first && first.at.getTime() >= published.getTime() + PAYMENT_TIMEOUT_MS,
          `not early: published ${published.toISOString()}, fired ${first?.at.toISOString()} (clock stepped ${stepMs} ms)`,
        )
      }
      appClockOffsetMs = 0
    })
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_saga_timers'))
