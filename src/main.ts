import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { type Config, ConfigError, loadConfig } from './platform/config.ts'
import { openRuntime } from './platform/runtime.ts'
import { selectModules, UnknownServiceError } from './services.ts'

/**
 * Starts orderflow: the service modules `SERVICES` names (all by default) in this process. Without
 * configuration it runs on its embedded default (PGlite in DATA_DIR, the embedded log);
 * KAFKA_BROKERS and DATABASE_URL switch to Kafka and PostgreSQL.
 *
 * SIGINT/SIGTERM close it gracefully within SHUTDOWN_TIMEOUT_MS: HTTP drains, consumers stop after
 * their current message and commit, the relay finishes its batch; a part that fails to close, a
 * timeout, an uncaught exception or an unhandled rejection ends the process with exit code 1.
 */
async function main(): Promise<void> {
  let config: Config
  let modules: ReturnType<typeof selectModules>
  try {
    config = loadConfig()
    modules = selectModules(config.services)
  } catch (error) {
    if (error instanceof ConfigError || error instanceof UnknownServiceError) {
      process.stderr.write(`orderflow cannot start. ${error.message}\n`)
      process.exit(2)
    }
    throw error
  }

  const runtime = await openRuntime(config)
  const { logger } = runtime
  let app: Awaited<ReturnType<typeof buildApp>> | undefined

  closeWithGrace(
    {
      delay: config.shutdownTimeoutMs,
      logger: false,
      onTimeout: (delay) => {
        logger.fatal({ timeoutMs: delay }, `shutdown did not finish within ${delay} ms; exiting`)
      },
    },
    async ({ signal, err }) => {
      if (err) logger.fatal({ err }, 'unhandled error; shutting down')
      else logger.info({ signal }, 'shutting down')
      try {
        await app?.close()
      } finally {
        await runtime.close()
      }
      logger.info('stopped')
    },
  )

  app = await buildApp(runtime, modules)
  const address = await app.http.listen({ port: config.http.port, host: config.http.host })
  logger.info(
    {
      address,
      services: modules.map((m) => m.name),
      transport: runtime.transport.kind,
      database: config.database.kind === 'pglite' ? `pglite:${config.database.dataDir}` : 'postgres',
    },
    `orderflow listening on ${address}`,
  )
}

main().catch((error) => {
  process.stderr.write(
    `orderflow failed to start: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`,
  )
  process.exit(1)
})
