import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import type { FastifyPluginAsync } from 'fastify'
import { v7 as uuidv7 } from 'uuid'
import { z } from 'zod'
import { startTestApp } from '../../test/support/app.ts'
import { follow, postgresTestDatabase, type TestDatabase, waitFor } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import { ORDER_COMMANDS_TOPIC } from '../contracts/order/commands.ts'
import { decodeOrderEvent, ORDER_EVENTS_TOPIC } from '../contracts/order/events.ts'
import type { OrderModule } from '../order/index.ts'
import { orderModule } from '../order/index.ts'
import { createCommandHandler, jsonStateTable } from './es/command-handler.ts'
import { accept, type Decider, reject } from './es/decider.ts'
import { eventMessage } from './es/messages.ts'
import type { ProjectionDefinition } from './es/projections.ts'
import type { ServiceModule } from './module.ts'
import { createEmbeddedTransport } from './transport/embedded.ts'
import type { Transport } from './transport/port.ts'
import type { DeadLetterRecord } from './transport/reliable-consumer.ts'

/**
 * A second service on the kit, in a few lines: a loyalty module that gives a customer points for
 * every order. It brings only its decider, its table, a projection, a consumer and a route; the
 * command handler, migrations, outbox, projection runner, retries and dead letters are the
 * platform's. It runs beside the order module in one app on PostgreSQL.
 */

// --- the toy module -----------------------------------------------------------------------------

type LoyaltyCommand = { type: 'AddPoints'; points: number; reason: string }
type LoyaltyEvent = { eventType: 'PointsAdded'; points: number; reason: string }
type LoyaltyState = { points: number }

const loyaltyDecider: Decider<LoyaltyCommand, LoyaltyEvent, LoyaltyState> = {
  initialState: () => ({ points: 0 }),
  decide: (command) =>
    command.points > 0
      ? accept({ eventType: 'PointsAdded', points: command.points, reason: command.reason })
      : reject('VALIDATION_FAILED', 'points must be positive', [{ field: 'points', message: 'must be positive' }]),
  evolve: (state, event) => ({ points: state.points + event.points }),
}

const leaderboard: ProjectionDefinition = {
  name: 'loyalty_leaderboard',
  streamTypes: ['loyalty'],
  async handle(tx, events) {
    for (const event of events) {
      await tx.query(
        `INSERT INTO loyalty_leaderboard (customer_id, points) VALUES ($1, $2)
         ON CONFLICT (customer_id) DO UPDATE SET points = loyalty_leaderboard.points + EXCLUDED.points`,
        [event.streamId, (event.data as { points: number }).points],
      )
    }
  },
  truncate: (tx) => tx.exec('DELETE FROM loyalty_leaderboard'),
}

function loyaltyModule(
  migrations: URL,
): ServiceModule<{ addPoints(customerId: string, points: number): Promise<number> }> {
  return {
    name: 'loyalty',
    migrations,
    projections: [leaderboard],
    async start(ctx) {
      const handler = createCommandHandler({
        db: ctx.db,
        onCommitted: ctx.committed,
        streamType: 'loyalty',
        decider: loyaltyDecider,
        stateStore: jsonStateTable('loyalty_accounts', loyaltyDecider.initialState),
        toMessages: (event, metadata) => [
          eventMessage({ topic: 'loyalty-events', key: event.aggregateId, body: event, event, metadata }),
        ],
      })
      const addPoints = async (customerId: string, points: number, inbox?: { consumer: string; messageId: string }) =>
        (await handler.handle(customerId, { type: 'AddPoints', points, reason: 'order' }, inbox ? { inbox } : {}))
          .version
      await ctx.consume({
        groupId: 'loyalty-orders',
        topics: [ORDER_EVENTS_TOPIC],
        decode: (message) => {
          const decoded = decodeOrderEvent(message.value)
          return decoded.ok ? { ok: true, value: decoded.event } : decoded
        },
        handle: async (event) => {
          if (event.eventType !== 'OrderCreated') return
          await addPoints(event.customerId, Math.floor(event.totalAmount / 100), {
            consumer: 'loyalty-orders',
            messageId: event.eventId,
          })
        },
      })
      const routes: FastifyPluginAsync = async (app) => {
        app.get(
          '/api/loyalty/:customerId',
          { schema: { params: z.object({ customerId: z.string().min(1).max(200) }) }, config: { auth: 'customer' } },
          async (request) => {
            const { customerId } = request.params as { customerId: string }
            const { rows } = await ctx.db.query<{ points: number }>(
              'SELECT points FROM loyalty_leaderboard WHERE customer_id = $1',
              [customerId],
            )
            return { customerId, points: rows[0]?.points ?? 0 }
          },
        )
      }
      return { routes, addPoints: (customerId: string, points: number) => addPoints(customerId, points) }
    },
  }
}

