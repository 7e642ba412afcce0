import { countAfter, readAll, START_POSITION, type StoredEvent, type StorePosition } from '../eventstore/event-store.ts'
import type { Logger } from '../logger.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'

/**
 * Projections as definitions (emmett's `projections/index.ts`): a service says which events a
 * projection reads and how it applies them; one runner per process owns the checkpoints, the
 * batching, the wake-ups and the rebuilds.
 *
 * A batch of events and the checkpoint after it are written in one transaction, so a projection sees
 * every event exactly once in effect. Events are read in commit-safe order (see `readAll`), so a late
 * commit with a smaller position is never skipped.
 */
export interface ProjectionDefinition {
  /** Unique in the database; names the checkpoint. */
  name: string
  /** Stream types whose events the projection reads. */
  streamTypes: readonly string[]
  /** Event types it handles; others advance the checkpoint without a call. All when omitted. */
  eventTypes?: readonly string[]
  /** Applies events in store order, inside the checkpoint's transaction. Must be idempotent. */
  handle(tx: SqlExecutor, events: StoredEvent[]): Promise<void>
  /** Deletes everything the projection wrote (before a rebuild). */
  truncate(tx: SqlExecutor): Promise<void>
}

export interface Progress {
  done: number
  total: number
}

export interface ProjectionRunner {
  /** Resolves once every event committed before the call is applied by every projection (or `name`). */
  catchUp(name?: string): Promise<void>
  /**
   * Wakes the runner (a command committed events): with `streamTypes`, only when a projection reads
   * one of them.
   */
  notify(streamTypes?: readonly string[]): void
  stop(): Promise<void>
}

const DEFAULT_BATCH = 500

async function checkpoint(tx: SqlExecutor, name: string): Promise<StorePosition> {
  const select = () =>
    tx.query<{ transaction_id: string; global_position: string }>(
      'SELECT transaction_id::text, global_position::text FROM projection_checkpoints WHERE name = $1 FOR UPDATE',
      [name],
    )
  let { rows } = await select()
  if (rows.length === 0) {
    await tx.query(
      `INSERT INTO projection_checkpoints (name, transaction_id, global_position) VALUES ($1, '0', 0)
       ON CONFLICT (name) DO NOTHING`,
      [name],
    )
    ;({ rows } = await select())
  }
  const row = rows[0]
  return row ? { transactionId: row.transaction_id, globalPosition: row.global_position } : START_POSITION
}

/** Applies up to `limit` events after the projection's checkpoint, in one transaction; returns how many. */
export async function projectBatch(db: SqlDatabase, projection: ProjectionDefinition, limit = DEFAULT_BATCH) {
  const handles = projection.eventTypes ? new Set(projection.eventTypes) : undefined
  return db.transaction(async (tx) => {
    const after = await checkpoint(tx, projection.name)
    const events = await readAll(tx, { after, limit, streamType: projection.streamTypes })
    const relevant = handles ? events.filter((e) => handles.has(e.eventType)) : events
    if (relevant.length > 0) await projection.handle(tx, relevant)
    const last = events.at(-1)
    if (last) {
      await tx.query(
        `UPDATE projection_checkpoints SET transaction_id = $2::text::xid8, global_position = $3, updated_at = now()
          WHERE name = $1`,
        [projection.name, last.transactionId, last.globalPosition],
      )
    }
    return events.length
  })
}

/** Events up to global position `head` that the projection has not applied yet. */
async function behindCheckpoint(db: SqlDatabase, projection: ProjectionDefinition, head: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM es_events e
      LEFT JOIN projection_checkpoints c ON c.name = $1
      WHERE e.stream_type = ANY($2) AND e.global_position <= $3::bigint
        AND (c.name IS NULL OR (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position))`,
    [projection.name, [...projection.streamTypes], head],
  )
  return Number(rows[0]?.n ?? 0)
}

/**
 * Rebuilds a projection from the event store. With `resume`, continues an interrupted rebuild from
 * its checkpoint instead of starting over. Reports progress after every batch and stops after the
 * current batch when `signal` aborts.
 */
export async function rebuildProjection(
  db: SqlDatabase,
  projection: ProjectionDefinition,
  options: {
    resume?: boolean
    batchSize?: number
    onProgress?: (progress: Progress) => void
    signal?: AbortSignal
  } = {},
): Promise<Progress> {
  if (!options.resume) {
    await db.transaction(async (tx) => {
      await projection.truncate(tx)
      await tx.query('DELETE FROM projection_checkpoints WHERE name = $1', [projection.name])
    })
  }
  const start = await db.transaction((tx) => checkpoint(tx, projection.name))
  const total = await countAfter(db, start, { streamType: projection.streamTypes })
  let done = 0
  options.onProgress?.({ done, total })
  while (!options.signal?.aborted) {
    const n = await projectBatch(db, projection, options.batchSize ?? DEFAULT_BATCH)
    if (n === 0) break
    // PGlite answers through promises alone; without a macrotask turn a signal handler (Ctrl-C →
    // abort) would only run once the whole rebuild is over.
    await new Promise((resolve) => setImmediate(resolve))
    done += n
    options.onProgress?.({ done, total: Math.max(total, done) })
  }
  return { done, total: Math.max(total, done) }
}

/** Keeps every projection up to date: woken by commits, with a poll for other processes' writes. */
export function startProjections(deps: {
  db: SqlDatabase
  projections: readonly ProjectionDefinition[]
  logger: Logger
  pollIntervalMs?: number
  /** How long a wake-up waits to gather a burst of commits into one batch. */
  coalesceMs?: number
}): ProjectionRunner {
  const { db, projections } = deps
  let stopped = false
  let dirty = false
  let wake: (() => void) | undefined
  let failures = 0
  const run = async () => {
    while (!stopped && projections.length > 0) {
      if (deps.coalesceMs) await new Promise((resolve) => setTimeout(resolve, deps.coalesceMs))
      dirty = false
      try {
        for (const projection of projections) {
          // A short batch means the projection reached the end; no need to ask again.
          while ((await projectBatch(db, projection)) === DEFAULT_BATCH && !stopped) {}
        }
        failures = 0
      } catch (error) {
        failures++
        deps.logger.warn({ err: error, attempt: failures }, 'projection failed; retrying')
      }
      if (!dirty && !stopped) {
        const delay = failures > 0 ? Math.min(10_000, 250 * 2 ** failures) : (deps.pollIntervalMs ?? 1000)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    }
  }
  const running = run()
  // Every commit asks: the answer's set, once.
  const read = new Set(projections.flatMap((p) => p.streamTypes))
  return {
    notify(streamTypes) {
      if (streamTypes && !streamTypes.some((type) => read.has(type))) return
      dirty = true
      wake?.()
    },
    async catchUp(name) {
      // Events commit in one order and become readable in another (projections read below the
      // oldest running transaction), so "a batch came back empty" is not "caught up": wait until
      // nothing committed before this call is left behind the checkpoint.
      const { rows } = await db.query<{ head: string }>(
        'SELECT coalesce(max(global_position), 0)::text AS head FROM es_events',
      )
      const head = rows[0]?.head ?? '0'
      for (const projection of projections.filter((p) => name === undefined || p.name === name)) {
        for (;;) {
          await projectBatch(db, projection)
          if ((await behindCheckpoint(db, projection, head)) === 0) break
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      }
    },
    async stop() {
      stopped = true
      wake?.()
      await running
    },
  }
}
