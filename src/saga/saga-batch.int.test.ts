import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { v7 as uuidv7 } from 'uuid'
import {
  joined,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../test/support/index.ts'
import { type StatsPostgres, startStatsPostgres } from '../../test/support/stats-postgres.ts'
import { encodeOrderEvent, ORDER_EVENTS_TOPIC, type OrderEvent } from '../contracts/order/events.ts'
import { createLogger } from '../platform/logger.ts'
import type { ModuleContext } from '../platform/module.ts'
import { batchScope } from '../platform/sql/batch.ts'
import { migratePlatform, migrationsBeside, runMigrations } from '../platform/sql/migrations.ts'
import type { SqlDatabase, SqlExecutor } from '../platform/sql/port.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import type { Subscription, Transport } from '../platform/transport/port.ts'
import { startReliableConsumer } from '../platform/transport/reliable-consumer.ts'
import { createSagaProcessor, type SagaInputMetadata, type SagaProcessor } from './application/saga-processor.ts'
import { consumeSagaInputs, SAGA_GROUP, SAGA_INPUT_TOPICS } from './consumers/saga-inputs.ts'
import { createOrderSaga, type SagaEventInput } from './domain/create-order-saga.ts'

/**
 * The saga takes a consumer's batch as one: one statement for the batch's inbox entries and sagas,
 * one for its sagas' rows, commands and timers, whatever its size. What it leaves is what handling
 * the same events one at a time leaves: the same sagas, the same commands with the same ids, the
 * same timers, the same inbox; a redelivered batch changes nothing.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })
const NOW = '2026-01-01T12:00:00.000Z'

const envelope = (aggregateId: string, version = 1) => ({
  eventId: uuidv7(),
  aggregateId,
  occurredOn: NOW,
  version,
  schemaVersion: 1,
})
const created = (orderId: string) =>
  ({
    ...envelope(orderId),
    eventType: 'OrderCreated',
    customerId: 'customer-1',
    items: [{ productId: 'product-1', price: 1_000, quantity: 1 }],
    subtotal: 1_000,
    totalAmount: 1_000,
    currency: 'USD',
  }) as unknown as OrderEvent
const updated = (orderId: string) =>
  ({ ...envelope(orderId, 2), eventType: 'OrderUpdated', subtotal: 1_000, totalAmount: 1_000 }) as unknown as OrderEvent
const cancelled = (orderId: string) =>
  ({ ...envelope(orderId, 2), eventType: 'OrderCancelled', reason: 'customer asked' }) as unknown as OrderEvent
const payment = (orderId: string, data: Record<string, unknown>) =>
  ({
    ...envelope(`payment-${orderId}`),
    orderId,
    paymentId: `payment-${orderId}`,
    amount: 1_000,
    currency: 'USD',
    customerId: 'customer-1',
    ...data,
  }) as unknown as SagaEventInput
const processed = (orderId: string) => payment(orderId, { eventType: 'PaymentProcessed', authorizationId: 'auth-1' })
const declined = (orderId: string) =>
  payment(orderId, { eventType: 'PaymentFailed', code: 'CUSTOMER_DECLINED', reason: 'card declined' })

const asConsumed = (event: SagaEventInput): { input: SagaEventInput; metadata: SagaInputMetadata } => ({
  input: event,
  metadata: { consumer: SAGA_GROUP, messageId: event.eventId, causationId: event.eventId },
})

async function migrate(db: SqlDatabase) {
  await migratePlatform(db)
  await runMigrations(db, [
    { module: 'saga', directory: migrationsBeside(new URL('./index.ts', import.meta.url).href) },
  ])
}

/** The saga's processor on `db`, counting the statements its transactions run, with a fixed clock. */
function countedSaga(db: SqlDatabase) {
  const statements: string[] = []
  const ended: (string | null)[] = []
  let committed = 0
  const counting: SqlDatabase = {
    dialect: db.dialect,
    query: (text, params) => db.query(text, params),
    exec: (text) => db.exec(text),
    close: () => db.close(),
    transaction: (work) =>
      db.transaction((tx) => {
        const counted: SqlExecutor = {
          query: (text, params) => {
            statements.push(text.replace(/\s+/g, ' ').slice(0, 80))
            return tx.query(text, params)
          },
          exec: (text) => tx.exec(text),
        }
        return work(counted)
      }),
  }
  const processor = createSagaProcessor({
    db: counting,
    workflow: createOrderSaga,
    onCommitted: () => committed++,
    onScheduled: () => {},
    onEnded: (state) => ended.push(state.orderId),
    clock: () => new Date(NOW),
  })
  return {
    processor,
    statements,
    ended,
    committed: () => committed,
    /** Statements run by `work` (in the processor's transactions). */
    async count(work: () => Promise<unknown>) {
      statements.length = 0
      await work()
      return statements.length
    },
  }
}

/** Everything the saga wrote for these orders: sagas, commands (in outbox order), timers, inbox entries. */
async function written(db: SqlDatabase, orderIds: string[], messageIds: string[]) {
  const sagas = await db.query(
    `SELECT id, order_id, status, step, attempt, outcome, parked_reason, next_deadline, version, state, started_at, updated_at
       FROM sagas WHERE order_id = ANY($1::text[]) ORDER BY id`,
    [orderIds],
  )
  const outbox = await db.query(
    'SELECT topic, message_key, value, headers FROM outbox WHERE message_key = ANY($1::text[]) ORDER BY id',
    [orderIds],
  )
  const timers = await db.query(
    `SELECT t.id, t.kind, t.delay_ms::text AS delay_ms, t.payload, t.due_at IS NULL AS unarmed,
            o.headers->>'event-id' AS starts_when_published
       FROM scheduled_timers t LEFT JOIN outbox o ON o.id = t.starts_after_outbox_id
      WHERE t.id = ANY($1::text[]) ORDER BY t.id`,
    [orderIds.map((id) => `saga-timeout:${id}`)],
  )
  const inbox = await db.query(
    'SELECT consumer, message_id FROM inbox WHERE message_id = ANY($1::text[]) ORDER BY consumer, message_id',
    [messageIds],
  )
  return { sagas: sagas.rows, outbox: outbox.rows, timers: timers.rows, inbox: inbox.rows }
}

function suite(name: string, open: () => Promise<TestDatabase>) {
  describe(`the saga's batches on ${name}`, () => {
    let oneAtATime: TestDatabase
    let batched: TestDatabase

    before(async () => {
      oneAtATime = await open()
      batched = await open()
      await migrate(oneAtATime.db)
      await migrate(batched.db)
    })
    after(async () => {
      await oneAtATime?.cleanup()
      await batched?.cleanup()
    })

    /**
     * Ten events for five orders, interleaved as a batch of several partitions would have them:
     * two for one order (each must see the other), a copy of an event, an event for an order with
     * no saga, and an order that ends in the batch (its timer set and removed).
     */
    const scenario = () => {
      const [paid, waiting, declinedThenCancelled, noSaga, amended] = [
        'paid',
        'waiting',
        'declined',
        'none',
        'amended',
      ].map((what) => uniqueName(`order_${what}`)) as [string, string, string, string, string]
      const waitingCreated = created(waiting)
      const events: SagaEventInput[] = [
        created(paid),
        waitingCreated,
        processed(paid),
        created(declinedThenCancelled),
        waitingCreated,
        declined(declinedThenCancelled),
        processed(noSaga),
        created(amended),
        cancelled(declinedThenCancelled),
        updated(amended),
      ]
      return {
        orders: { paid, waiting, declinedThenCancelled, noSaga, amended },
        orderIds: [paid, waiting, declinedThenCancelled, noSaga, amended],
        events,
        messageIds: events.map((e) => e.eventId),
      }
    }

    it('a batch leaves exactly the sagas, commands, timers and inbox that one event at a time leaves', async () => {
      const { orders, orderIds, events, messageIds } = scenario()
      const single = countedSaga(oneAtATime.db)
      const batch = countedSaga(batched.db)

      const alone: Awaited<ReturnType<SagaProcessor['handle']>>[] = []
      for (const { input, metadata } of events.map(asConsumed))
        alone.push(await single.processor.handle(input, metadata))
      const together = await batch.processor.handleBatch(events.map(asConsumed))

      assert.deepEqual(together, alone, 'each event has the answer it has alone')
      assert.deepEqual(
        together.map((r) => r.duplicate),
        [false, false, false, false, true, false, false, false, false, false],
      )
      const expected = await written(oneAtATime.db, orderIds, messageIds)
      assert.deepEqual(await written(batched.db, orderIds, messageIds), expected)
      assert.deepEqual(batch.ended, single.ended)

      // And what that is: the journey as the saga runs it.
      const sagas = new Map(expected.sagas.map((row) => [row.order_id as string, row]))
      assert.deepEqual(
        [orders.paid, orders.waiting, orders.declinedThenCancelled, orders.amended].map((id) => {
          const saga = sagas.get(id)
          return [saga?.status, saga?.step, saga?.attempt, saga?.outcome, saga?.version]
        }),
        [
          ['RUNNING', 'CONFIRM_ORDER', 1, null, 2],
          ['RUNNING', 'PAYMENT', 1, null, 1],
          ['COMPLETED', 'REJECT_ORDER', 1, 'CANCELLED', 3],
          ['RUNNING', 'PAYMENT', 1, null, 2],
        ],
      )
      assert.equal(sagas.has(orders.noSaga), false, 'only OrderCreated starts a saga')
      const headersOf = (row: Record<string, unknown>) => row.headers as Record<string, string>
      const commands = expected.outbox.map((row) => [
        row.message_key,
        (row.headers as Record<string, string>)['event-type'],
      ])
      assert.deepEqual(commands, [
        [orders.paid, 'ProcessPayment'],
        [orders.waiting, 'ProcessPayment'],
        [orders.paid, 'ApproveOrder'],
        [orders.declinedThenCancelled, 'ProcessPayment'],
        [orders.declinedThenCancelled, 'RejectOrder'],
        [orders.amended, 'ProcessPayment'],
      ])
      const idOf = (orderId: string, type: string) => {
        const row = expected.outbox.find((r) => r.message_key === orderId && headersOf(r)['event-type'] === type)
        return row && headersOf(row)['event-id']
      }
      assert.deepEqual(
        expected.timers.map((t) => [t.id, t.unarmed, t.starts_when_published]),
        [
          [`saga-timeout:${orders.amended}`, true, idOf(orders.amended, 'ProcessPayment')],
          [`saga-timeout:${orders.paid}`, true, idOf(orders.paid, 'ApproveOrder')],
          [`saga-timeout:${orders.waiting}`, true, idOf(orders.waiting, 'ProcessPayment')],
        ],
        'one timer per running saga, started by its step’s last command; none for the completed one',
      )
      assert.equal(expected.inbox.length, 9, 'every event once, the copy included, the stray one too')
      assert.deepEqual(batch.ended, [orders.declinedThenCancelled])
    })

    it('a redelivered batch changes nothing, and costs one statement', async () => {
      const { orderIds, events, messageIds } = scenario()
      const saga = countedSaga(batched.db)
      await saga.processor.handleBatch(events.map(asConsumed))
      const before = await written(batched.db, orderIds, messageIds)
      const committedBefore = saga.committed()

      let again: Awaited<ReturnType<SagaProcessor['handleBatch']>> = []
      const statements = await saga.count(async () => {
        again = await saga.processor.handleBatch(events.map(asConsumed))
      })
      assert.ok(
        again.every((r) => r.duplicate),
        'every event is a duplicate',
      )
      assert.deepEqual(await written(batched.db, orderIds, messageIds), before)
      assert.equal(statements, 1, saga.statements.join('\n'))
      assert.equal(saga.committed(), committedBefore, 'the relay is not woken for nothing')
    })

    it('a batch costs two statements whatever its size; one event at a time, two each', async () => {
      const saga = countedSaga(batched.db)
      const eventsFor = (orders: number) =>
        Array.from({ length: orders }, () => uniqueName('order_counted')).flatMap((id) => [created(id), updated(id)])
      for (const orders of [1, 10, 50]) {
        const statements = await saga.count(() => saga.processor.handleBatch(eventsFor(orders).map(asConsumed)))
        assert.equal(statements, 2, `${orders * 2} events: ${saga.statements.join('\n')}`)
      }
      const oneByOne = await saga.count(async () => {
        for (const { input, metadata } of eventsFor(10).map(asConsumed)) await saga.processor.handle(input, metadata)
      })
      assert.equal(oneByOne, 2 * 20, saga.statements.join('\n'))
    })
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_saga_batch'))

/**
 * As PostgreSQL itself counts them (`pg_stat_statements` on a server of the test's own), inside a
 * consumer's batch as the platform runs it: BEGIN, the two statements, COMMIT, whatever the size.
 */
describe("the saga's batch as PostgreSQL counts it", () => {
  let server: StatsPostgres

  before(async () => {
    server = await startStatsPostgres()
    await migrate(server.db)
  })
  after(async () => server?.stop())

  it('a hundred events for fifty orders: BEGIN, two statements, COMMIT', async () => {
    const scope = batchScope(server.db)
    const processor = createSagaProcessor({
      db: scope.db,
      workflow: createOrderSaga,
      onCommitted: () => {},
      onScheduled: () => {},
    })
    const events = Array.from({ length: 50 }, () => uniqueName('order_stats')).flatMap((id) => [
      created(id),
      updated(id),
    ])
    await server.reset()
    await scope.run(() => processor.handleBatch(events.map(asConsumed)))
    const counted = await server.counted()
    const explain = counted.byStatement.map((row) => `${row.calls}× ${row.query}`).join('\n')
    assert.equal(counted.transactions, 1, explain)
    assert.equal(counted.statements, 4, explain)
    const { rows } = await server.db.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM sagas WHERE step = 'PAYMENT' AND version = 2",
    )
    assert.equal(rows[0]?.n, '50')
  })
})

/**
 * The saga's consumer (`consumeSagaInputs`) hands a partition's backlog to `handleBatch` inside the
 * batch's transaction, as the platform's `context.consume` runs it: a backlog takes far fewer
 * statements than it has events, and every saga ends where one event at a time would leave it.
 */
describe("the saga's consumer on the embedded log", () => {
  let database: TestDatabase
  let transport: Transport | undefined
  const subscriptions: Subscription[] = []
  let transactions = 0
  let statements = 0

  before(async () => {
    database = await pgliteTestDatabase()
    await migrate(database.db)
  })
  after(async () => {
    for (const subscription of subscriptions) await subscription.close()
    await transport?.close()
    await database?.cleanup()
  })

  it('takes a backlog of two events per order in batches of two statements each', async () => {
    const db = database.db
    const embedded = await createEmbeddedTransport({ db, pollIntervalMs: 20 })
    transport = embedded
    await embedded.ensureTopics(SAGA_INPUT_TOPICS)
    const orderIds = Array.from({ length: 20 }, () => uniqueName('order_backlog'))
    await embedded.publish(
      orderIds.flatMap((id) =>
        [created(id), updated(id)].map((event) => ({
          topic: ORDER_EVENTS_TOPIC,
          key: id,
          value: JSON.stringify(encodeOrderEvent(event)),
        })),
      ),
    )
    const counting: SqlDatabase = {
      dialect: db.dialect,
      query: (text, params) => db.query(text, params),
      exec: (text) => db.exec(text),
      close: () => db.close(),
      transaction: (work) => {
        transactions++
        return db.transaction((tx) =>
          work({
            query: (text, params) => {
              statements++
              return tx.query(text, params)
            },
            exec: (text) => tx.exec(text),
          }),
        )
      },
    }
    const scope = batchScope(counting)
    const processor = createSagaProcessor({
      db: scope.db,
      workflow: createOrderSaga,
      onCommitted: () => {},
      onScheduled: () => {},
    })
    const consume: ModuleContext['consume'] = async ({ batch, ...consumer }) => {
      const subscription = await startReliableConsumer({
        transport: embedded,
        retry: { max: 1, backoffMs: 10 },
        logger,
        ...(batch ? { batch: { max: 50, run: (work) => scope.run(work) } } : {}),
        ...consumer,
      })
      subscriptions.push(subscription)
      return subscription
    }
    await joined(await consumeSagaInputs({ consume }, processor, uniqueName('saga_group')))

    await waitFor(
      async () => {
        const { rows } = await db.query<{ n: string }>(
          "SELECT count(*)::text AS n FROM sagas WHERE order_id = ANY($1::text[]) AND step = 'PAYMENT' AND version = 2",
          [orderIds],
        )
        return rows[0]?.n === '20'
      },
      { message: 'every order has its saga at PAYMENT, OrderUpdated recorded' },
    )
    const { rows } = await db.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM outbox WHERE message_key = ANY($1::text[]) AND headers->>'event-type' = 'ProcessPayment'",
      [orderIds],
    )
    assert.equal(rows[0]?.n, '20', 'one ProcessPayment per order')
    assert.equal(statements, 2 * transactions, `two statements per transaction (${transactions} transactions)`)
    assert.ok(statements < 40, `40 events took ${statements} statements in ${transactions} transactions`)
  })
})
