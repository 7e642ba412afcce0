import { randomBytes } from 'node:crypto'
import { openPglite } from '../../src/platform/sql/pglite.ts'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { openPostgres, quoteIdentifier } from '../../src/platform/sql/postgres.ts'
import type { IncomingMessage, Subscription, Transport } from '../../src/platform/transport/port.ts'

/** The local PostgreSQL the test suite uses; `DATABASE_URL` overrides it. */
export const testDatabaseUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test'

/** A name no other test file or run uses: topics, groups, schemas. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`
}

export interface TestDatabase {
  db: SqlDatabase
  /** Opens one more connection pool onto the same schema (a second "process"). */
  reopen(): SqlDatabase
  /** Closes every pool and drops the schema. */
  cleanup(): Promise<void>
}

/** A fresh schema on the local PostgreSQL, dropped by `cleanup()`. */
export async function postgresTestDatabase(prefix = 'of_test'): Promise<TestDatabase> {
  const schema = uniqueName(prefix)
  const admin = openPostgres({ connectionString: testDatabaseUrl, max: 1 })
  await admin.exec(`CREATE SCHEMA ${quoteIdentifier(schema)}`)
  const pools: SqlDatabase[] = []
  const reopen = () => {
    const pool = openPostgres({ connectionString: testDatabaseUrl, schema })
    pools.push(pool)
    return pool
  }
  const db = reopen()
  return {
    db,
    reopen,
    async cleanup() {
      await Promise.allSettled(pools.map((p) => p.close()))
      await admin.exec(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`)
      await admin.close()
    },
  }
}

/** An in-memory PGlite database. */
export async function pgliteTestDatabase(): Promise<TestDatabase> {
  const db = await openPglite()
  return {
    db,
    reopen: () => {
      throw new Error('an in-memory PGlite database cannot be opened twice; use a dataDir')
    },
    cleanup: () => db.close(),
  }
}

/** The brokers of the Kafka the test command started (or the one `KAFKA_BROKERS` names). */
export function kafkaBrokers(): string[] {
  const raw = process.env.KAFKA_BROKERS
  if (!raw) {
    throw new Error('KAFKA_BROKERS is not set: run the tests with `npm test`, which starts a broker')
  }
  return raw.split(',').map((b) => b.trim())
}

/**
 * Polls `condition` until it returns a truthy value, or fails with `message` after `timeoutMs`.
 * Tests wait on conditions, never on fixed sleeps.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; message: string | (() => string) },
): Promise<NonNullable<T>> {
  // The monotonic clock: a test may step the wall clock (`Date.now`).
  const deadline = performance.now() + (options.timeoutMs ?? 20_000)
  let lastError: unknown
  for (;;) {
    try {
      const value = await condition()
      if (value) return value as NonNullable<T>
    } catch (error) {
      lastError = error
    }
    if (performance.now() > deadline) {
      const text = typeof options.message === 'function' ? options.message() : options.message
      throw new Error(`Timed out after ${options.timeoutMs ?? 20_000} ms: ${text}`, { cause: lastError })
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 25))
  }
}

/**
 * Waits until `subscription` has joined its group, or fails with a message saying so. A transport
 * keeps reconnecting while its broker is away (what a service wants); a test must fail instead.
 */
export async function joined(subscription: Subscription, timeoutMs = 30_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `Timed out after ${timeoutMs} ms: consumer group ${subscription.groupId} did not join; is the broker reachable?`,
          ),
        ),
      timeoutMs,
    )
  })
  try {
    await Promise.race([subscription.ready, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Every message on `topic`, read from the beginning by a consumer group of its own. */
export async function follow(
  transport: Transport,
  topic: string,
  groupPrefix = 'reader',
): Promise<{ seen: IncomingMessage[]; sub: Subscription }> {
  const seen: IncomingMessage[] = []
  const sub = await transport.subscribe({
    groupId: uniqueName(groupPrefix),
    topics: [topic],
    handler: async (m) => void seen.push(m),
  })
  await joined(sub)
  return { seen, sub }
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (!address || typeof address === 'string') throw new Error('no free port')
  return address.port
}