// --- the tests ------------------------------------------------------------------------------------

describe('a second service module on the kit, beside the order module', () => {
  let database: TestDatabase
  let transport: Transport
  let app: App
  let migrations: string

  before(async () => {
    database = await postgresTestDatabase('of_toy')
    migrations = await mkdtemp(join(tmpdir(), 'orderflow-toy-'))
    await writeFile(
      join(migrations, '001.do.loyalty.sql'),
      `CREATE TABLE loyalty_accounts (id text PRIMARY KEY, version integer NOT NULL, state jsonb NOT NULL, updated_at timestamptz NOT NULL);
       CREATE TABLE loyalty_leaderboard (customer_id text PRIMARY KEY, points integer NOT NULL);`,
    )
    transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
    app = await startTestApp({
      db: database.db,
      transport,
      modules: [orderModule(), loyaltyModule(pathToFileURL(`${migrations}/`))],
    })
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await database?.cleanup()
    if (migrations) await rm(migrations, { recursive: true, force: true })
  })

  it('reacts to order events, projects its own events and serves its route', async () => {
    const created = await app.http.inject({
      method: 'POST',
      url: '/api/orders',
      payload: { customerId: 'loyal-1', items: [{ productId: 'p-1', price: 42.5, quantity: 2 }] },
    })
    assert.equal(created.statusCode, 201, created.body)
    const points = await waitFor(
      async () => {
        const response = await app.http.inject({ method: 'GET', url: '/api/loyalty/loyal-1' })
        const body = response.json<{ points: number }>()
        return body.points > 0 ? body.points : null
      },
      { message: 'the loyalty module gave points for the order' },
    )
    assert.equal(points, 85)
    const published = await follow(transport, 'loyalty-events', 'toy_reader')
    try {
      await waitFor(() => published.seen.some((m) => m.key === 'loyal-1'), { message: 'PointsAdded on loyalty-events' })
    } finally {
      await published.sub.close()
    }
  })

  it('applies concurrent valid commands without an expected version: all of them apply', async () => {
    const { addPoints } = app.module<{ addPoints(customerId: string, points: number): Promise<number> }>('loyalty')
    const versions = await Promise.all(Array.from({ length: 20 }, () => addPoints('racer', 1)))
    assert.deepEqual(
      [...versions].sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i + 1),
    )
    const { rows } = await database.db.query<{ state: { points: number }; version: number }>(
      'SELECT state, version FROM loyalty_accounts WHERE id = $1',
      ['racer'],
    )
    assert.deepEqual(rows[0], { state: { points: 20 }, version: 20 })
  })

  it('applies concurrent valid order commands without If-Match: every one of them', async () => {
    const created = await app.http.inject({
      method: 'POST',
      url: '/api/orders',
      payload: { customerId: 'c-race', items: [{ productId: 'p-1', price: 10, quantity: 1 }] },
    })
    const orderId = created.json<{ id: string }>().id
    const responses = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        app.http.inject({ method: 'PATCH', url: `/api/orders/${orderId}`, payload: { notes: `note ${i}` } }),
      ),
    )
    for (const response of responses) assert.equal(response.statusCode, 200, response.body)
    const history = await app.http.inject({ method: 'GET', url: `/api/orders/${orderId}/events` })
    const events = history.json<{ events: Array<{ eventType: string; version: number }> }>().events
    assert.deepEqual(
      events.map((e) => e.version),
      [1, 2, 3, 4, 5, 6, 7, 8, 9],
    )
    assert.equal(events.filter((e) => e.eventType === 'OrderUpdated').length, 8)
  })

  it('dead-letters a command with a stale expected version at once as REJECTED, without retries', async () => {
    const { store } = app.module<OrderModule>('order')
    const orderId = `order-${uuidv7()}`
    await store.execute({
      commandType: 'CreateOrder',
      orderId,
      customerId: 'c-stale',
      items: [{ productId: 'p', price: 100, quantity: 1 }],
      currency: 'USD',
    })
    await store.execute({ commandType: 'UpdateOrderDetails', orderId, notes: 'moved on' })
    const dlq = await follow(transport, `${ORDER_COMMANDS_TOPIC}-dlq`, 'toy_dlq')
    const retriesBefore = await retriesOf(app)
    try {
      await transport.publish([
        {
          topic: ORDER_COMMANDS_TOPIC,
          key: orderId,
          value: JSON.stringify({
            commandId: crypto.randomUUID(),
            commandType: 'ConfirmOrder',
            orderId,
            issuedOn: new Date().toISOString(),
            paymentId: 'pay-stale',
            expectedVersion: 1,
          }),
        },
      ])
      const message = await waitFor(() => dlq.seen.find((m) => m.key === orderId), {
        message: 'the stale command is dead-lettered',
      })
      const record = JSON.parse(message.value) as DeadLetterRecord
      assert.equal(record.reason, 'REJECTED')
      assert.equal(record.attempts, 1)
      assert.equal(record.error.code, 'VERSION_CONFLICT')
      assert.equal(await retriesOf(app), retriesBefore, 'no retry was attempted')
      assert.equal((await store.get(orderId))?.status, 'PENDING')
    } finally {
      await dlq.sub.close()
    }
  })
})

