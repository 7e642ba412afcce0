import type { FastifyInstance } from 'fastify'
import { buildAsyncApiDocument } from './contracts/asyncapi.ts'
import { sqlDeadLetterStore } from './platform/dead-letters/store.ts'
import { toError } from './platform/errors.ts'
import { type ProjectionRunner, startProjections } from './platform/es/projections.ts'
import type { Authenticator } from './platform/http/auth.ts'
import { databaseRateLimitStore } from './platform/http/rate-limit.ts'
import { createHttpServer, type HealthCheck, registerApi } from './platform/http/server.ts'
import type { ModuleContext, ServiceModule, StartedModule } from './platform/module.ts'
import { startCommitNotices } from './platform/outbox/commit-notices.ts'
import {
  createOutboxSignal,
  type OutboxRelay,
  type OutboxRelayOptions,
  startOutboxRelay,
} from './platform/outbox/outbox.ts'
import { PUBLISHABLE, registerOutboxRefusedGauge } from './platform/outbox/refused.ts'
import { startHousekeeping } from './platform/retention.ts'
import type { Runtime } from './platform/runtime.ts'
import { moduleSettings } from './platform/settings.ts'
import { batchScope } from './platform/sql/batch.ts'
import { type AppliedMigration, platformMigrations, runMigrations } from './platform/sql/migrations.ts'
import type { SqlDatabase } from './platform/sql/port.ts'
import { registerTableGauges } from './platform/table-metrics.ts'
import { kafkaMaxSendMs } from './platform/transport/kafka.ts'
import { type ReliableSubscription, startReliableConsumer } from './platform/transport/reliable-consumer.ts'

/**
 * The one composition root (Fastify's `build()`): the app of a process from its runtime and the
 * service modules it runs. `main`, every end-to-end test and every benchmark build their app here,
 * so they all exercise the same wiring. Nothing listens until the caller says so.
 *
 * The app owns what the modules share: the versioned migrations of the platform and of every
 * module, one outbox relay and one projection runner for the process (woken by any module's
 * commit), the consumers the modules start, and the housekeeping that applies the retention of the
 * embedded log, the inbox and the idempotency keys.
 */

export interface AppOptions {
  /** Poll interval of the relay and projections, for rows written by other processes. */
  pollIntervalMs?: number
  /** Outbox relay settings (tests shorten the lease or the backoff). */
  relay?: Partial<Omit<OutboxRelayOptions, 'db' | 'transport' | 'signal' | 'logger'>>
  clock?: () => Date
  /** Checks each route's `config.auth`; without one every caller is allowed (authentication off). */
  authenticate?: Authenticator
}

export interface App {
  http: FastifyInstance
  runtime: Runtime
  relay: OutboxRelay
  projections: ProjectionRunner
  /** Migrations this start applied (empty when the schema was current). */
  migrations: AppliedMigration[]
  /** The running module called `name`, with what its `start` returned. */
  module<Handle extends object = object>(name: string): StartedModule & Handle
  /**
   * Stops the background work (consumers, module workers, projections, relay) and leaves HTTP
   * serving: the second half of `close`.
   */
  stopWorkers(): Promise<void>
  /**
   * The process is about to stop: readiness answers 503 (`stopping`) from now on, so that a load
   * balancer takes it out while it still serves (SHUTDOWN_DRAIN_MS, main.ts), before `close`.
   */
  startDraining(): void
  /**
   * Stops in the order that loses nothing: HTTP stops taking requests and drains, consumers stop
   * after their current message and commit, the projections and the relay finish their batch. The
   * runtime (database, transport) stays open: its owner closes it.
   */
  close(): Promise<void>
}

/** Brings the platform's tables and those of `modules` to their latest version. */
export function migrateModules(
  db: SqlDatabase,
  modules: readonly Pick<ServiceModule, 'name' | 'migrations'>[],
  onApplied?: (migration: AppliedMigration) => void,
): Promise<AppliedMigration[]> {
  return runMigrations(
    db,
    [
      { module: 'platform', directory: platformMigrations },
      ...modules.flatMap((m) => (m.migrations ? [{ module: m.name, directory: m.migrations }] : [])),
    ],
    onApplied,
  )
}

