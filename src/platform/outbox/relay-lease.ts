import { AppError, ErrorCodes } from '../errors.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'

/**
 * The outbox relay's lease, sharded by key: the statements behind `startOutboxRelay` (outbox.ts,
 * whose header says why the lease and its fencing exist). Lease row `id` (0 … N-1) covers the rows
 * whose `outbox_shard(message_key, N)` is `id`; each row has its own holder, epoch and expiry, so
 * each shard is claimed, renewed, fenced and taken over the way the single lease was.
 *
 * The shard count N is the number of lease rows, one value for the whole database. A relay joins
 * with its count (`joinShards`): equal, it registers; different, it reshards the table only when
 * no other relay is live, and otherwise refuses, naming OUTBOX_RELAY_SHARDS.
 */

/** The variable that sets the shard count, named by every refusal. */
export const SHARDS_VARIABLE = 'OUTBOX_RELAY_SHARDS'

export const MAX_SHARDS = 256

/** A shard as its holder knows it. */
export interface KnownShard {
  shard: number
  epoch: string
  /** Still waiting out the previous holder's last publish: handed over as expired, not released. */
  waiting: boolean
}

export interface ClaimedShard {
  shard: number
  epoch: string
  previousHolder: string
  how: 'renewed' | 'released' | 'expired' | 'shed'
  /** After a takeover of an expired shard: how long to wait before publishing its rows. */
  waitMs: number
}

export interface ShardLeaseOptions {
  holder: string
  shards: number
  leaseMs: number
}

// Locks every lease row in id order before deciding (`previous`): claims of several relays run
// one after the other instead of deadlocking on each other's rows, and each decides on the rows as
// they are, not as its snapshot saw them.
// A relay renews the shards it holds under the epochs it knows, up to its fair share (the shard
// count over the live relays, rounded up); it releases the rest, so a relay that just joined gets
// them; and it takes free shards (released or expired) up to its share, incrementing their epoch.
// A shard handed over while its wait is not over expires now instead of being released, so its
// next holder waits too. Nothing changes, and the relay does not register, when its shard count is
// not the table's; the one summary row says so.
const CLAIM_SHARDS = `
WITH previous AS (
  SELECT id, holder, epoch, expires_at FROM outbox_relay_lease ORDER BY id FOR UPDATE
), shard_count AS (
  SELECT count(*)::int AS n FROM previous
), member AS (
  INSERT INTO outbox_relay_member (holder, expires_at)
  SELECT $1::text, now() + make_interval(secs => $3::float8) FROM shard_count WHERE n = $2::int
  ON CONFLICT (holder) DO UPDATE SET expires_at = excluded.expires_at
), departed AS (
  DELETE FROM outbox_relay_member WHERE holder <> $1 AND expires_at < now()
), fair AS (
  SELECT ceil($2::int / (1.0 + count(*)))::int AS share
    FROM outbox_relay_member WHERE holder <> $1 AND expires_at > now()
), mine AS (
  SELECT previous.id, row_number() OVER (ORDER BY previous.id) AS rank
    FROM previous JOIN unnest($4::int[], $5::bigint[]) AS known(id, epoch)
      ON known.id = previous.id AND known.epoch = previous.epoch
   WHERE previous.holder = $1
), free AS (
  SELECT id, row_number() OVER (ORDER BY expires_at, id) AS rank
    FROM previous WHERE expires_at < now() AND id NOT IN (SELECT id FROM mine)
), plan AS (
  SELECT id, CASE WHEN rank <= share THEN 'renew' ELSE 'shed' END AS action FROM mine, fair
  UNION ALL
  SELECT id, 'take' FROM free, fair WHERE rank <= share - (SELECT count(*) FROM mine)
), claimed AS (
  UPDATE outbox_relay_lease AS lease
     SET holder = $1,
         epoch = CASE WHEN plan.action = 'take' THEN lease.epoch + 1 ELSE lease.epoch END,
         expires_at = CASE WHEN plan.action <> 'shed' THEN now() + make_interval(secs => $3::float8)
                           WHEN lease.id = ANY($6::int[]) THEN now()
                           ELSE '-infinity' END
    FROM plan, previous, shard_count
   WHERE plan.id = lease.id AND previous.id = lease.id AND shard_count.n = $2::int
     AND CASE WHEN plan.action = 'take' THEN lease.expires_at < now()
              ELSE lease.holder = $1 AND lease.epoch = previous.epoch END
  RETURNING lease.id AS shard, lease.epoch::text AS epoch, previous.holder AS previous_holder,
    CASE WHEN plan.action = 'renew' THEN 'renewed'
         WHEN plan.action = 'shed' THEN 'shed'
         WHEN previous.expires_at = '-infinity' THEN 'released'
         ELSE 'expired' END AS how,
    CASE WHEN plan.action <> 'take' OR previous.expires_at = '-infinity' THEN 0::float8
         ELSE GREATEST(0, extract(epoch FROM previous.expires_at - now()) * 1000 + $7::float8)::float8 END AS wait_ms
)
SELECT shard_count.n AS shard_count, claimed.* FROM shard_count LEFT JOIN claimed ON true ORDER BY claimed.shard`

