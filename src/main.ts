import { setTimeout } from 'node:timers/promises'
import { inspect } from 'node:util'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { type AccessPolicy, accessPolicy, type Config, ConfigError, loadConfig } from './platform/config.ts'
import type { Authenticator } from './platform/http/auth.ts'
import { createDevelopmentTokens, type DevelopmentTokens, developmentTokenNotice } from './platform/http/dev-tokens.ts'
import { createJwtAuthenticator } from './platform/http/jwt.ts'
import type { Logger } from './platform/logger.ts'
import { openRuntime } from './platform/runtime.ts'
import { loadSettings } from './platform/settings.ts'
import { explainStartupFailure } from './platform/startup-errors.ts'
import { startTracing } from './platform/tracing.ts'
import { unknownVariableWarnings } from './platform/unknown-variables.ts'
import { journeySettings } from './saga/settings.ts'
import { selectModules, UnknownServiceError } from './services.ts'
import { allVariables, modulesSettingsProblems } from './settings.ts'

/**
 * Starts orderflow: the service modules `SERVICES` names (all by default) in this process. Without
 * configuration it runs on its embedded default (PGlite in DATA_DIR, the embedded log);
 * KAFKA_BROKERS and DATABASE_URL switch to Kafka and PostgreSQL.
 *
 * Authentication (`accessPolicy`): off on the embedded default on loopback, required once the
 * process listens beyond loopback or uses Kafka or PostgreSQL (start-up stops naming the variables
 * to set), unless AUTH=off says otherwise on purpose. AUTH=dev prints development tokens.
 *
 * SIGINT/SIGTERM close it gracefully within SHUTDOWN_TIMEOUT_MS: HTTP drains, consumers stop after
 * their current message and commit, the relay finishes its batch; a part that fails to close, a
 * timeout, an uncaught exception or an unhandled rejection ends the process with exit code 1.
 */
async function main(): Promise<void> {
  let config: Config
  let modules: ReturnType<typeof selectModules>
  let access: AccessPolicy
  try {
    config = loadConfig()
    modules = selectModules(config.services)
    // Every module's settings, run here or not: a wrong value stops every process alike.
    const problems = modulesSettingsProblems(process.env)
    if (problems.length > 0) throw new ConfigError(problems)
    access = accessPolicy(config)
  } catch (error) {
    if (error instanceof ConfigError || error instanceof UnknownServiceError) {
      process.stderr.write(`orderflow cannot start. ${error.message}\n`)
      process.exit(2)
    }
    throw error
  }
  const warnings = unknownVariableWarnings(process.env, allVariables())
  // Configuration mistakes end start-up with one line naming the variable, not a stack.
  const cannotStart = (error: unknown): never => {
    const explained = explainStartupFailure(error, config)
    if (explained === undefined) throw error
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`)
    process.stderr.write(`orderflow cannot start: ${explained}\n`)
    process.exit(1)
  }

  // Before anything makes spans (HTTP is instrumented when the app is built): off unless OTEL_* say so.
  const tracing = await startTracing(config.tracing)
  const runtime = await openRuntime(config).catch(cannotStart)
  const { logger } = runtime
  for (const warning of warnings) logger.warn(warning)
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
      // Readiness turns 503 first, while the process still serves, so that the load balancer takes
      // it out before the listener closes (after an unhandled error there is nothing to wait for).
      if (app && !err && config.shutdownDrainMs > 0) {
        app.startDraining()
        logger.info(
          { drainMs: config.shutdownDrainMs },
          `draining for ${config.shutdownDrainMs} ms: readiness answers 503, requests are still served`,
        )
        await setTimeout(config.shutdownDrainMs)
      }
      try {
        await app?.close()
      } finally {
        await runtime.close()
        // The spans of the shutdown itself go out too.
        await tracing.shutdown().catch((error) => logger.warn({ err: error }, 'could not send the last traces'))
      }
      logger.info('stopped')
    },
  )

  const developmentTokens = access.mode === 'dev' ? await createDevelopmentTokens() : undefined
  const authenticate: Authenticator | undefined =
    access.mode === 'jwt' && config.auth.jwt ? createJwtAuthenticator(config.auth.jwt) : developmentTokens?.authenticate
  let address: string
  try {
    app = await buildApp(runtime, modules, authenticate ? { authenticate } : {})
    address = await app.http.listen({ port: config.http.port, host: config.http.host })
  } catch (error) {
    await app?.close().catch(() => {})
    await runtime.close().catch(() => {})
    return cannotStart(error)
  }
  if (config.tracing) {
    const { exporter, sampler, serviceName } = config.tracing
    logger.info(
      { tracing: exporter.kind === 'otlp' ? exporter.url : exporter.kind, sampler: sampler.kind, serviceName },
      `tracing is on: spans of ${serviceName} go to ${exporter.kind === 'otlp' ? exporter.url : 'the console'}`,
    )
  }
  const sagaMode = loadSettings(journeySettings).mode
  logger.info(
    {
      address,
      services: modules.map((m) => m.name),
      transport: runtime.transport.kind,
      sagaMode,
      database: config.database.kind === 'pglite' ? `pglite:${config.database.dataDir}` : 'postgres',
    },
    `orderflow listening on ${address} (${runtime.transport.kind} transport, ${config.database.kind === 'pglite' ? 'embedded PGlite' : 'PostgreSQL'}, saga mode ${sagaMode})`,
  )
  if (modules.some((m) => m.name === 'dashboard')) {
    logger.info({ dashboard: `${address}/dashboard` }, `the dashboard: ${address}/dashboard`)
  }
  await announceAccess(logger, config, access, address, developmentTokens)
}

function warnOpen(logger: Logger, access: AccessPolicy): void {
  logger.warn(
    { auth: 'off', exposure: access.exposure },
    `AUTH=off: AUTHENTICATION IS OFF although ${access.exposure.join('; ')}. Anyone who reaches this process may read and change every order and call the operator routes. Set AUTH_JWKS_URL or AUTH_JWT_SECRET unless this is on purpose.`,
  )
}

async function announceAccess(
  logger: Logger,
  config: Config,
  access: AccessPolicy,
  address: string,
  developmentTokens: DevelopmentTokens | undefined,
): Promise<void> {
  switch (access.mode) {
    case 'off':
      if (access.explicitlyOpen) return warnOpen(logger, access)
      logger.info(
        { auth: 'off' },
        'authentication is off (the embedded default on loopback); AUTH=dev npm start turns it on with development tokens, AUTH_JWKS_URL or AUTH_JWT_SECRET with real ones',
      )
      return
    case 'jwt': {
      const jwt = config.auth.jwt
      logger.info(
        {
          auth: 'jwt',
          keys: jwt?.keys.kind === 'jwks' ? jwt.keys.url : 'shared secret',
          issuer: jwt?.issuer,
          audience: jwt?.audience,
          algorithms: jwt?.algorithms,
        },
        'authentication is on: bearer JWTs',
      )
      return
    }
    case 'dev':
      if (!developmentTokens) return
      logger.info({ auth: 'dev' }, 'authentication is on with development tokens (AUTH=dev)')
      // Plain text on purpose: these are meant to be copied into a shell.
      process.stdout.write(await developmentTokenNotice(developmentTokens, address))
      return
  }
}

main().catch((error) => {
  process.stderr.write(
    // Not every throw is an Error (PGlite's WebAssembly can throw other values): say what it was.
    `orderflow failed to start: ${error instanceof Error ? (error.stack ?? error.message) : inspect(error, { depth: 4 })}\n`,
  )
  process.exit(1)
})