export async function buildApp(runtime: Runtime, modules: readonly ServiceModule[], options: AppOptions = {}) {
  const { db, transport, logger, metrics, config } = runtime
  const names = modules.map((m) => m.name)
  const repeated = names.find((name, i) => names.indexOf(name) !== i)
  if (repeated) throw new Error(`module '${repeated}' is listed twice`)

  const migrations = await runMigrations(
    db,
    [
      { module: 'platform', directory: platformMigrations },
      ...modules.flatMap((m) => (m.migrations ? [{ module: m.name, directory: m.migrations }] : [])),
    ],
    // `migration`, not `name`: the log line's own `name` is the logger's.
    (migration) =>
      logger.info(
        { module: migration.module, version: migration.version, migration: migration.name },
        `applied migration ${migration.module} ${migration.version} ${migration.name}`,
      ),
  )

  const signal = createOutboxSignal()
  const projections = startProjections({
    db,
    projections: modules.flatMap((m) => m.projections ?? []),
    logger: logger.child({ component: 'projections' }),
    coalesceMs: 5,
    ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
  })
  const unsubscribe = signal.onNotify((written) => projections.notify(written?.streamTypes))
  const housekeeping = startHousekeeping({
    db,
    logger: logger.child({ component: 'housekeeping' }),
    retention: config.retention,
    embeddedLog: transport.kind === 'embedded',
    metrics,
  })
  const relay = startOutboxRelay({
    db,
    transport,
    signal,
    logger: logger.child({ component: 'outbox-relay' }),
    // On Kafka the relay publishes single attempts (it retries by itself): one may take a connection
    // and a request timeout. The relay gives it that long, and its lease three times that, so a
    // publish never outlives the lease and a dead holder is replaced within about 40 s.
    ...(transport.kind === 'kafka' ? { publishTimeoutMs: kafkaMaxSendMs(0), leaseMs: 3 * kafkaMaxSendMs(0) } : {}),
    ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
    shards: config.outboxRelayShards,
    ...options.relay,
  })
  // What started so far stops again when the rest cannot start.
  const abandon = async (error: unknown): Promise<never> => {
    unsubscribe()
    await Promise.allSettled([relay.stop(), projections.stop(), housekeeping.stop()])
    throw error
  }
  // A process whose OUTBOX_RELAY_SHARDS differs from that of the relays already running refuses to start.
  await relay.joined.catch(abandon)
  // Split across processes, a commit here may be another process's relay's to publish: it is told
  // (commit-notices.ts), and this one is told of theirs.
  const notices = await startCommitNotices({
    db,
    logger: logger.child({ component: 'commit-notices' }),
    shouldTell: () => !relay.holdsEveryShard(),
    onCommitElsewhere: () => {
      relay.wake()
      projections.notify()
    },
  }).catch(abandon)
  const unsubscribeNotices = signal.onNotify(() => notices.committed())

  const subscriptions: ReliableSubscription[] = []
  let started = false
  const outbox = sampleOutbox(db, metrics)
  // Dead letters open and keys parked, read from their tables at each scrape.
  registerTableGauges(metrics.registry, db)
  registerOutboxRefusedGauge(metrics.registry, db)
  // Readiness says whether this process can serve: its database answers and it has started. What
  // it relies on beyond that (the broker, the relay, consumers waiting for a dependency) is a
  // warning once it has started, not a 503: commands are still accepted into the outbox and leave
  // when the broker is back, and a balancer that took every instance out during a broker outage
  // would turn it into an outage of the API. Alerts watch those (OrderflowOutboxStalled, …).
  let draining = false
  const healthChecks: HealthCheck[] = [
    {
      name: 'shutdown',
      async check() {
        if (draining) throw new Error('stopping: the process drains before it closes its listener')
      },
    },
    { name: 'database', check: async () => void (await db.query('SELECT 1')) },
    {
      name: 'broker',
      async check() {
        // A broker that cannot even be resolved or reached says so in words, not as a timeout.
        const problem =
          runtime.brokerWatch?.problem() ??
          (await transport.ping().then(
            () => undefined,
            (error: unknown) => (error as Error).message,
          ))
        if (problem === undefined) return undefined
        if (!started) throw new Error(problem)
        return {
          warning: `${problem}; commands are still accepted into the outbox and published once the broker is back`,
        }
      },
    },
    {
      name: 'consumers',
      async check() {
        if (!started) throw new Error('starting: not every module and consumer is up yet')
        const unwell = subscriptions.map((s) => s.health()).filter((h) => h.state !== 'running')
        const describe = (list: typeof unwell) => list.map((h) => `${h.groupId} ${h.state}: ${h.detail}`).join('; ')
        // A consumer stalled in a handler or stopped is this process's fault; one waiting for the
        // database or the broker is that dependency's, and catches up once it is back.
        const broken = unwell.filter((h) => h.state !== 'waiting-for-dependency')
        if (broken.length > 0) throw new Error(describe(broken))
        return unwell.length > 0 ? { warning: describe(unwell) } : undefined
      },
    },
    {
      name: 'outbox',
      async check() {
        const { backlog, oldestAgeSeconds } = await outbox.sample()
        if (oldestAgeSeconds * 1000 <= RELAY_STALL_MS) return undefined
        return {
          warning: `${backlog} messages wait to be published, the oldest for ${Math.round(oldestAgeSeconds)} s`,
          details: { backlog, oldestAgeSeconds: Math.round(oldestAgeSeconds) },
        }
      },
    },
  ]
  const http = createHttpServer({
    logger,
    metrics,
    trustProxy: config.http.trustProxy,
    maxInFlight: config.http.maxInFlight,
    checks: healthChecks,
    // Built once, on first request: the document is a pure function of the modules' contracts.
    asyncApi: once(() =>
      buildAsyncApiDocument(
        [...new Map(modules.flatMap((m) => m.topics ?? []).map((topic) => [topic.topic, topic])).values()],
        { title: 'orderflow', version: '0.1.0' },
        [...new Map(modules.flatMap((m) => m.plainTopics ?? []).map((topic) => [topic.topic, topic])).values()],
      ),
    ),
    ...(options.authenticate ? { authenticate: options.authenticate } : {}),
    // RATE_LIMIT unset: on exactly when authentication is (the laptop default stays unlimited).
    ...((config.rateLimit.enabled ?? options.authenticate !== undefined)
      ? {
          rateLimits: {
            ...(config.rateLimit.store === 'database' ? { store: databaseRateLimitStore(db) } : {}),
            windowMs: config.rateLimit.windowMs,
            perClient: config.rateLimit.perClient,
            perIp: config.rateLimit.perIp,
          },
        }
      : {}),
  })

  const running = new Map<string, StartedModule>()
  // Services see the database through this: a consumer's batch runs in one transaction they join,
  // and transactions that arrive while others are in flight share one (group commit).
  const batches = batchScope(db, {
    group: {
      // PGlite is one connection: one transaction at a time, the others group behind it. On
      // PostgreSQL a few run side by side and leave the pool's other connections to the consumers.
      maxInFlight: db.dialect === 'pglite' ? 1 : 4,
      maxSize: config.groupCommitMax,
    },
  })
  const clock = options.clock ?? (() => new Date())
  // Every consumer's dead letters are indexed for the console, and keys parked where asked. Over the
  // batch scope's database: a batch reads whether its keys are parked in its own transaction.
  const deadLetters = sqlDeadLetterStore(batches.db)
  const retry = { max: config.kafka.retryMax, backoffMs: config.kafka.retryBackoffMs }

  let stopping: Promise<void> | undefined
  const stopAll = () => {
    stopping ??= stopWorkers()
    return stopping
  }
  const stopWorkers = async () => {
    const failures: Error[] = []
    const attempt = async (what: string, work: () => Promise<void>) => {
      try {
        await work()
      } catch (error) {
        logger.error({ err: error }, `${what} did not stop cleanly`)
        failures.push(toError(error))
      }
    }
    for (const subscription of subscriptions.splice(0)) {
      await attempt(`consumer ${subscription.groupId}`, () => subscription.close())
    }
    outbox.stop()
    for (const [name, module] of [...running].reverse()) {
      if (module.stop) await attempt(`module ${name}`, () => module.stop?.() ?? Promise.resolve())
    }
    unsubscribe()
    unsubscribeNotices()
    await attempt('commit notices', () => notices.stop())
    await attempt('projections', () => projections.stop())
    await attempt('outbox relay', () => relay.stop())
    await attempt('housekeeping', () => housekeeping.stop())
    if (failures.length > 0) throw new AggregateError(failures, `${failures.length} part(s) failed to stop`)
  }

  try {
    for (const module of modules) {
      const moduleLogger = logger.child({ service: module.name })
      const context: ModuleContext = {
        platform: {
          topicPrefix: config.kafka.topicPrefix,
          schedulerPollIntervalMs: config.schedulerPollIntervalMs,
        },
        settings: moduleSettings(module.name, module.settings ?? [], config.environment),
        logger: moduleLogger,
        metrics,
        db: batches.db,
        transport,
        personalData: runtime.personalData,
        brokerProblem: () => runtime.brokerWatch?.problem(),
        clock,
        retry,
        committed: (written) => batches.afterCommit(() => signal.notify(written)),
        afterCommit: (callback) => batches.afterCommit(callback),
        catchUpProjections: (name) => projections.catchUp(name),
        async consume({ batch, ...consumer }) {
          const subscription = await startReliableConsumer({
            transport,
            metrics,
            retry,
            deadLetters,
            ...(batch && config.consumerBatchMax > 1
              ? {
                  batch: {
                    max: config.consumerBatchMax,
                    run: (work) => batches.run(work),
                    // On PostgreSQL, partitions' batches that meet share a transaction; PGlite's one
                    // connection queues them already (docs/benchmarks.md).
                    shareTransactions: db.dialect === 'postgres',
                  },
                }
              : {}),
            ...consumer,
            logger: (consumer.logger ?? moduleLogger).child({ consumer: consumer.groupId }),
          })
          subscriptions.push(subscription)
          return subscription
        },
      }
      const handle = await module.start(context)
      running.set(module.name, handle)
      if (handle.routes) registerApi(http, handle.routes)
      // The server reads its checks at request time, so a module's checks join the platform's.
      healthChecks.push(...(handle.health ?? []))
    }
  } catch (error) {
    await stopAll().catch(() => {})
    throw error
  }
  // Ready once every consumer has joined its group (on Kafka: its topics exist and it has partitions).
  void Promise.all(subscriptions.map((s) => s.ready)).then(
    () => {
      started = true
    },
    (error) => logger.error({ err: error }, 'a consumer did not join its group'),
  )

  const app: App = {
    http,
    runtime,
    relay,
    projections,
    migrations,
    stopWorkers: stopAll,
    startDraining() {
      draining = true
    },
    module<Handle extends object>(name: string) {
      const handle = running.get(name)
      if (!handle) throw new Error(`module '${name}' is not running in this app (running: ${names.join(', ')})`)
      return handle as StartedModule & Handle
    },
    async close() {
      let httpFailure: unknown
      // Node closes the connections that are idle when the server closes, not those that turn idle
      // after their last response: a keep-alive client could send on one again and wait there for
      // good, and the close would wait for it. Each becomes idle once its response is out; close it
      // then (a request in progress is never cut).
      const sweep = setInterval(() => http.server.closeIdleConnections(), 50)
      await http.close().catch((error) => {
        httpFailure = error
      })
      clearInterval(sweep)
      await stopAll()
      if (httpFailure) throw httpFailure
    },
  }
  return app
}

