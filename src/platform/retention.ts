import { Counter, type Registry } from 'prom-client'
import type { Config } from './config.ts'
import type { Logger } from './logger.ts'
import type { Metrics } from './metrics.ts'
import type { SqlDatabase } from './sql/port.ts'
import { pruneEmbeddedLog } from './transport/embedded.ts'

/**
 * Retention for the tables that would otherwise grow forever: the embedded log (by age and by size
 * per partition, like Kafka's `retention.ms` and `retention.bytes`), the inbox and the stored
 * Idempotency-Key responses. A setting of 0 keeps rows forever.
 *
 * Deletes run in batches of a few thousand rows, each its own statement, so a large backlog never
 * holds one long transaction (PGlite has a single connection that the services share). Several
 * processes on one PostgreSQL may run housekeeping at once: the deletes are idempotent, at worst
 * some work is done twice.
 */

const DELETE_BATCH = 5_000
const DEFAULT_INTERVAL_MS = 10 * 60_000
/** The first pass comes soon after start, spread so that processes started together do not collide. */
const FIRST_PASS_DELAY_MS = { min: 5_000, spread: 25_000 }
/** Later passes wander ±10 % around the interval for the same reason. */
const INTERVAL_JITTER = 0.1

export interface HousekeepingReport {
  /** Rows deleted per table in this pass. */
  deleted: { log_messages: number; inbox: number; idempotency_keys: number; consumer_retries: number }
}

/** Deletes inbox entries handled more than `olderThanMs` ago; 0 keeps them. */
export async function pruneInbox(db: SqlDatabase, olderThanMs: number): Promise<{ deleted: number }> {
  if (olderThanMs <= 0 || !(await tableExists(db, 'inbox'))) return { deleted: 0 }
  return deleteInBatches(db, 'inbox', 'handled_at', olderThanMs)
}

/** Deletes the record of consumers' retries older than `olderThanMs`; 0 keeps them (as the inbox). */
export async function pruneConsumerRetries(db: SqlDatabase, olderThanMs: number): Promise<{ deleted: number }> {
  if (olderThanMs <= 0 || !(await tableExists(db, 'consumer_retries'))) return { deleted: 0 }
  return deleteInBatches(db, 'consumer_retries', 'failed_at', olderThanMs)
}

/**
 * Deletes stored Idempotency-Key responses created more than `olderThanMs` ago; 0 keeps them. A
 * retry of the same request after that is treated as a new request. The table belongs to the HTTP
 * layer and may not exist yet (no HTTP service in this process, or not migrated): nothing to do.
 */
export async function pruneIdempotencyKeys(db: SqlDatabase, olderThanMs: number): Promise<{ deleted: number }> {
  if (olderThanMs <= 0 || !(await tableExists(db, 'idempotency_keys'))) return { deleted: 0 }
  return deleteInBatches(db, 'idempotency_keys', 'created_at', olderThanMs)
}

export interface HousekeepingOptions {
  db: SqlDatabase
  logger: Pick<Logger, 'info' | 'warn'>
  retention: Config['retention']
  /** Whether this process's transport is the embedded log (a Kafka broker applies its own retention). */
  embeddedLog: boolean
  /** Time between passes (default 10 minutes, jittered by ±10 %). */
  intervalMs?: number
  /** Counts deleted rows (`orderflow_retention_deleted_rows_total{table}`) and failed passes. */
  metrics?: Pick<Metrics, 'registry'>
}

export interface Housekeeping {
  /** Runs one pass now (or joins the one running); rejects if any prune failed, after trying all. */
  runOnce(): Promise<HousekeepingReport>
  /** Stops the schedule and waits for a running pass to finish. */
  stop(): Promise<void>
}

/**
 * Runs every prune on a schedule. A failed pass is logged as a warning and tried again at the next
 * interval: housekeeping never takes the process down. Logs at info only when it deleted something.
 */
