import { orderRoutes } from './order/http/routes.ts'
import { createOrderService } from './order/service.ts'
import { ConfigError, loadConfig } from './platform/config.ts'
import { isAppError } from './platform/errors.ts'
import { createHttpServer } from './platform/http/server.ts'
import { openRuntime } from './platform/runtime.ts'

/**
 * Starts orderflow: every service in this process. Without configuration it runs on its embedded
 * default (PGlite in DATA_DIR, the embedded log); KAFKA_BROKERS and DATABASE_URL switch to Kafka and
 * PostgreSQL.
 */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig()
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`orderflow cannot start. ${error.message}\n`)
      process.exit(2)
    }
    throw error
  }

  const runtime = await openRuntime(config)
  const { logger, db, transport } = runtime
  const orders = await createOrderService({
    db,
    transport,
    logger,
    metrics: runtime.metrics,
    retry: { max: config.kafka.retryMax, backoffMs: config.kafka.retryBackoffMs },
  })
  const app = createHttpServer({
    logger,
    metrics: runtime.metrics,
    checks: [{ name: 'database', check: async () => void (await db.query('SELECT 1')) }],
  })
  await app.register(orderRoutes({ store: orders.store, db }))

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down')
    await app.close()
    await orders.stop()
    await runtime.close()
    process.exit(0)
  }
  process.on('SIGINT', () => void stop('SIGINT'))
  process.on('SIGTERM', () => void stop('SIGTERM'))

  const address = await app.listen({ port: config.http.port, host: config.http.host })
  logger.info(
    {
      address,
      transport: transport.kind,
      database: config.database.kind === 'pglite' ? `pglite:${config.database.dataDir}` : 'postgres',
    },
    `orderflow listening on ${address}`,
  )
}

main().catch((error) => {
  if (isAppError(error, 'CONFIG_INVALID')) {
    process.stderr.write(`orderflow cannot start. ${error.message}\n`)
    process.exit(2)
  }
  process.stderr.write(
    `orderflow failed to start: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`,
  )
  process.exit(1)
})