/** Readiness fails once the oldest unpublished outbox row is older than this: the relay is stuck. */
const RELAY_STALL_MS = 60_000

/**
 * The outbox backlog and the age of its oldest row, sampled into the metrics every 5 s (and on
 * demand for readiness): a relay that stalls shows before anyone misses an event.
 */
function sampleOutbox(db: SqlDatabase, metrics: Runtime['metrics']) {
  const sample = async () => {
    const { rows } = await db.query<{ backlog: string; age: number | null }>(
      // The age is of what the relay may publish: a row the broker refused for good, and the rows
      // of its key held behind it, wait for an operator (orderflow_outbox_refused), not the relay.
      `SELECT count(*)::text AS backlog,
              extract(epoch FROM now() - min(created_at) FILTER (WHERE ${PUBLISHABLE}))::float8 AS age
         FROM outbox WHERE published_at IS NULL`,
    )
    const backlog = Number(rows[0]?.backlog ?? 0)
    const oldestAgeSeconds = Math.max(0, rows[0]?.age ?? 0)
    metrics.outboxBacklog.set(backlog)
    metrics.outboxOldestAge.set(oldestAgeSeconds)
    return { backlog, oldestAgeSeconds }
  }
  const timer = setInterval(() => void sample().catch(() => {}), 5_000)
  timer.unref()
  return { sample, stop: () => clearInterval(timer) }
}

function once<T>(make: () => T): () => T {
  let made: { value: T } | undefined
  return () => {
    made ??= { value: make() }
    return made.value
  }
}
