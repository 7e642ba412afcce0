import type { FastifyPluginAsync } from 'fastify'
import type { PlainTopicContract } from '../contracts/asyncapi.ts'
import type { TopicContract } from '../contracts/registry.ts'
import type { Config } from './config.ts'
import type { ProjectionDefinition } from './es/projections.ts'
import type { ReplaySource } from './es/replay.ts'
import type { HealthCheck } from './http/server.ts'
import type { Logger } from './logger.ts'
import type { Metrics } from './metrics.ts'
import type { CommittedWrites } from './outbox/outbox.ts'
import type { PersonalData } from './personal-data/personal-data.ts'
import type { ModuleSettings, SettingsSlice } from './settings.ts'
import type { SqlDatabase } from './sql/port.ts'
import type { Subscription, Transport } from './transport/port.ts'
import type { ReliableConsumerOptions, RetryPolicy } from './transport/reliable-consumer.ts'

/**
 * A service module: everything the platform needs to run one service in a process. `main`, the
 * tests and the benchmarks build their app from a list of modules (`buildApp`), and `SERVICES`
 * chooses which modules a process runs.
 */
export interface ServiceModule<Handle extends object = object> {
  /** The service's name: what `SERVICES` names, and the prefix of the module's logs. */
  name: string
  /** Its `migrations/` folder of `NNN.do.description.sql` files (`migrationsBeside(import.meta.url)`). */
  migrations?: URL
  /** The topics it publishes or consumes, for the AsyncAPI document. */
  topics?: readonly TopicContract[]
  /** Topics without an envelope (one bare message schema), for the AsyncAPI document. */
  plainTopics?: readonly PlainTopicContract[]
  /** Its projections, run by the process's one projection runner. */
  projections?: readonly ProjectionDefinition[]
  /**
   * What a replay of its stream type re-publishes (`npm run orderflow -- replay --stream-type …`):
   * `newest` each event as the newest version of its type (through the upcasters), `asStored` each in
   * the version it was stored with.
   */
  replay?: { newest: ReplaySource; asStored: ReplaySource }
  /**
   * The settings it reads (platform/settings.ts): read and checked with the rest of the
   * configuration at start-up, handed to it as `context.settings`, and listed in the README.
   */
  settings?: readonly SettingsSlice<unknown>[]
  start(context: ModuleContext): Promise<StartedModule & Handle>
}

export interface StartedModule {
  /** Its HTTP routes, registered in a scope of their own with zod validation. */
  routes?: FastifyPluginAsync
  /** Checks that `/health` runs besides the platform's own. */
  health?: readonly HealthCheck[]
  /** Stops what the module started itself (consumers started with `consume` are stopped for it). */
  stop?(): Promise<void>
}

/** What the consumer options leave to the platform's defaults. */
export type ConsumeOptions<T> = Omit<
  ReliableConsumerOptions<T>,
  'transport' | 'retry' | 'logger' | 'metrics' | 'batch' | 'deadLetters'
> &
  Partial<Pick<ReliableConsumerOptions<T>, 'retry' | 'logger'>> & {
    /**
     * The handler's work is the database's alone (`context.db`, no call out): the platform may run
     * a partition's backlog in one transaction (`CONSUMER_BATCH_MAX`), each message as written.
     */
    batch?: boolean
  }

export interface PlatformView {
  /**
   * KAFKA_TOPIC_PREFIX. The transport adds and strips it by itself; a module needs it only to find
   * rows that name topics or groups with it.
   */
  topicPrefix: string
  /** How often durable timers are looked for. */
  schedulerPollIntervalMs: Config['schedulerPollIntervalMs']
}

export interface ModuleContext {
  /**
   * What a module may know of the platform's configuration. Which log it runs on, and how to reach
   * it, are the transport's business (`transport.kind`, `transport.readTopic`, `transport.describeLog`).
   * Its own settings are in `settings`; access, HTTP and database settings are the platform's alone.
   */
  platform: PlatformView
  /** The settings slices the module declared: `context.settings.get(paymentSettings)`. */
  settings: ModuleSettings
  logger: Logger
  metrics: Metrics
  db: SqlDatabase
  transport: Transport
  /** Seals and opens personal fields (platform/personal-data). */
  personalData: PersonalData
  /** On Kafka: why no broker of KAFKA_BROKERS can be reached, or undefined when one answers (or not on Kafka). */
  brokerProblem: () => string | undefined
  clock: () => Date
  /**
   * Say so after a transaction that wrote events or outbox rows: wakes the relay and projections
   * (inside a consumer's batch, once the batch committed). Saying which stream types' events it
   * appended (`{ streamTypes: [] }` for outbox rows alone) spares the projections of others a read.
   */
  committed(written?: CommittedWrites): void
  /** Runs `callback` once the current transaction committed: a consumer's batch, or at once. */
  afterCommit(callback: () => void): void
  retry: RetryPolicy
  /** Starts a consumer with retries, dead letters, logs and metrics; stopped by the app on close. */
  consume<T>(options: ConsumeOptions<T>): Promise<Subscription>
  /** Resolves once every projection has applied every event committed before the call. */
  catchUpProjections(name?: string): Promise<void>
}