interface ClaimRow {
  shard_count: number
  shard: number | null
  epoch: string
  previous_holder: string
  how: ClaimedShard['how']
  wait_ms: number
}

/**
 * One claim: renews what `known` holds, hands over what is beyond the fair share, takes free
 * shards up to it. `shardCount` is the table's: different from `options.shards`, nothing happened.
 */
export async function claimShards(
  db: SqlExecutor,
  options: ShardLeaseOptions & { known: KnownShard[]; publishTimeoutMs: number },
): Promise<{ shardCount: number; claimed: ClaimedShard[] }> {
  const { rows } = await db.query<ClaimRow>(CLAIM_SHARDS, [
    options.holder,
    options.shards,
    options.leaseMs / 1000,
    options.known.map((s) => s.shard),
    options.known.map((s) => s.epoch),
    options.known.filter((s) => s.waiting).map((s) => s.shard),
    options.publishTimeoutMs,
  ])
  return {
    shardCount: rows[0]?.shard_count ?? 0,
    claimed: rows.flatMap((row) =>
      row.shard === null
        ? []
        : [
            {
              shard: row.shard,
              epoch: row.epoch,
              previousHolder: row.previous_holder,
              how: row.how,
              waitMs: row.wait_ms,
            },
          ],
    ),
  }
}

/**
 * Joins the relays of the database with `options.shards` shards, and registers this relay. When
 * the table has another count and no other relay is live, it is resharded: keys then move between
 * shards, which keeps their order only because nobody publishes while it happens. The new lease
 * rows carry the latest expiry and a higher epoch than any old one, so the first takeover of each
 * waits out the last publish of a relay that died (or of a relay of the previous version), and
 * marks under an old epoch are refused. Refuses, naming the variable, while other relays are live.
 */
export async function joinShards(db: SqlDatabase, options: ShardLeaseOptions): Promise<{ resharded?: number }> {
  return db.transaction(async (tx) => {
    // Claims wait for a reshard, and a reshard for the claims in progress.
    await tx.query('LOCK TABLE outbox_relay_lease IN SHARE ROW EXCLUSIVE MODE')
    const { rows } = await tx.query<{ shards: number; epoch: string; expires_at: string; live: number }>(
      `SELECT count(*)::int AS shards, (coalesce(max(epoch), 0) + 1)::text AS epoch,
              coalesce(max(expires_at), '-infinity')::text AS expires_at,
              (SELECT count(*)::int FROM outbox_relay_member WHERE holder <> $1 AND expires_at > now()) AS live
         FROM outbox_relay_lease`,
      [options.holder],
    )
    const table = rows[0] ?? { shards: 0, epoch: '1', expires_at: '-infinity', live: 0 }
    let resharded: number | undefined
    if (table.shards !== options.shards) {
      if (table.live > 0) {
        throw new AppError(
          ErrorCodes.CONFIG_INVALID,
          `${SHARDS_VARIABLE} is ${options.shards}, but the outbox relays running on this database ` +
            `(${table.live} live) use ${table.shards} shard${table.shards === 1 ? '' : 's'}: set ${SHARDS_VARIABLE}=${table.shards}, ` +
            'or stop every other process first to change the count',
          { details: { configured: options.shards, database: table.shards, liveRelays: table.live } },
        )
      }
      await tx.query('DELETE FROM outbox_relay_lease')
      await tx.query(
        `INSERT INTO outbox_relay_lease (id, holder, epoch, expires_at)
         SELECT shard, '', $2::bigint, $3::timestamptz FROM generate_series(0, $1::int - 1) AS shard`,
        [options.shards, table.epoch, table.expires_at],
      )
      resharded = table.shards
    }
    await tx.query(
      `INSERT INTO outbox_relay_member (holder, expires_at) VALUES ($1, now() + make_interval(secs => $2::float8))
       ON CONFLICT (holder) DO UPDATE SET expires_at = excluded.expires_at`,
      [options.holder, options.leaseMs / 1000],
    )
    return resharded === undefined ? {} : { resharded }
  })
}

/**
 * Leaves: the relay is no longer counted, and `release` go to the next relay at once (those still
 * waiting out a previous holder's publish expire now instead, so their next holder waits too).
 */
export async function leaveShards(db: SqlExecutor, holder: string, release: KnownShard[]): Promise<void> {
  await db.query(
    `WITH gone AS (DELETE FROM outbox_relay_member WHERE holder = $1)
     UPDATE outbox_relay_lease AS lease
        SET expires_at = CASE WHEN lease.id = ANY($4::int[]) THEN now() ELSE '-infinity' END
       FROM unnest($2::int[], $3::bigint[]) AS held(id, epoch)
      WHERE lease.id = held.id AND lease.holder = $1 AND lease.epoch = held.epoch`,
    [
      holder,
      release.map((s) => s.shard),
      release.map((s) => s.epoch),
      release.filter((s) => s.waiting).map((s) => s.shard),
    ],
  )
}

