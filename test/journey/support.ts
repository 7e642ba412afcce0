import type { App, AppOptions } from '../../src/app.ts'
import { createLogger, type Logger } from '../../src/platform/logger.ts'
import type { ServiceModule } from '../../src/platform/module.ts'
import { createEmbeddedTransport } from '../../src/platform/transport/embedded.ts'
import { createKafkaTransport } from '../../src/platform/transport/kafka.ts'
import { namespaceTransport } from '../../src/platform/transport/namespaced.ts'
import type { Transport } from '../../src/platform/transport/port.ts'
import { allModules } from '../../src/services.ts'
import { startTestApp } from '../support/app.ts'
import {
  kafkaBrokers,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../support/index.ts'

/**
 * What the journey tests share: an app with every service module (or some), on the embedded
 * default (PGlite + the embedded log) or on Kafka + PostgreSQL, each app with a database and
 * topics of its own; and a fault injector that publishes every message twice.
 */

export type Infrastructure = 'embedded' | 'kafka'
export type SagaMode = 'orchestration' | 'choreography'

export interface JourneyApp {
  app: App
  db: TestDatabase
  transport: Transport
  /** KAFKA_TOPIC_PREFIX of this app ('' on the embedded log, whose database is its own). */
  prefix: string
  close(): Promise<void>
}

/**
 * Fault injection: every message is published twice, so every consumer sees every event and
 * command delivered twice (what a producer retry or a relay that lost its lease can cause).
 */
export function duplicatingTransport(transport: Transport): Transport {
  return {
    kind: transport.kind,
    ensureTopics: (topics) => transport.ensureTopics(topics),
    subscribe: (options) => transport.subscribe(options),
    groupLag: (groups) => transport.groupLag(groups),
    readTopic: (topic, visit, options) => transport.readTopic(topic, visit, options),
    describeLog: (options) => transport.describeLog(options),
    // Spelled out rather than spread: the embedded transport is a class, whose methods a spread drops.
    ping: () => transport.ping(),
    close: () => transport.close(),
    async publish(messages, options) {
      const positions = await transport.publish(messages, options)
      await transport.publish(messages, options)
      return positions
    },
  }
}

export async function startJourneyApp(options: {
  infra: Infrastructure
  mode: SagaMode
  env?: Record<string, string>
  /** Which modules run (by name); all by default. */
  services?: string[]
  duplicate?: boolean
  modules?: ServiceModule[]
  /** Fault injection around the transport the app uses (after `duplicate`). */
  wrapTransport?: (transport: Transport) => Transport
  /** App options (an authenticator, for tests with tokens). */
  app?: AppOptions
  /** Where the app logs (silent unless LOG_LEVEL says otherwise). */
  logger?: Logger
}): Promise<JourneyApp> {
  const logger = options.logger ?? createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })
  let db: TestDatabase
  let raw: Transport
  let prefix = ''
  if (options.infra === 'embedded') {
    db = await pgliteTestDatabase()
    raw = await createEmbeddedTransport({ db: db.db, partitions: 3, pollIntervalMs: 50 })
  } else {
    db = await postgresTestDatabase('of_journey')
    prefix = `${uniqueName('j')}.`
    raw = namespaceTransport(
      await createKafkaTransport({
        brokers: kafkaBrokers(),
        clientId: uniqueName('journey'),
        partitions: 3,
        replicationFactor: 1,
        requiredAcks: 'all',
        retries: 3,
        retryBackoffMs: 100,
        sessionTimeoutMs: 6_000,
        heartbeatIntervalMs: 500,
      }),
      prefix,
    )
  }
  const duplicated = options.duplicate ? duplicatingTransport(raw) : raw
  const transport = options.wrapTransport ? options.wrapTransport(duplicated) : duplicated
  const modules = options.modules ?? allModules().filter((m) => !options.services || options.services.includes(m.name))
  let app: App
  try {
    app = await startTestApp({
      db: db.db,
      transport,
      logger,
      modules,
      env: {
        SAGA_MODE: options.mode,
        KAFKA_TOPIC_PREFIX: prefix,
        // The configuration says what the runtime is (the auditor reads lag where the transport keeps it).
        ...(options.infra === 'kafka' ? { TRANSPORT: 'kafka', KAFKA_BROKERS: kafkaBrokers().join(',') } : {}),
        KAFKA_RETRY_MAX: '3',
        KAFKA_RETRY_BACKOFF_MS: '20',
        DELIVERY_DELAY_MS: '20',
        SCHEDULER_POLL_INTERVAL_MS: '200',
        PAYMENT_GATEWAY_RETRY_BACKOFF_MS: '5',
        ...options.env,
      },
      app: { pollIntervalMs: 100, ...options.app },
    })
  } catch (error) {
    await raw.close().catch(() => {})
    await db.cleanup().catch(() => {})
    throw error
  }
  return {
    app,
    db,
    transport,
    prefix,
    async close() {
      await app.close().catch(() => {})
      await raw.close().catch(() => {})
      await db.cleanup().catch(() => {})
    },
  }
}

