import { mkdir } from 'node:fs/promises'
import type { Config } from './config.ts'
import { createLogger, type Logger } from './logger.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { type KeyEncryptionKey, localKeyFile } from './personal-data/kek.ts'
import { createPersonalData, type PersonalData } from './personal-data/personal-data.ts'
import { lockDataDir } from './sql/data-dir-lock.ts'
import { openPglite } from './sql/pglite.ts'
import type { SqlDatabase } from './sql/port.ts'
import { openPostgres } from './sql/postgres.ts'
import { type BrokerWatch, watchBrokers } from './transport/broker-watch.ts'
import { createEmbeddedTransport } from './transport/embedded.ts'
import { instrumentTransport } from './transport/instrumented.ts'
import { createKafkaTransport } from './transport/kafka.ts'
import { namespaceTransport } from './transport/namespaced.ts'
import type { Transport } from './transport/port.ts'

/** What every service of a process shares: one database, one transport, logs and metrics. */
export interface Runtime {
  config: Config
  logger: Logger
  metrics: Metrics
  db: SqlDatabase
  transport: Transport
  /** Seals and opens personal fields with each customer's data key; erases a customer's keys. */
  personalData: PersonalData
  /** On Kafka: whether any broker of KAFKA_BROKERS can be reached (said once in the log, and in readiness). */
  brokerWatch?: BrokerWatch
  close(): Promise<void>
}

export async function openRuntime(config: Config, overrides: { logger?: Logger } = {}): Promise<Runtime> {
  const logger = overrides.logger ?? createLogger({ level: config.logLevel })
  const metrics = createMetrics({ defaultMetrics: true })
  // Read (or created) before anything opens: a key file that cannot be used stops start-up with why.
  const kek = keyEncryptionKeyOf(config)
  let db: SqlDatabase
  let unlock = () => {}
  if (config.database.kind === 'pglite') {
    const { dataDir } = config.database
    await mkdir(config.database.dataDir, { recursive: true })
    unlock = lockDataDir(config.database.dataDir)
    try {
      db = await openPglite(config.database.dataDir, {
        onFatal: (error) => {
          // PGlite would never answer again (a PANIC inside WebAssembly): stop now, with the reason,
          // rather than hang. Everything committed is in the log; the next start recovers it.
          logger.fatal(
            { err: error, dataDir },
            `the embedded database could not write its log in DATA_DIR ${dataDir} (${error.message}): is the disk full? orderflow stops; start it again once there is space (nothing committed is lost)`,
          )
          unlock()
          process.exit(70)
        },
      })
    } catch (error) {
      unlock()
      throw error
    }
  } else {
    db = openPostgres({
      connectionString: config.database.url,
      onPoolError: (error) => logger.warn({ err: error }, 'idle PostgreSQL connection failed'),
    })
  }
  const transport = instrumentTransport(await openTransport(config, db, { logger }), { logger, metrics })
  const brokerWatch =
    config.transport === 'kafka'
      ? watchBrokers({
          brokers: config.kafka.brokers,
          logger,
          consequence:
            'Orders are still accepted: their events wait in the outbox and are published once a broker answers. /health/ready reports the broker down until then. Check KAFKA_BROKERS (host:port of a broker this machine can reach).',
        })
      : undefined
  const personalData = openPersonalData(config, db, kek)
  return {
    config,
    logger,
    metrics,
    db,
    transport,
    personalData,
    ...(brokerWatch ? { brokerWatch } : {}),
    async close() {
      brokerWatch?.stop()
      await transport.close()
      await db.close()
      unlock()
    },
  }
}

/**
 * The configuration's transport over `db` (the embedded log's database): Kafka or the embedded
 * log, under the deployment's topic prefix. `clientId` names a command's own Kafka clients.
 */
export async function openTransport(
  config: Config,
  db: SqlDatabase,
  options: { logger?: Logger; clientId?: string } = {},
): Promise<Transport> {
  const { logger } = options
  const raw =
    config.transport === 'kafka'
      ? await createKafkaTransport({
          brokers: config.kafka.brokers,
          clientId: options.clientId ?? config.kafka.clientId,
          partitions: config.kafka.partitions,
          replicationFactor: config.kafka.replicationFactor,
          requiredAcks: config.kafka.requiredAcks,
          retries: config.kafka.retryMax,
          retryBackoffMs: config.kafka.retryBackoffMs,
          security: config.kafka.security,
          createTopics: config.kafka.createTopics,
          ...(logger ? { logger } : {}),
        })
      : await createEmbeddedTransport({ db, partitions: config.kafka.partitions, ...(logger ? { logger } : {}) })
  return namespaceTransport(raw, config.kafka.topicPrefix)
}

/** The key-encryption key the configuration names (PERSONAL_DATA_KEY_FILE). */
export function keyEncryptionKeyOf(config: Config): KeyEncryptionKey {
  return localKeyFile(config.personalData.keyFile, { create: config.personalData.createKeyFile })
}

/** Personal data over `db`, with the configuration's key-encryption key and cache bounds. */
export function openPersonalData(
  config: Config,
  db: SqlDatabase,
  kek: KeyEncryptionKey = keyEncryptionKeyOf(config),
): PersonalData {
  return createPersonalData({
    db,
    kek,
    cacheSize: config.personalData.cacheSize,
    cacheTtlMs: config.personalData.cacheTtlMs,
  })
}