// FOR SHARE orders the mark against a concurrent takeover of any shard of the batch: it either
// commits before the takeover or waits for it and then finds that shard's epoch changed. Rows of
// shards still held are marked; those of a lost shard stay pending for its new holder.
/**
 * The shards of the batch (ids `$3`, epochs `$4`) that holder `$2` still holds under those epochs:
 * every mark of an outbox row (published, refused) joins it, so a relay that lost a shard cannot
 * mark that shard's rows.
 */
export const LEASE_FENCE = `fence AS (
  SELECT lease.id, lease.epoch
    FROM outbox_relay_lease AS lease
    JOIN unnest($3::int[], $4::bigint[]) AS held(id, epoch) ON held.id = lease.id AND held.epoch = lease.epoch
   WHERE lease.holder = $2 AND lease.expires_at > now()
     FOR SHARE OF lease
)`

// Each row comes with the shard its select computed (`$8`), so that the rows are matched to the
// fence before the outbox is touched, and the outbox is then read once, by id. Joining the outbox to
// the fence on the shard computed per outbox row let the planner (the fence estimated at one row)
// scan the outbox once per shard held, which cost a relay batch 10–20 ms on a busy PostgreSQL
// (docs/benchmarks.md). The shard is still checked against the row's key. `published_at` is when the
// rows landed: the mark may follow the publish by a moment (`$9` ms), when it waits for the next select.
const MARK_PUBLISHED_STEP = `${LEASE_FENCE},
marked AS (
UPDATE outbox SET published_at = now() - $9::float8 * interval '1 millisecond', published_epoch = landed.epoch,
                  publish_attempts = publish_attempts + 1,
                  published_partition = landed.partition, published_offset = landed.offset
  FROM (SELECT l.id, l.partition, l."offset", l.shard, fence.epoch
          FROM unnest($1::bigint[], $6::int[], $7::text[], $8::int[]) AS l(id, partition, "offset", shard)
          JOIN fence ON fence.id = l.shard) AS landed
 WHERE outbox.id = landed.id AND outbox_shard(outbox.message_key, $5::int) = landed.shard
RETURNING outbox.id)`

const MARK_PUBLISHED = `WITH ${MARK_PUBLISHED_STEP} SELECT id::text AS id FROM marked`

/** Rows published and not marked yet, and where they landed, as the relay's select and publish saw them. */
export interface LandedRows {
  ids: string[]
  /** The shard of each row (same order as `ids`), as the relay's select computed it. */
  shardOf: number[]
  holder: string
  shards: number
  fence: { shard: number; epoch: string }[]
  /** Where each row landed (same order as `ids`), when the transport said. */
  positions?: readonly ({ partition: number; offset: string } | undefined)[]
  /** How long ago they landed: `published_at` is set that much before the mark. */
  landedAgoMs?: number
}

const markParams = (options: LandedRows): unknown[] => [
  options.ids,
  options.holder,
  options.fence.map((s) => s.shard),
  options.fence.map((s) => s.epoch),
  options.shards,
  options.ids.map((_, i) => options.positions?.[i]?.partition ?? null),
  options.ids.map((_, i) => options.positions?.[i]?.offset ?? null),
  options.shardOf,
  Math.max(0, options.landedAgoMs ?? 0),
]

/** Marks `ids` published, fenced by each shard's holder and epoch; resolves with the ids it marked. */
export async function markPublished(db: SqlExecutor, options: LandedRows): Promise<Set<string>> {
  const { rows } = await db.query<{ id: string }>(MARK_PUBLISHED, markParams(options))
  return new Set(rows.map((r) => r.id))
}

/**
 * `markPublished`, and in the same statement the select that follows it: `select.sql(first)` is a
 * query of outbox rows, with an `id` column (text) and its parameters from `$first` on (the shard
 * count is `$5`). The rows being marked are left out of it (the select does not see the mark, made
 * by the same statement). One round trip instead of two for every batch but the last. The rows
 * come in id order.
 */
export async function markPublishedThenSelect<Row extends { id: string }>(
  db: SqlExecutor,
  marks: LandedRows,
  select: { sql: (first: number) => string; params: unknown[] },
): Promise<{ marked: Set<string>; rows: Row[] }> {
  // Each row of the answer carries the ids the fence refused, normally none: the ids marked, on
  // every row of a batch, made the answer grow with the square of the batch's size.
  const { rows } = await db.query<Row & { refused: string[] }>(
    `WITH ${MARK_PUBLISHED_STEP}
     SELECT (SELECT coalesce(array_agg(l.id::text), '{}') FROM unnest($1::bigint[]) AS l(id)
              WHERE l.id NOT IN (SELECT id FROM marked)) AS refused,
            next.*
       FROM (SELECT 1) AS one
       LEFT JOIN LATERAL (${select.sql(10)}) AS next ON true
      ORDER BY next.id::bigint`,
    [...markParams(marks), ...select.params],
  )
  const refused = new Set(rows[0]?.refused ?? [])
  return {
    marked: new Set(marks.ids.filter((id) => !refused.has(id))),
    // Without a next row, the answer is one row of nulls beside the refused ids.
    rows: rows.filter((row) => row.id !== null),
  }
}
