import { type App, type AppOptions, buildApp } from '../../src/app.ts'
import type { OrderStore } from '../../src/order/application/order-store.ts'
import { type OrderModule, orderModule } from '../../src/order/index.ts'
import { loadConfig } from '../../src/platform/config.ts'
import type { Role } from '../../src/platform/http/auth.ts'
import { createDevelopmentTokens, type DevelopmentTokens } from '../../src/platform/http/dev-tokens.ts'
import { createLogger, type Logger } from '../../src/platform/logger.ts'
import { createMetrics } from '../../src/platform/metrics.ts'
import type { ServiceModule } from '../../src/platform/module.ts'
import { openPersonalData, type Runtime } from '../../src/platform/runtime.ts'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { instrumentTransport } from '../../src/platform/transport/instrumented.ts'
import type { Transport } from '../../src/platform/transport/port.ts'

/**
 * The app a test runs: built by `buildApp`, exactly as `main` builds it, on the database and
 * transport the test opened (a schema of its own, a topic prefix or an embedded log of its own).
 * Closing it stops the app; the test still owns and closes the database and transport.
 */
export interface TestAppOptions {
  db: SqlDatabase
  transport: Transport
  /** Default: the order module. */
  modules?: readonly ServiceModule[]
  /** Environment the configuration is read from (retries default to 3 × 10 ms in tests). */
  env?: Record<string, string>
  app?: AppOptions
  logger?: Logger
}

export async function startTestApp(options: TestAppOptions): Promise<App> {
  const logger = options.logger ?? createLogger({ level: 'silent' })
  const metrics = createMetrics()
  const config = loadConfig({ KAFKA_RETRY_BACKOFF_MS: '10', LOG_LEVEL: 'silent', ...options.env })
  const runtime: Runtime = {
    config,
    logger,
    metrics,
    db: options.db,
    transport: instrumentTransport(options.transport, { logger, metrics }),
    personalData: openPersonalData(config, options.db),
    // The test owns the database and the transport.
    close: async () => {},
  }
  const app = await buildApp(runtime, options.modules ?? [orderModule()], { pollIntervalMs: 200, ...options.app })
  await app.http.ready()
  return app
}

/**
 * Development tokens for a test (`AUTH=dev`'s, from a key of the test's own): pass `authenticate`
 * as `startTestApp({ app: { authenticate } })`, and send `headers(...)` with each request.
 */
export interface TestTokens extends DevelopmentTokens {
  /** The Authorization header of a fresh token for `subject` with `roles` (none: a customer's token). */
  headers(subject: string, roles?: readonly Role[]): Promise<{ authorization: string }>
}

export async function testTokens(): Promise<TestTokens> {
  const tokens = await createDevelopmentTokens()
  return {
    ...tokens,
    async headers(subject, roles) {
      return { authorization: `Bearer ${await tokens.issue(subject, roles)}` }
    },
  }
}

/** The order service of a test app, with what order tests reach for. */
export interface TestOrderService {
  app: App
  store: OrderStore
  relay: App['relay']
  projection: { catchUp(): Promise<void> }
  /** Stops the app's workers and HTTP (the database and transport stay open). */
  stop(): Promise<void>
}

/** An app running only the order module, configured as order tests need it. */
export async function startOrderService(options: {
  db: SqlDatabase
  transport: Transport
  logger?: Logger
  retry?: { max: number; backoffMs: number }
  pollIntervalMs?: number
  commandsGroupId?: string
  clock?: () => Date
}): Promise<TestOrderService> {
  const app = await startTestApp({
    db: options.db,
    transport: options.transport,
    ...(options.logger ? { logger: options.logger } : {}),
    env: options.retry
      ? { KAFKA_RETRY_MAX: String(options.retry.max), KAFKA_RETRY_BACKOFF_MS: String(options.retry.backoffMs) }
      : {},
    modules: [orderModule(options.commandsGroupId ? { commandsGroupId: options.commandsGroupId } : {})],
    app: {
      ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
    },
  })
  return {
    app,
    store: app.module<OrderModule>('order').store,
    relay: app.relay,
    projection: { catchUp: () => app.projections.catchUp() },
    stop: () => app.close(),
  }
}
