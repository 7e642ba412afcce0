import { toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'

/**
 * Durable timers: "deliver this payload to me at that time", surviving restarts. Used for the
 * Create-Order saga's step timeouts and the delivery service's due deliveries.
 *
 * A timer is a row in `scheduled_timers` (platform migration 003), written with `scheduleTimer` in
 * the transaction that decided it, so a timer exists exactly when the decision does. A poller per
 * kind claims due rows with `FOR UPDATE SKIP LOCKED` (several processes share the work, none fires
 * a row another holds) and a lease, calls `fire`, and deletes the row. A process that dies while
 * firing leaves the row to be claimed again once the lease is over, so `fire` must be idempotent
 * (the saga ignores a stale timeout; delivering twice emits nothing).
 *
 * The poller sleeps until the nearest due time it knows of, or `pollIntervalMs` at most (timers
 * written by other processes); `wake(dueAt)` after a commit rearms it early for a nearer one, so a
 * short timer fires on time without a fast poll.
 */

export interface TimerRow<Payload> {
  id: string
  kind: string
  dueAt: string
  payload: Payload
  attempts: number
}

/** Writes (or moves) the timer `id`; call in the transaction that decided it. */
export async function scheduleTimer(
  tx: SqlExecutor,
  timer: { id: string; kind: string; dueAt: string; payload: unknown },
): Promise<void> {
  await tx.query(
    `INSERT INTO scheduled_timers (id, kind, due_at, payload) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at, payload = EXCLUDED.payload,
       claimed_until = NULL, attempts = 0, last_error = NULL`,
    [timer.id, timer.kind, timer.dueAt, JSON.stringify(timer.payload)],
  )
}

/** Removes the timer `id` (it is no longer wanted); a timer being fired right now still fires. */
export async function cancelTimer(tx: SqlExecutor, id: string): Promise<void> {
  await tx.query('DELETE FROM scheduled_timers WHERE id = $1', [id])
}

export interface TimerPollerOptions<Payload> {
  db: SqlDatabase
  kind: string
  logger: Logger
  /** Carries out a due timer; a throw leaves it to be fired again after a backoff. */
  fire(timer: TimerRow<Payload>): Promise<void>
  clock?: () => Date
  pollIntervalMs?: number
  /** Timers claimed per query. */
  batchSize?: number
  /** How long a claim lasts before another poller may take the timer. */
  leaseMs?: number
  /** Fired side by side (each is its own transaction). */
  concurrency?: number
}

export interface TimerPoller {
  /** A timer due at `dueAt` was committed in this process: fire it on time. */
  wake(dueAt?: string): void
  stop(): Promise<void>
}

const MAX_BACKOFF_MS = 60_000

export function startTimerPoller<Payload>(options: TimerPollerOptions<Payload>): TimerPoller {
  const { db, kind, logger } = options
  const clock = options.clock ?? (() => new Date())
  const pollIntervalMs = options.pollIntervalMs ?? 1_000
  const batchSize = options.batchSize ?? 100
  const leaseMs = options.leaseMs ?? 30_000
  const concurrency = Math.max(1, options.concurrency ?? 8)

  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let nextAt = Number.POSITIVE_INFINITY
  let running: Promise<void> | undefined
  let again = false

  const arm = (at: number) => {
    if (stopped) return
    const now = clock().getTime()
    const target = Math.min(at, now + pollIntervalMs)
    if (timer && target >= nextAt) return
    if (timer) clearTimeout(timer)
    nextAt = target
    timer = setTimeout(
      () => {
        timer = undefined
        nextAt = Number.POSITIVE_INFINITY
        tick()
      },
      Math.max(0, target - now),
    )
  }

  const claim = async (): Promise<TimerRow<Payload>[]> => {
    const now = clock()
    const { rows } = await db.query<{
      id: string
      kind: string
      due_at: Date | string
      payload: Payload
      attempts: number
    }>(
      `UPDATE scheduled_timers SET claimed_until = $3, attempts = attempts + 1
        WHERE id IN (
          SELECT id FROM scheduled_timers
           WHERE kind = $1 AND due_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2)
           ORDER BY due_at LIMIT $4
           FOR UPDATE SKIP LOCKED)
        RETURNING id, kind, due_at, payload, attempts`,
      [kind, now.toISOString(), new Date(now.getTime() + leaseMs).toISOString(), batchSize],
    )
    return rows.map((r) => ({
      id: r.id,
      kind: r.kind,
      dueAt: new Date(r.due_at).toISOString(),
      payload: r.payload,
      attempts: r.attempts,
    }))
  }

  const fireOne = async (row: TimerRow<Payload>) => {
    try {
      await options.fire(row)
      // Only the claim just fired goes: a timer moved meanwhile (rescheduled) has a new due time.
      await db.query('DELETE FROM scheduled_timers WHERE id = $1 AND due_at = $2 AND claimed_until IS NOT NULL', [
        row.id,
        row.dueAt,
      ])
    } catch (thrown) {
      const error = toError(thrown)
      const backoff = Math.min(MAX_BACKOFF_MS, 100 * 2 ** Math.min(row.attempts, 10))
      logger.warn({ err: error, timerId: row.id, kind, attempts: row.attempts }, `timer ${row.id} failed; retrying`)
      await db
        .query(
          `UPDATE scheduled_timers SET claimed_until = NULL, last_error = $2, due_at = greatest(due_at, $3)
            WHERE id = $1 AND due_at = $4`,
          [row.id, error.message, new Date(clock().getTime() + backoff).toISOString(), row.dueAt],
        )
        .catch((e) => logger.error({ err: e, timerId: row.id }, 'could not release a failed timer'))
    }
  }

  const nextDue = async (): Promise<number> => {
    const { rows } = await db.query<{ due_at: Date | string | null }>(
      'SELECT min(due_at) AS due_at FROM scheduled_timers WHERE kind = $1 AND claimed_until IS NULL',
      [kind],
    )
    const due = rows[0]?.due_at
    return due ? new Date(due).getTime() : Number.POSITIVE_INFINITY
  }

  const pass = async () => {
    for (;;) {
      const due = await claim()
      if (due.length === 0) break
      for (let i = 0; i < due.length; i += concurrency) {
        await Promise.all(due.slice(i, i + concurrency).map(fireOne))
      }
      if (stopped || due.length < batchSize) break
    }
  }

  const tick = () => {
    if (stopped) return
    if (running) {
      again = true
      return
    }
    running = (async () => {
      let wakeAt = clock().getTime() + pollIntervalMs
      try {
        do {
          again = false
          await pass()
        } while (again && !stopped)
        wakeAt = await nextDue()
      } catch (error) {
        logger.warn({ err: error, kind }, 'timer poll failed')
      } finally {
        running = undefined
        arm(wakeAt)
      }
    })()
  }

  tick()
  return {
    wake(dueAt) {
      if (stopped) return
      if (dueAt === undefined) return tick()
      const at = Date.parse(dueAt)
      if (at <= clock().getTime()) tick()
      else arm(at)
    },
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      await running
    },
  }
}
