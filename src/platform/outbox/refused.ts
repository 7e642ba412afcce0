import type { Registry } from 'prom-client'
import { AppError, ErrorCodes } from '../errors.ts'
import type { SqlExecutor } from '../sql/port.ts'
import { tableGauge } from '../table-metrics.ts'
import { LEASE_FENCE } from './relay-lease.ts'

/**
 * Outbox rows the broker refused for good (transport/refusal.ts: too large for the topic, an
 * invalid record, a topic this principal may not write), and what an operator does about them.
 *
 * Retried forever, such a row would hold back every row behind it in the relay's batches: every
 * order would stop. The relay sets it aside instead (`markRefused`: `refused_at`, and the Kafka
 * error id as `refused_reason`) and holds back only the later rows of its topic and key, which
 * would otherwise overtake it; every other key keeps flowing. It stays so until an operator
 * retries it (`retryRefused`, after raising the topic's max.message.bytes, granting the ACL, …)
 * or discards it (`discardRefused`: it is never published, and the rows of its key follow).
 */

/** Refused rows not yet resolved: they hold the later rows of their topic and key back. */
export const REFUSED = 'refused_at IS NOT NULL AND published_at IS NULL'

/**
 * The rows the relay publishes, as a condition on `outbox`: not published, not refused, and not
 * held behind a refused row of their topic and key. The partial index `outbox_refused` (migration
 * 011) is empty while nothing is refused, so the check costs nothing then. For whatever measures
 * how far the relay is behind (a row waiting for an operator is not the relay's delay).
 */
export const PUBLISHABLE = `outbox.published_at IS NULL AND outbox.refused_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM outbox AS refused
                   WHERE refused.refused_at IS NOT NULL AND refused.published_at IS NULL
                     AND refused.topic = outbox.topic AND refused.message_key = outbox.message_key
                     AND refused.id < outbox.id)`

// Fenced as markPublished is (relay-lease.ts): a relay that lost the row's shard since it selected
// the row cannot set it aside; its new holder tries it again.
const MARK_REFUSED = `
WITH ${LEASE_FENCE}
UPDATE outbox SET refused_at = now(), refused_reason = $6, last_error = $7, publish_attempts = publish_attempts + 1
  FROM fence
 WHERE outbox.id = $1::bigint AND fence.id = outbox_shard(outbox.message_key, $5::int)
   AND outbox.published_at IS NULL
RETURNING outbox.id::text AS id`

/** Sets row `id` aside as refused, fenced by its shard's holder and epoch; false when the fence refused. */
export async function markRefused(
  db: SqlExecutor,
  options: {
    id: string
    holder: string
    shards: number
    fence: { shard: number; epoch: string }[]
    /** The Kafka error id (`MESSAGE_TOO_LARGE`). */
    reason: string
    error: string
  },
): Promise<boolean> {
  const { rowCount } = await db.query(MARK_REFUSED, [
    options.id,
    options.holder,
    options.fence.map((s) => s.shard),
    options.fence.map((s) => s.epoch),
    options.shards,
    options.reason,
    options.error,
  ])
  return rowCount > 0
}

export interface RefusedRow {
  id: string
  topic: string
  key: string
  /** The Kafka error id the broker refused it with (`MESSAGE_TOO_LARGE`). */
  reason: string
  refusedAt: string
  createdAt: string
  attempts: number
  lastError: string | null
  /** The size of its value, to compare with the topic's max.message.bytes. */
  valueBytes: number
  /** Rows of its topic and key that wait behind it. */
  heldBehind: number
}

/** Which refused rows an operator means: those of a topic, those the broker refused with a reason. */
export interface RefusedSelection {
  /** As the outbox names it: without the deployment's KAFKA_TOPIC_PREFIX (transport/namespaced.ts). */
  topic?: string
  /** The Kafka error id (`TOPIC_AUTHORIZATION_FAILED`). */
  reason?: string
}

/** `REFUSED`, narrowed to a `RefusedSelection` given as parameters `$<first>` (topic) and `$<first + 1>` (reason). */
const selected = (first: number) =>
  `${REFUSED} AND ($${first}::text IS NULL OR topic = $${first})
   AND ($${first + 1}::text IS NULL OR refused_reason = $${first + 1})`