export function startHousekeeping(options: HousekeepingOptions): Housekeeping {
  const { db, logger, retention, embeddedLog } = options
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS
  const counters = options.metrics ? housekeepingCounters(options.metrics.registry) : undefined
  let running: Promise<HousekeepingReport> | undefined
  let timer: NodeJS.Timeout | undefined
  let stopped = false

  const pass = async (): Promise<HousekeepingReport> => {
    const startedAt = performance.now()
    const deleted = { log_messages: 0, inbox: 0, idempotency_keys: 0, consumer_retries: 0 }
    const failures: unknown[] = []
    // Each prune on its own: a failing table does not keep the others from shrinking.
    const attempt = async (table: keyof typeof deleted, prune: () => Promise<{ deleted: number }>) => {
      try {
        deleted[table] = (await prune()).deleted
        if (deleted[table] > 0) counters?.deleted.inc({ table }, deleted[table])
      } catch (error) {
        failures.push(error)
      }
    }
    if (embeddedLog) {
      await attempt('log_messages', async () =>
        (await tableExists(db, 'log_messages'))
          ? pruneEmbeddedLog(db, { maxAgeMs: retention.logMs, maxBytesPerPartition: retention.logBytes })
          : { deleted: 0 },
      )
    }
    await attempt('inbox', () => pruneInbox(db, retention.inboxMs))
    // A consumer's retries are kept as long as the inbox rows of what it handled.
    await attempt('consumer_retries', () => pruneConsumerRetries(db, retention.inboxMs))
    await attempt('idempotency_keys', () => pruneIdempotencyKeys(db, retention.idempotencyKeyMs))

    if (Object.values(deleted).some((count) => count > 0)) {
      logger.info(
        { deleted, durationMs: Math.round(performance.now() - startedAt) },
        'housekeeping: deleted rows past retention',
      )
    }
    if (failures.length > 0) {
      counters?.failures.inc()
      throw failures.length === 1
        ? failures[0]
        : new AggregateError(failures, `housekeeping: ${failures.length} prunes failed`)
    }
    return { deleted }
  }

  const runOnce = (): Promise<HousekeepingReport> => {
    running ??= pass().finally(() => {
      running = undefined
    })
    return running
  }

  const schedule = (delayMs: number) => {
    if (stopped) return
    timer = setTimeout(async () => {
      timer = undefined
      try {
        await runOnce()
      } catch (error) {
        logger.warn({ err: error }, 'housekeeping: pass failed; trying again at the next interval')
      }
      schedule(intervalMs * (1 - INTERVAL_JITTER + 2 * INTERVAL_JITTER * Math.random()))
    }, delayMs)
    // Housekeeping alone is no reason to keep a process alive.
    timer.unref()
  }
  schedule(Math.min(intervalMs, FIRST_PASS_DELAY_MS.min + FIRST_PASS_DELAY_MS.spread * Math.random()))

  return {
    runOnce,
    async stop() {
      stopped = true
      clearTimeout(timer)
      timer = undefined
      await running?.catch(() => {})
    },
  }
}

async function tableExists(db: SqlDatabase, table: string): Promise<boolean> {
  const { rows } = await db.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [table])
  return rows[0]?.exists === true
}

/**
 * Deletes rows whose `column` is older than `olderThanMs`, a batch per statement. Rows are picked
 * by `ctid`, so this works whatever the table's key (idempotency_keys is gaining a scope column),
 * and the age is checked again on delete in case a row changed in between.
 */
async function deleteInBatches(
  db: SqlDatabase,
  table: 'inbox' | 'idempotency_keys' | 'consumer_retries',
  column: 'handled_at' | 'created_at' | 'failed_at',
  olderThanMs: number,
): Promise<{ deleted: number }> {
  // The cut-off is fixed once per prune, on the database's clock that wrote the timestamps.
  const { rows } = await db.query<{ cutoff: string }>(
    `SELECT (now() - $1::double precision * interval '1 millisecond')::text AS cutoff`,
    [olderThanMs],
  )
  const cutoff = rows[0]?.cutoff
  if (cutoff === undefined) return { deleted: 0 }
  let deleted = 0
  for (;;) {
    const result = await db.query(
      `DELETE FROM ${table} WHERE ${column} < $1::timestamptz
          AND ctid = ANY (ARRAY (SELECT ctid FROM ${table} WHERE ${column} < $1::timestamptz LIMIT $2))`,
      [cutoff, DELETE_BATCH],
    )
    deleted += result.rowCount
    if (result.rowCount < DELETE_BATCH) return { deleted }
  }
}

function housekeepingCounters(registry: Registry) {
  // Reused when a second housekeeper shares the registry (prom-client refuses a name twice).
  const counter = (name: string, help: string, labelNames: string[]) =>
    (registry.getSingleMetric(name) as Counter<string> | undefined) ??
    new Counter({ name, help, labelNames, registers: [registry] })
  return {
    deleted: counter('orderflow_retention_deleted_rows_total', 'Rows deleted by retention, by table', ['table']),
    failures: counter('orderflow_housekeeping_failures_total', 'Housekeeping passes in which a prune failed', []),
  }
}
