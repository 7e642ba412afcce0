import { toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'

/**
 * Durable timers: "deliver this payload to me after that delay", surviving restarts. Used for the
 * Create-Order saga's step timeouts and the delivery service's due deliveries.
 *
 * A timer is a row in `scheduled_timers` (platform migrations 003 and 004), written with
 * `scheduleTimer` in the transaction that decided it, so a timer exists exactly when the decision
 * does. A poller per kind claims due rows with `FOR UPDATE SKIP LOCKED` (several processes share
 * the work, none fires a row another holds) and a lease, calls `fire` (or `fireBatch` for all the
 * timers one query claimed), and deletes the row. A
 * process that dies while firing leaves the row to be claimed again once the lease is over, so
 * `fire` must be idempotent (the saga ignores a stale timeout; delivering twice emits nothing).
 *
 * Every deadline is the database's time: the caller gives a delay, `due_at = now() + delay` is
 * computed in SQL, and "is it due", the claim's lease and "how long until the next one" are
 * compared with `now()` in SQL too, as the outbox relay's lease is. The app's clock is never read,
 * so stepping it back or forward (NTP, a VM resumed, an operator) neither delays nor hastens a
 * timer. The poller's local sleep is a relative `setTimeout`, which follows the monotonic clock.
 * On the embedded default (PGlite) the database runs in the process and its now() is the host's
 * clock: there the app's injected clock still moves nothing, but a step of the host's clock moves
 * the database's with it, as it would for a PostgreSQL on the same host.
 *
 * A timer may start its clock when a command leaves instead of when it is decided
 * (`startsWhenPublished`: the outbox row of the decision's last command). It is written unarmed
 * (`due_at` NULL), and a poller arms it once that row is published, with
 * `due_at = published_at + delay`; `published_at` is the database's time the relay marked it. A
 * saga step's timeout thus does not run while its command waits in the outbox (relay behind, broker
 * unreachable): the broker being away is an outage, not the step's failure. A command that never
 * leaves keeps its timer unarmed for good, which is right, since the relay retries it forever.
 * (A published row pruned before its timer was armed, after a day of pollers down, arms at now().)
 *
 * Why the poller arms rather than the relay: the deadline is the same (the relay's own timestamp,
 * read back), the outbox stays a generic publisher that knows nothing of timers, and the poller
 * looks at unarmed timers only while there are some. What it costs is latency: an armed timer is
 * first seen at the poller's next pass (`pollIntervalMs` at most), which matters only for delays
 * shorter than the poll interval.
 *
 * The poller sleeps until the nearest due time it knows of (asked of the database as a delay), or
 * `pollIntervalMs` at most (timers written by other processes, timers armed on publish);
 * `wake(inMs)` after a commit rearms it early for a nearer one, so a short timer fires on time
 * without a fast poll.
 */

export interface TimerRow<Payload> {
  id: string
  kind: string
  /** The database's due time (milliseconds). */
  dueAt: string
  payload: Payload
  attempts: number
}

export interface TimerToSchedule {
  id: string
  kind: string
  /** After how long, measured by the database from the commit (or from the publish, below). */
  delayMs: number
  payload: unknown
  /** An outbox row id written in the same transaction: the clock starts once it is published. */
  startsWhenPublished?: string | undefined
}

// Whole milliseconds: due_at is read back into JavaScript and used to recognise the claim it came
// from (a timer moved meanwhile has a new due time), so it must survive the round trip exactly.
const dueIn = (delay: string) => `date_trunc('milliseconds', now() + ${delay} * interval '1 millisecond')`

/** Writes (or moves) the timer `id`; call in the transaction that decided it. */
export async function scheduleTimer(tx: SqlExecutor, timer: TimerToSchedule): Promise<void> {
  if (!(timer.delayMs >= 0) || !Number.isFinite(timer.delayMs)) {
    throw new RangeError(`a timer's delay must be a finite number of milliseconds ≥ 0 (got ${timer.delayMs})`)
  }
  await tx.query(
    `INSERT INTO scheduled_timers (id, kind, due_at, delay_ms, starts_after_outbox_id, payload)
     VALUES ($1, $2, CASE WHEN $4::bigint IS NULL THEN ${dueIn('$3::bigint')} END, $3::bigint, $4::bigint, $5)
     ${TIMER_MOVED}`,
    [timer.id, timer.kind, Math.round(timer.delayMs), timer.startsWhenPublished ?? null, JSON.stringify(timer.payload)],
  )
}

/** Removes the timer `id` (it is no longer wanted); a timer being fired right now still fires. */
export async function cancelTimer(tx: SqlExecutor, id: string): Promise<void> {
  await tx.query('DELETE FROM scheduled_timers WHERE id = $1', [id])
}

/** A timer a command sets or removes, written in the command's transaction (`writeTimerChanges`). */
export type TimerChange = { schedule: TimerToSchedule } | { cancel: string }

/**
 * The changes that hold, one per timer: for a timer changed more than once, the last one, as if
 * written in order (a statement may not touch one row twice). Every delay is checked.
 */
export function lastTimerChanges<Schedule extends { id: string; delayMs: number }>(
  changes: readonly ({ schedule: Schedule } | { cancel: string })[],
): { cancelled: string[]; scheduled: Schedule[] } {
  const last = new Map<string, { schedule: Schedule } | { cancel: string }>()
  for (const change of changes) {
    const id = 'cancel' in change ? change.cancel : change.schedule.id
    last.delete(id)
    last.set(id, change)
  }
  const cancelled: string[] = []
  const scheduled: Schedule[] = []
  for (const change of last.values()) {
    if ('cancel' in change) {
      cancelled.push(change.cancel)
      continue
    }
    const { delayMs } = change.schedule
    if (!(delayMs >= 0) || !Number.isFinite(delayMs)) {
      throw new RangeError(`a timer's delay must be a finite number of milliseconds ≥ 0 (got ${delayMs})`)
    }
    scheduled.push(change.schedule)
  }
  return { cancelled, scheduled }
}

/** A timer as a row of a `jsonb_to_recordset` array, with what starts its clock. */
export const timerRecord = (
  timer: { id: string; kind: string; delayMs: number; payload: unknown },
  start: Record<string, unknown>,
) => ({ id: timer.id, kind: timer.kind, delay_ms: Math.round(timer.delayMs), ...start, payload: timer.payload })

/** How a timer set again is written over the row it had: unclaimed, its failures forgotten. */
export const TIMER_MOVED = `ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at,
       delay_ms = EXCLUDED.delay_ms, starts_after_outbox_id = EXCLUDED.starts_after_outbox_id,
       payload = EXCLUDED.payload, claimed_until = NULL, attempts = 0, last_error = NULL`

/**
 * Writes timer changes, of one command or of a whole consumer batch, in at most two statements
 * (one delete of every timer removed, one upsert of every timer set), whatever their number; the
 * last change of a timer holds (`lastTimerChanges`). The workflow processor folds the same writes
 * into its own statement instead (`scheduler-batch.ts`).
 */
export async function writeTimerChanges(tx: SqlExecutor, changes: readonly TimerChange[]): Promise<void> {
  const { cancelled, scheduled } = lastTimerChanges(changes)
  if (cancelled.length > 0) await tx.query('DELETE FROM scheduled_timers WHERE id = ANY($1::text[])', [cancelled])
  if (scheduled.length === 1) return scheduleTimer(tx, scheduled[0] as TimerToSchedule)
  if (scheduled.length === 0) return
  await tx.query(
    `INSERT INTO scheduled_timers (id, kind, due_at, delay_ms, starts_after_outbox_id, payload)
     SELECT r.id, r.kind, CASE WHEN r.after_outbox_id IS NULL THEN ${dueIn('r.delay_ms')} END, r.delay_ms,
            r.after_outbox_id, coalesce(r.payload, 'null'::jsonb)
       FROM jsonb_to_recordset($1::jsonb) AS r(id text, kind text, delay_ms bigint, after_outbox_id bigint, payload jsonb)
     ${TIMER_MOVED}`,
    [
      JSON.stringify(
        scheduled.map((timer) => timerRecord(timer, { after_outbox_id: timer.startsWhenPublished ?? null })),
      ),
    ],
  )
}

export interface TimerPollerOptions<Payload> {
  db: SqlDatabase
  kind: string
  logger: Logger
  /**
   * Carries out a due timer; a throw leaves it to be fired again after a backoff. Answering
   * `{ postponeMs }` puts it off (due again that long from now, by the database's clock) without
   * counting as a failure: the saga's step timeouts do so while the broker is in trouble.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a fire that returns nothing carried the timer out
  fire(timer: TimerRow<Payload>): Promise<void | { postponeMs: number }>
  /**
   * Carries out several due timers at once (one transaction for all of them, say), when a pass
   * claims more than one: the fired timers are then removed in one statement. A throw hands them
   * to `fire`, one at a time, each with its own retries and backoff.
   */
  fireBatch?(timers: readonly TimerRow<Payload>[]): Promise<void>
  pollIntervalMs?: number
  /** Timers claimed per query. */
  batchSize?: number
  /** How long a claim lasts before another poller may take the timer. */
  leaseMs?: number
  /** Fired side by side (each is its own transaction). */
  concurrency?: number
}

export interface TimerPoller {
  /** A timer due in `inMs` (or now) was committed in this process: fire it on time. */
  wake(inMs?: number): void
  stop(): Promise<void>
}

const MAX_BACKOFF_MS = 60_000

// Timers whose outbox row is published (or gone: pruned long after it was published) start their
// clock at the publish. The timers to arm are locked in id order, skipping those another
// transaction holds (a service's batch writing its timers, another poller arming them): those are
// armed by a later pass. Waiting for them instead deadlocked with a saga's batch in another process
// (40P01, seen by the scale-out test). A concurrent second poller re-checks `due_at IS NULL`.
// Whether a timer's row was published is asked of that row alone, by its primary key (none left:
// pruned after its publish). Asked as NOT EXISTS (no unpublished row of that id), on statistics
// that had not caught up with a busy outbox, the planner read every unpublished row once per
// unarmed timer: 2.9 s and two million buffers for one pass at a few hundred orders a second.
const ARM_PUBLISHED = `
UPDATE scheduled_timers AS t
   SET due_at = date_trunc('milliseconds',
         coalesce((SELECT o.published_at FROM outbox o WHERE o.id = t.starts_after_outbox_id), now())
         + t.delay_ms * interval '1 millisecond')
 WHERE t.id IN (
         SELECT s.id FROM scheduled_timers s
          WHERE s.kind = $1 AND s.due_at IS NULL
            AND coalesce((SELECT o.published_at IS NOT NULL FROM outbox o WHERE o.id = s.starts_after_outbox_id), true)
          ORDER BY s.id
          FOR UPDATE SKIP LOCKED)
   AND t.due_at IS NULL`

const CLAIM_DUE = `
UPDATE scheduled_timers SET claimed_until = now() + $2::float8 * interval '1 millisecond', attempts = attempts + 1
 WHERE id IN (
   SELECT id FROM scheduled_timers
    WHERE kind = $1 AND due_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY due_at LIMIT $3
    FOR UPDATE SKIP LOCKED)
RETURNING id, kind, due_at, payload, attempts`

export function startTimerPoller<Payload>(options: TimerPollerOptions<Payload>): TimerPoller {
  const { db, kind, logger } = options
  const pollIntervalMs = options.pollIntervalMs ?? 1_000
  const batchSize = options.batchSize ?? 100
  const leaseMs = options.leaseMs ?? 30_000
  const concurrency = Math.max(1, options.concurrency ?? 8)

  let stopped = false
  let timer: NodeJS.Timeout | undefined
  /** When the armed setTimeout fires, in `performance.now()` time. */
  let nextAt = Number.POSITIVE_INFINITY
  let running: Promise<void> | undefined
  let again = false

  const arm = (inMs: number) => {
    if (stopped) return
    const now = performance.now()
    const target = now + Math.max(0, Math.min(inMs, pollIntervalMs))
    if (timer && target >= nextAt) return
    if (timer) clearTimeout(timer)
    nextAt = target
    timer = setTimeout(() => {
      timer = undefined
      nextAt = Number.POSITIVE_INFINITY
      tick()
    }, target - now)
  }

  const claim = async (): Promise<TimerRow<Payload>[]> => {
    const { rows } = await db.query<{
      id: string
      kind: string
      due_at: Date | string
      payload: Payload
      attempts: number
    }>(CLAIM_DUE, [kind, leaseMs, batchSize])
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
      const outcome = await options.fire(row)
      if (outcome && outcome.postponeMs > 0) {
        await db.query(
          `UPDATE scheduled_timers SET claimed_until = NULL, attempts = greatest(attempts - 1, 0), due_at = ${dueIn('$2::float8')}
            WHERE id = $1 AND due_at = $3`,
          [row.id, outcome.postponeMs, row.dueAt],
        )
        return
      }
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
          `UPDATE scheduled_timers SET claimed_until = NULL, last_error = $2, due_at = greatest(due_at, ${dueIn('$3::float8')})
            WHERE id = $1 AND due_at = $4`,
          [row.id, error.message, backoff, row.dueAt],
        )
        .catch((e) => logger.error({ err: e, timerId: row.id }, 'could not release a failed timer'))
    }
  }

  /** How long until the nearest armed, unclaimed timer is due, by the database's clock. */
  const nextDueInMs = async (): Promise<number> => {
    const { rows } = await db.query<{ in_ms: number | string | null }>(
      `SELECT (extract(epoch FROM min(due_at) - now()) * 1000)::float8 AS in_ms
         FROM scheduled_timers WHERE kind = $1 AND due_at IS NOT NULL AND claimed_until IS NULL`,
      [kind],
    )
    const inMs = rows[0]?.in_ms
    return inMs === null || inMs === undefined ? Number.POSITIVE_INFINITY : Number(inMs)
  }

  /** The claimed timers carried out together (`fireBatch`) and removed in one statement; false if that failed. */
  const fireTogether = async (due: readonly TimerRow<Payload>[]): Promise<boolean> => {
    if (!options.fireBatch || due.length < 2) return false
    try {
      await options.fireBatch(due)
    } catch (error) {
      logger.debug({ err: error, kind, timers: due.length }, 'timers fired together failed; firing them one at a time')
      return false
    }
    // As for one: only the claims just fired go (a timer moved meanwhile has a new due time). If this
    // fails, the claims run out and the timers fire again, which `fire` must allow anyway.
    await db.query(
      `DELETE FROM scheduled_timers AS t
        USING unnest($1::text[], $2::timestamptz[]) AS fired(id, due_at)
        WHERE t.id = fired.id AND t.due_at = fired.due_at AND t.claimed_until IS NOT NULL`,
      [due.map((row) => row.id), due.map((row) => row.dueAt)],
    )
    return true
  }

  const pass = async () => {
    await db.query(ARM_PUBLISHED, [kind])
    for (;;) {
      const due = await claim()
      if (due.length === 0) break
      if (!(await fireTogether(due))) {
        for (let i = 0; i < due.length; i += concurrency) {
          await Promise.all(due.slice(i, i + concurrency).map(fireOne))
        }
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
      let wakeInMs = pollIntervalMs
      try {
        do {
          again = false
          await pass()
        } while (again && !stopped)
        wakeInMs = await nextDueInMs()
      } catch (error) {
        logger.warn({ err: error, kind }, 'timer poll failed')
      } finally {
        running = undefined
        arm(wakeInMs)
      }
    })()
  }

  tick()
  return {
    wake(inMs) {
      if (stopped) return
      if (inMs === undefined || inMs <= 0) tick()
      else arm(inMs)
    },
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      await running
    },
  }
}