describe('liveness and readiness', () => {
  let database: TestDatabase
  let transport: Transport
  let app: App
  /** Fault injection: the broker stops answering pings (the log itself keeps working). */
  let brokerAway = false
  before(async () => {
    database = await postgresTestDatabase('of_ready')
    const log = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
    transport = {
      kind: log.kind,
      ensureTopics: (topics) => log.ensureTopics(topics),
      publish: (messages, options) => log.publish(messages, options),
      subscribe: (options) => log.subscribe(options),
      groupLag: (groups) => log.groupLag(groups),
      readTopic: (topic, visit, options) => log.readTopic(topic, visit, options),
      describeLog: (options) => log.describeLog(options),
      ping: () => (brokerAway ? Promise.reject(new Error('no broker answers')) : log.ping()),
      close: () => log.close(),
    }
    app = await startTestApp({ db: database.db, transport })
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await database?.cleanup()
  })

  it('is live at once, ready once its consumers joined, and stays ready with a warning while the broker or the relay is away', async () => {
    const live = await app.http.inject({ method: 'GET', url: '/health' })
    assert.deepEqual([live.statusCode, live.json()], [200, { status: 'ok' }])
    type Ready = { checks: Record<string, { status: string; warning?: string; error?: string }> }
    const ready = await waitFor(
      async () => {
        const response = await app.http.inject({ method: 'GET', url: '/health/ready' })
        return response.statusCode === 200 ? response.json<Ready>() : null
      },
      { message: 'the app becomes ready' },
    )
    assert.deepEqual(Object.keys(ready.checks).sort(), ['broker', 'consumers', 'database', 'outbox', 'shutdown'])
    assert.equal(ready.checks.broker?.warning, undefined)

    // The broker goes away: the process still takes commands (into the outbox), so it stays ready
    // and says why it is degraded; a balancer keeps sending it traffic.
    brokerAway = true
    const withoutBroker = await app.http.inject({ method: 'GET', url: '/health/ready' })
    assert.equal(withoutBroker.statusCode, 200)
    assert.match(
      String(withoutBroker.json<Ready>().checks.broker?.warning),
      /no broker answers; commands are still accepted/,
    )
    brokerAway = false

    // The relay stops (as a stuck one would) and a row waits longer than the relay is allowed to take:
    // a warning (and OrderflowOutboxStalled), not a 503.
    await app.relay.stop()
    await database.db.query(
      `INSERT INTO outbox (topic, message_key, value, created_at) VALUES ('t', 'k', '{}', now() - interval '5 minutes')`,
    )
    const stuck = await app.http.inject({ method: 'GET', url: '/health/ready' })
    assert.equal(stuck.statusCode, 200)
    const body = stuck.json<Ready>()
    assert.equal(body.checks.outbox?.status, 'up')
    assert.match(String(body.checks.outbox?.warning), /1 messages wait to be published, the oldest for 3\d\d s/)
    const metrics = await app.http.inject({ method: 'GET', url: '/metrics' })
    assert.match(metrics.body, /orderflow_outbox_backlog_messages \d+/)

    // The database goes away: nothing can be served, so the process is not ready.
    await app.stopWorkers()
    await database.db.close()
    const down = await app.http.inject({ method: 'GET', url: '/health/ready' })
    assert.equal(down.statusCode, 503)
    assert.equal(down.json<Ready>().checks.database?.status, 'down')
  })
})

async function retriesOf(app: App): Promise<number> {
  const metric = await app.runtime.metrics.retries.get()
  return metric.values.reduce((sum, v) => sum + v.value, 0)
}
