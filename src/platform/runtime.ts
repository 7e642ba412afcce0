import { mkdir } from 'node:fs/promises'
import type { Config } from './config.ts'
import { createLogger, type Logger } from './logger.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { lockDataDir } from './sql/data-dir-lock.ts'
import { openPglite } from './sql/pglite.ts'
import type { SqlDatabase } from './sql/port.ts'
import { openPostgres } from './sql/postgres.ts'
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
  close(): Promise<void>
}

export async function openRuntime(config: Config, overrides: { logger?: Logger } = {}): Promise<Runtime> {
  const logger = overrides.logger ?? createLogger({ level: config.logLevel })
  const metrics = createMetrics({ defaultMetrics: true })
  let db: SqlDatabase
  let unlock = () => {}
  if (config.database.kind === 'pglite') {
    await mkdir(config.database.dataDir, { recursive: true })
    unlock = lockDataDir(config.database.dataDir)
    try {
      db = await openPglite(config.database.dataDir)
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
  return {
    config,
    logger,
    metrics,
    db,
    transport,
    async close() {
      await transport.close()
      await db.close()
      unlock()
    },
  }
}
