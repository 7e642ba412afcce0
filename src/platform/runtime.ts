import { mkdir } from 'node:fs/promises'
import type { Config } from './config.ts'
import { createLogger, type Logger } from './logger.ts'
import { createMetrics, type Metrics } from './metrics.ts'
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
  /** On Kafka: whether any broker of KAFKA_BROKERS can be reached (said once in the log, and in readiness). */
  brokerWatch?: BrokerWatch
  close(): Promise<void>
}

export async function openRuntime(config: Config, overrides: { logger?: Logger } = {}): Promise<Runtime> {
  const logger = overrides.logger ?? createLogger({ level: config.logLevel })
  const metrics = createMetrics({ defaultMetrics: true })
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
  const raw =
    config.transport === 'kafka'
      ? await createKafkaTransport({
          brokers: config.kafka.brokers,
          clientId: config.kafka.clientId,
          partitions: config.kafka.partitions,
          replicationFactor: config.kafka.replicationFactor,
          requiredAcks: config.kafka.requiredAcks,
          retries: config.kafka.retryMax,
          retryBackoffMs: config.kafka.retryBackoffMs,
          security: config.kafka.security,
          logger,
        })
      : await createEmbeddedTransport({ db, partitions: config.kafka.partitions, logger })
  const transport = instrumentTransport(namespaceTransport(raw, config.kafka.topicPrefix), { logger, metrics })
  const brokerWatch =
    config.transport === 'kafka'
      ? watchBrokers({
          brokers: config.kafka.brokers,
          logger,
          consequence:
            'Orders are still accepted: their events wait in the outbox and are published once a broker answers. /health/ready reports the broker down until then. Check KAFKA_BROKERS (host:port of a broker this machine can reach).',
        })
      : undefined
  return {
    config,
    logger,
    metrics,
    db,
    transport,
    ...(brokerWatch ? { brokerWatch } : {}),
    async close() {
      brokerWatch?.stop()
      await transport.close()
      await db.close()
      unlock()
    },
  }
}