/** The refused rows not yet retried or discarded, oldest first, with how many rows each holds back. */
export async function listRefused(
  db: SqlExecutor,
  options: RefusedSelection & { limit?: number } = {},
): Promise<RefusedRow[]> {
  const { rows } = await db.query<{
    id: string
    topic: string
    message_key: string
    refused_reason: string | null
    refused_at: Date | string
    created_at: Date | string
    publish_attempts: number
    last_error: string | null
    value_bytes: number
    held_behind: number
  }>(
    `SELECT r.id::text, r.topic, r.message_key, r.refused_reason, r.refused_at, r.created_at, r.publish_attempts,
            r.last_error, octet_length(r.value)::int AS value_bytes,
            (SELECT count(*) FROM outbox AS h
              WHERE h.published_at IS NULL AND h.topic = r.topic AND h.message_key = r.message_key
                AND h.id > r.id)::int AS held_behind
       FROM outbox AS r
      WHERE ${selected(2)}
      ORDER BY r.id LIMIT $1`,
    [options.limit ?? 100, options.topic ?? null, options.reason ?? null],
  )
  return rows.map((r) => ({
    id: r.id,
    topic: r.topic,
    key: r.message_key,
    reason: r.refused_reason ?? '',
    refusedAt: iso(r.refused_at),
    createdAt: iso(r.created_at),
    attempts: r.publish_attempts,
    lastError: r.last_error,
    valueBytes: r.value_bytes,
    heldBehind: r.held_behind,
  }))
}

/**
 * The ids of every refused row of a selection, oldest first: for `retryRefused` and
 * `discardRefused`, in batches, when an operator resolves a whole topic at once. Ids only, so
 * that a topic with many refused rows costs no more than their ids (`listRefused` counts the rows
 * behind each).
 */
export async function refusedIds(db: SqlExecutor, selection: RefusedSelection): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id::text AS id FROM outbox WHERE ${selected(1)} ORDER BY id`,
    [selection.topic ?? null, selection.reason ?? null],
  )
  return rows.map((r) => r.id)
}

/**
 * Puts refused rows back in the relay's way: it publishes each at its next pass (within its poll
 * interval), and the rows of its key that waited behind it follow in order. For after the cause
 * was fixed (the topic's max.message.bytes raised, the ACL granted); a row refused again is set
 * aside again. Resolves with the ids it retried: ids that are not refused rows are left alone.
 */
export async function retryRefused(db: SqlExecutor, ids: readonly string[]): Promise<string[]> {
  checkIds(ids)
  const { rows } = await db.query<{ id: string }>(
    `UPDATE outbox SET refused_at = NULL, refused_reason = NULL
      WHERE id = ANY($1::bigint[]) AND ${REFUSED}
     RETURNING id::text AS id`,
    [ids],
  )
  return sortIds(rows.map((r) => r.id))
}

/**
 * Gives refused rows up: they are never published, and the rows of their key that waited behind
 * them go out next. The row stays (until the published rows' retention prunes it) with who
 * discarded it and why. Resolves with the ids it discarded: ids that are not refused rows are
 * left alone.
 */
export async function discardRefused(
  db: SqlExecutor,
  ids: readonly string[],
  reason: string,
  by = 'unknown',
): Promise<string[]> {
  checkIds(ids)
  if (reason.trim() === '') {
    throw new AppError(ErrorCodes.VALIDATION_FAILED, 'a discard needs a reason: it is kept on the row', {
      fields: [{ field: 'reason', message: 'must not be empty' }],
    })
  }
  // published_at too: see migration 011 for why a discarded row counts as done.
  const { rows } = await db.query<{ id: string }>(
    `UPDATE outbox SET published_at = now(), discarded_at = now(), discarded_by = $3, discarded_reason = $2
      WHERE id = ANY($1::bigint[]) AND ${REFUSED}
     RETURNING id::text AS id`,
    [ids, reason.trim(), by],
  )
  return sortIds(rows.map((r) => r.id))
}

/**
 * `orderflow_outbox_refused`, read from the database at each scrape: the refused rows that wait for
 * an operator, by topic and reason. Every process of a database reports the same figures (use
 * `max`), and a topic shows no series once nothing of it is refused.
 */
export function registerOutboxRefusedGauge(registry: Registry, db: SqlExecutor): void {
  tableGauge(registry, db, {
    name: 'orderflow_outbox_refused',
    help: 'Outbox rows the broker refused for good (too large, invalid, not authorized), waiting for an operator to retry or discard them; later rows of their key wait behind them. By topic and reason (all processes: read from the database)',
    labelNames: ['topic', 'reason'],
    sql: `SELECT topic, refused_reason AS reason, count(*)::float8 AS value
            FROM outbox WHERE ${REFUSED} GROUP BY topic, refused_reason`,
  })
}

function checkIds(ids: readonly string[]): void {
  const wrong = ids.filter((id) => !/^\d{1,19}$/.test(id))
  if (wrong.length > 0) {
    throw new AppError(ErrorCodes.VALIDATION_FAILED, `not outbox row ids: ${wrong.join(', ')}`, {
      fields: wrong.map((id) => ({ field: 'ids', message: `'${id}' is not a row id (digits)` })),
    })
  }
}

const iso = (value: Date | string) => new Date(value).toISOString()

const sortIds = (ids: string[]) =>
  ids
    .map(BigInt)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map(String)