export interface OrderView {
  id: string
  status: string
  cancellationReason: string | null
  paymentId: string | null
  totalAmount: number
}

export async function placeOrder(app: App, body: unknown): Promise<OrderView> {
  const response = await app.http.inject({ method: 'POST', url: '/api/orders', payload: body as object })
  if (response.statusCode !== 201) throw new Error(`POST /api/orders answered ${response.statusCode}: ${response.body}`)
  return response.json<OrderView>()
}

export async function getOrder(app: App, id: string): Promise<OrderView> {
  const response = await app.http.inject({ method: 'GET', url: `/api/orders/${id}` })
  if (response.statusCode !== 200) throw new Error(`GET /api/orders/${id} answered ${response.statusCode}`)
  return response.json<OrderView>()
}

/** Waits until the order is in `status`; fails early if it reaches another terminal status. */
export async function orderReaches(app: App, id: string, status: string, timeoutMs = 20_000): Promise<OrderView> {
  let last: OrderView | undefined
  return waitFor(
    async () => {
      last = await getOrder(app, id)
      if (last.status !== status && (last.status === 'DELIVERED' || last.status === 'CANCELLED')) {
        throw new Error(`order ${id} ended ${last.status} (${last.cancellationReason ?? ''}), not ${status}`)
      }
      return last.status === status ? last : null
    },
    { timeoutMs, intervalMs: 50, message: () => `order ${id} to be ${status} (it is ${last?.status ?? 'unknown'})` },
  )
}

/** The seed 004 order. */
export const seed004Order = {
  customerId: 'customer123',
  items: [{ productId: 'product123', quantity: 1, price: 100.0 }],
}

/** The payment row of an order (the payment service's table). */
export async function paymentOf(db: TestDatabase, orderId: string) {
  const { rows } = await db.db.query<{ status: string; amount: string | null; processed_by: string }>(
    'SELECT status, amount::text AS amount, processed_by FROM payments WHERE order_id = $1',
    [orderId],
  )
  return rows[0] ?? null
}

/** PaymentProcessed events of an order's payment stream: at most one, whatever was redelivered. */
export async function capturesOf(db: TestDatabase, orderId: string): Promise<number> {
  const { rows } = await db.db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM es_events WHERE stream_id = $1 AND event_type = 'PaymentProcessed'`,
    [`payment-${orderId}`],
  )
  return Number(rows[0]?.n ?? 0)
}

/** Sum of a counter in the app's metrics registry. */
export async function counterTotal(app: App, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = app.runtime.metrics.registry.getSingleMetric(name)
  if (!metric) return 0
  const { values } = await metric.get()
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0)
}

/**
 * Fault injection on one consumer group: its messages are held until released (the service is
 * slow), dropped (the service lost them), or pass. The tests run one order at a time.
 */
export function gatedGroup(groupId: string) {
  let mode: 'pass' | 'hold' | 'drop' = 'pass'
  let gate = Promise.resolve()
  let open = () => {}
  /** Messages that reached the gate (held, dropped or passed). */
  let seen = 0
  return {
    seen: () => seen,
    wrap(transport: Transport): Transport {
      return {
        kind: transport.kind,
        ensureTopics: (topics) => transport.ensureTopics(topics),
        publish: (messages, options) => transport.publish(messages, options),
        ping: () => transport.ping(),
        groupLag: (groups) => transport.groupLag(groups),
        readTopic: (topic, visit, options) => transport.readTopic(topic, visit, options),
        describeLog: (options) => transport.describeLog(options),
        close: () => transport.close(),
        subscribe: (options) =>
          options.groupId !== groupId
            ? transport.subscribe(options)
            : transport.subscribe({
                // One message at a time (no batch), so that the gate sees each of them.
                groupId: options.groupId,
                topics: options.topics,
                ...(options.onError ? { onError: options.onError } : {}),
                handler: async (message, context) => {
                  seen++
                  if (mode === 'drop') return
                  if (mode === 'hold') await gate
                  await options.handler(message, context)
                },
              }),
      }
    },
    hold() {
      mode = 'hold'
      gate = new Promise<void>((resolve) => {
        open = resolve
      })
    },
    drop() {
      mode = 'drop'
    },
    pass() {
      mode = 'pass'
      open()
    },
  }
}
