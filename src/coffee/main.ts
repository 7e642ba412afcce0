import closeWithGrace from 'close-with-grace'
import { buildApp } from '../app.ts'
import { loadConfig } from '../platform/config.ts'
import { createLogger } from '../platform/logger.ts'
import { createMetrics } from '../platform/metrics.ts'
import { openPersonalData, type Runtime } from '../platform/runtime.ts'
import { openPglite } from '../platform/sql/pglite.ts'
import { watchBrokers } from '../platform/transport/broker-watch.ts'
import { createKafkaTransport } from '../platform/transport/kafka.ts'
import { type CoffeeConfig, CoffeeConfigError, loadCoffeeConfig } from './config.ts'
import { coffeeModule } from './index.ts'

/**
 * Seed 003's coffee app on its own: `npm run coffee` runs the producer and the consumer,
 * `npm run coffee -- producer` or `-- consumer` one of them (start the consumer twice to see the
 * group split the partitions). Kafka at KAFKA_BROKERS (default localhost:9092), as in the seed.
 *
 * It is built like every orderflow process (`buildApp` with one module); the coffee shop stores
 * nothing, so the platform's tables live in an in-memory PGlite.
 */
async function main(): Promise<void> {
  const role = process.argv[2] ?? 'both'
  const usage =
    'usage: npm run coffee [-- producer | consumer]   (both by default; Kafka at KAFKA_BROKERS, default localhost:9092)\n'
  if (['help', '--help', '-h'].includes(role)) {
    process.stdout.write(usage)
    process.exit(0)
  }
  if (!['producer', 'consumer', 'both'].includes(role) || process.argv.length > 3) {
    process.stderr.write(`coffee: unexpected argument '${process.argv.at(-1)}'\n${usage}`)
    process.exit(2)
  }
  let coffee: CoffeeConfig
  try {
    coffee = loadCoffeeConfig()
  } catch (error) {
    if (error instanceof CoffeeConfigError) {
      process.stderr.write(`the coffee app cannot start. ${error.message}\n`)
      process.exit(2)
    }
    throw error
  }

  const logger = createLogger({ name: 'coffee', level: coffee.logLevel })
  const brokerWatch = watchBrokers({
    brokers: coffee.brokers,
    logger,
    consequence:
      'POST /order answers 503 until a broker answers, and the consumer waits. Check KAFKA_BROKERS (host:port of a broker this machine can reach; `npm run kafka:start` starts one on 127.0.0.1:9092).',
  })
  const config = loadConfig({
    KAFKA_BROKERS: coffee.brokers.join(','),
    KAFKA_RETRY_MAX: String(coffee.retryMax),
    KAFKA_REQUIRED_ACKS: coffee.requiredAcks,
    PORT: String(coffee.port),
    HOST: coffee.host,
    LOG_LEVEL: coffee.logLevel,
    // SASL and TLS to the brokers, as for orderflow itself.
    ...Object.fromEntries(Object.entries(process.env).filter(([name]) => /^KAFKA_(SASL|TLS)/.test(name))),
  })
  const db = await openPglite()
  const transport = await createKafkaTransport({
    brokers: coffee.brokers,
    clientId: 'coffee',
    partitions: config.kafka.partitions,
    replicationFactor: config.kafka.replicationFactor,
    requiredAcks: coffee.requiredAcks,
    retries: coffee.retryMax,
    retryBackoffMs: config.kafka.retryBackoffMs,
    security: config.kafka.security,
    logger,
  })
  const runtime: Runtime = {
    config,
    logger,
    metrics: createMetrics({ defaultMetrics: true }),
    db,
    transport,
    personalData: openPersonalData(config, db),
    brokerWatch,
    async close() {
      brokerWatch.stop()
      await transport.close()
      await db.close()
    },
  }
  let app: Awaited<ReturnType<typeof buildApp>> | undefined
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger: false }, async ({ err }) => {
    if (err) logger.fatal({ err }, 'unhandled error; shutting down')
    try {
      await app?.close()
    } finally {
      await runtime.close()
    }
  })
  app = await buildApp(runtime, [
    coffeeModule({
      topic: coffee.topic,
      groupId: coffee.groupId,
      producer: role !== 'consumer',
      consumer: role !== 'producer',
    }),
  ])
  if (role === 'consumer') {
    logger.info({ topic: coffee.topic, groupId: coffee.groupId }, 'coffee consumer running')
    return
  }
  await brokerWatch.checked
  const address = await app.http.listen({ port: coffee.port, host: coffee.host })
  logger.info({ address, topic: coffee.topic, role }, `coffee producer listening on ${address}`)
}

main().catch((error) => {
  process.stderr.write(`the coffee app failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
  process.exit(1)
})
