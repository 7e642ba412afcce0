import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { AppError, ErrorCodes, toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'
import type { Headers, OutgoingMessage, PublishedPosition, Transport } from '../transport/port.ts'

/**
 * The transactional outbox. A command's messages are written to `outbox` in the same transaction
 * as its events, so they are durable exactly when the events are; the relay then publishes them
 * in insertion order, at least once, and marks them published. With the broker unreachable the
 * rows wait; nothing is lost and nothing is reordered.
 *
 * One relay per database publishes at a time: the holder of the lease row `outbox_relay_lease`.
 * Every takeover increments the lease's `epoch` (a fencing token). A relay marks rows published
 * only while the lease is still its own (holder and epoch), and records the epoch on the row
 * (`published_epoch`), so a relay that lost its lease cannot pass its work off as the holder's.
 *
 * The broker does not know the epoch, so fencing the mark alone cannot stop a relay that lost its
 * lease from publishing late. Time does that: a relay starts a publish only if its lease outlasts
 * the publish timeout plus a margin, gives up (and aborts) a publish at the timeout, and a relay
 * that takes over an expired lease waits one publish timeout more before its first publish. That
 * holds as long as the transport's publish ends when aborted, or ends by itself within the publish
 * timeout (a Kafka producer's request timeout × retries must fit in it).
 */

/**
 * The outbox rows for `messages`, as one `INSERT … SELECT` over four arrays (`$<first>` to
 * `$<first + 3>`: topics, keys, values, headers as JSON text), in the messages' order, returning
 * their ids; `outboxRows(messages)` gives the arrays. A statement of its own, or a step of a larger one
 * (`WITH rows AS (${outboxInsert(n)}) …`): every statement is a round trip to the database.
 */
export const outboxInsert = (first: number): string =>
  `INSERT INTO outbox (topic, message_key, value, headers)
   SELECT topic, message_key, value, headers::jsonb
     FROM unnest($${first}::text[], $${first + 1}::text[], $${first + 2}::text[], $${first + 3}::text[])
          WITH ORDINALITY AS m(topic, message_key, value, headers, n)
    ORDER BY n
   RETURNING id`

export const outboxRows = (messages: OutgoingMessage[]): [string[], string[], string[], string[]] => [
  messages.map((m) => m.topic),
  messages.map((m) => m.key),
  messages.map((m) => m.value),
  messages.map((m) => JSON.stringify(m.headers ?? {})),
]

/** Row ids as `outboxInsert` returns them, in the messages' order (ids grow in insertion order). */
export const inInsertionOrder = (rows: { id: string }[]): string[] =>
  rows
    .map((r) => BigInt(r.id))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map(String)

/** Writes `messages` to the outbox in `tx`, in one statement; resolves with their row ids, in order. */
export async function enqueue(tx: SqlExecutor, messages: OutgoingMessage[]): Promise<string[]> {
  if (messages.length === 0) return []
  const { rows } = await tx.query<{ id: string }>(
    `WITH rows AS (${outboxInsert(1)}) SELECT id::text AS id FROM rows`,
    outboxRows(messages),
  )
  return inInsertionOrder(rows)
}

/**
 * Deletes rows published more than `olderThanHours` ago: the events themselves stay in the event
 * store, so the outbox only needs what is pending (and recent rows, for looking into incidents).
 */
export async function prunePublished(db: SqlExecutor, olderThanHours: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < now() - make_interval(hours => $1)`,
    [olderThanHours],
  )
  return rowCount
}

/** Lets writers wake the relay of this process right after their transaction committed. */
export function createOutboxSignal(): { notify(): void; onNotify(listener: () => void): () => void } {
  const emitter = new EventEmitter()
  return {
    notify: () => emitter.emit('new'),
    onNotify(listener) {
      emitter.on('new', listener)
      return () => emitter.off('new', listener)
    },
  }
}

export type OutboxSignal = ReturnType<typeof createOutboxSignal>

export interface OutboxRelayOptions {
  db: SqlDatabase
  transport: Transport
  signal: OutboxSignal
  logger: Logger
  batchSize?: number
  /** Fallback poll, for rows written by other processes. */
  pollIntervalMs?: number
  /** Backoff after a failed publish: doubles from `retryBaseMs` up to `retryMaxMs`. */
  retryBaseMs?: number
  retryMaxMs?: number
  /** How long the relay waits after a wake-up to gather more rows into one batch (default 5 ms). */
  coalesceMs?: number
  /** Published rows are deleted once they are this old (default 24 hours). */
  retainPublishedHours?: number
  /** Identifies this relay in the lease row; random by default. */
  holderId?: string
  /** Called after each published batch (tests, metrics). */
  onPublished?: (count: number) => void
  /** How long the lease lasts without renewal; another relay takes over after (default 15 s). */
  leaseMs?: number
  /**
   * A publish that has not finished after this long is abandoned (aborted) and counts as failed;
   * at most half the lease (default: a third). Must cover the transport's own give-up time when
   * the transport cannot abort a publish.
   */
  publishTimeoutMs?: number
}

export interface OutboxRelay {
  /** Publishes everything pending now; resolves with the number of rows published. */
  drain(): Promise<number>
  stop(): Promise<void>
  pending(): Promise<number>
}

const DEFAULT_LEASE_MS = 15_000
const PRUNE_EVERY_MS = 60 * 60 * 1000

interface OutboxRow {
  id: string
  topic: string
  message_key: string
  value: string
  headers: Headers
  age_ms: number
}

/** The lease as this relay knows it; times are `performance.now()` readings. */
interface HeldLease {
  epoch: string
  /** Never later than the database's expiry: measured from before the claim was sent. */
  deadline: number
  renewAfter: number
  /** After taking over an expired lease: when the old holder's last publish is over for sure. */
  publishNotBefore: number
}

interface ClaimRow {
  epoch: string
  previous_holder: string
  previous_epoch: string
  how: 'renewed' | 'released' | 'expired'
  wait_ms: number
}

// One statement, so that two relays claiming at once cannot both win: the second one's UPDATE
// waits for the first's row lock and then finds the lease neither its own nor expired.
// A relay renews only the lease it holds under its epoch; anything else it takes is a takeover,
// which increments the epoch. `previous` is the row as it was before this statement.
const CLAIM_LEASE = `
UPDATE outbox_relay_lease AS lease
   SET holder = $1,
       epoch = CASE WHEN lease.holder = $1 AND lease.epoch = $2::bigint THEN lease.epoch ELSE lease.epoch + 1 END,
       expires_at = now() + make_interval(secs => $3::float8)
  FROM (SELECT holder, epoch, expires_at FROM outbox_relay_lease WHERE id = 1) AS previous
 WHERE lease.id = 1 AND ((lease.holder = $1 AND lease.epoch = $2::bigint) OR lease.expires_at < now())
RETURNING lease.epoch::text AS epoch, previous.holder AS previous_holder, previous.epoch::text AS previous_epoch,
  CASE WHEN previous.holder = $1 AND previous.epoch = $2::bigint THEN 'renewed'
       WHEN previous.expires_at = '-infinity' THEN 'released'
       ELSE 'expired' END AS how,
  CASE WHEN (previous.holder = $1 AND previous.epoch = $2::bigint) OR previous.expires_at = '-infinity' THEN 0::float8
       ELSE GREATEST(0, extract(epoch FROM previous.expires_at - now()) * 1000 + $4::float8)::float8 END AS wait_ms`

// FOR SHARE orders the mark against a concurrent takeover: it either commits before the takeover
// or waits for it and then finds the epoch changed.
const MARK_PUBLISHED = `
UPDATE outbox SET published_at = now(), published_epoch = $3::bigint, publish_attempts = publish_attempts + 1
 WHERE id = ANY($1::bigint[])
   AND EXISTS (SELECT 1 FROM outbox_relay_lease
                WHERE id = 1 AND holder = $2 AND epoch = $3::bigint AND expires_at > now() FOR SHARE)`

export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { db, transport, logger } = options
  const batchSize = options.batchSize ?? 500
  const pollIntervalMs = options.pollIntervalMs ?? 1000
  const retryBaseMs = options.retryBaseMs ?? 250
  const retryMaxMs = options.retryMaxMs ?? 10_000
  const coalesceMs = options.coalesceMs ?? 5
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS
  const publishTimeoutMs = options.publishTimeoutMs ?? leaseMs / 3
  if (!(leaseMs > 0) || !Number.isFinite(leaseMs)) throw new RangeError(`leaseMs must be positive (got ${leaseMs})`)
  if (!(publishTimeoutMs > 0) || publishTimeoutMs > leaseMs / 2) {
    throw new RangeError(`publishTimeoutMs must be positive and at most half of leaseMs (got ${publishTimeoutMs})`)
  }
  // Covers what the local clock cannot see: the moment between the last check and the request
  // leaving the process, and a request already on the wire when its publish was aborted.
  const safetyMarginMs = leaseMs / 10
  // A publish starts only with at least this much of the lease left.
  const publishWindowMs = publishTimeoutMs + safetyMarginMs
  const publish = transport.publish.bind(transport)

  let nextPrune = 0
  let stopped = false
  const stopping = new AbortController()
  let wake: (() => void) | undefined
  let dirty = false
  let failures = 0
  let current: Promise<number> = Promise.resolve(0)
  let lease: HeldLease | undefined
  // A publish given up on that has not settled yet: until it has, it might still land, so this
  // relay neither publishes again (which could overtake it) nor renews its lease (a relay whose
  // transport hangs lets a healthy one take over, after the takeover wait).
  let abandoned: Promise<void> | undefined
  // drain() may be called while the loop drains: batches go out one at a time, in order.
  let queue: Promise<unknown> = Promise.resolve()

  const holder = options.holderId ?? randomUUID()

  const lostLease = (reason: string, details: Record<string, unknown> = {}) => {
    logger.warn(
      { holder, epoch: lease?.epoch, ...details },
      `outbox relay lost its lease (${reason}); it stops publishing and tries to claim the lease again`,
    )
    lease = undefined
  }

  // Only one relay publishes at a time, so that the outbox's order is the order on the wire. A lease
  // row (rather than a lock held across the publish) keeps the database free while the broker is
  // slow, and lets another process take over when the holder dies.
  // Renewed once a third of it has passed rather than on every batch: one statement less per batch.
  const holdLease = async (): Promise<HeldLease | undefined> => {
    const now = performance.now()
    if (lease && now < lease.renewAfter && lease.deadline - now >= publishWindowMs) return lease
    const sentAt = performance.now()
    const { rows } = await db.query<ClaimRow>(CLAIM_LEASE, [
      holder,
      lease?.epoch ?? null,
      leaseMs / 1000,
      publishTimeoutMs,
    ])
    const receivedAt = performance.now()
    const row = rows[0]
    if (!row) {
      if (lease) lostLease('another relay took it over')
      return undefined
    }
    if (row.how !== 'renewed') {
      logger.info(
        {
          holder,
          epoch: row.epoch,
          previousHolder: row.previous_holder,
          how: row.how,
          waitMs: Math.round(row.wait_ms),
        },
        row.how === 'expired'
          ? 'outbox relay took over an expired lease; it waits out the previous holder’s last publish'
          : 'outbox relay claimed the lease',
      )
    }
    lease = {
      epoch: row.epoch,
      deadline: sentAt + leaseMs,
      renewAfter: sentAt + leaseMs / 3,
      // Measured from after the answer: the wait may end later than the database computed, never earlier.
      publishNotBefore: row.how === 'renewed' ? (lease?.publishNotBefore ?? 0) : receivedAt + row.wait_ms,
    }
    return lease
  }

  const publishBatch = async (): Promise<number> => {
    if (abandoned) {
      throw new AppError(
        ErrorCodes.TRANSPORT_UNAVAILABLE,
        'an abandoned publish has not settled yet; the relay neither publishes nor renews its lease until it has',
      )
    }
    let held = await holdLease()
    if (!held) return 0
    const waitMs = held.publishNotBefore - performance.now()
    if (waitMs > 0) {
      await pause(waitMs, stopping.signal)
      if (stopped) return 0
      held = await holdLease()
      if (!held) return 0
    }
    const { rows } = await db.query<OutboxRow>(
      // Qualified: the select list turns id into text, and ordering by text would put 10 before 9.
      `SELECT outbox.id::text, topic, message_key, value, headers,
              (extract(epoch FROM now() - created_at) * 1000)::float8 AS age_ms
         FROM outbox WHERE published_at IS NULL ORDER BY outbox.id LIMIT $1`,
      [batchSize],
    )
    if (rows.length === 0) return 0
    const selectedAt = performance.now()
    const ids = rows.map((r) => r.id)
    // Checked after the last await: a relay stalled since it confirmed its lease (a long GC pause,
    // a frozen VM) must not publish on a lease that has run out, or will before the publish ends.
    if (lease !== held || selectedAt + publishWindowMs > held.deadline) {
      if (lease === held) held.renewAfter = 0
      throw new AppError(
        ErrorCodes.TRANSPORT_UNAVAILABLE,
        'the lease ran short before the publish could start (was the process stalled?); it is renewed first',
        { details: { leaseLeftMs: Math.round(held.deadline - selectedAt), neededMs: publishWindowMs } },
      )
    }
    const controller = new AbortController()
    let publishing: Promise<PublishedPosition[]>
    try {
      publishing = publish(
        rows.map((r) => ({ topic: r.topic, key: r.message_key, value: r.value, headers: r.headers })),
        // The relay retries by itself, with backoff: one attempt keeps the publish (and so the
        // lease that must outlast it) short, and a dead holder's lease is taken over sooner.
        { signal: controller.signal, singleAttempt: true },
      )
    } catch (error) {
      publishing = Promise.reject(error)
    }
    const settled = publishing.then(
      () => {},
      () => {},
    )
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timed out'>((resolve) => {
      timer = setTimeout(() => resolve('timed out'), publishTimeoutMs)
    })
    try {
      const outcome = await Promise.race([publishing.then(() => 'published' as const), timedOut])
      if (outcome === 'timed out') {
        const details = {
          batchSize: rows.length,
          oldestAgeMs: Math.round((rows[0]?.age_ms ?? 0) + (performance.now() - selectedAt)),
          timeoutMs: publishTimeoutMs,
          epoch: held.epoch,
        }
        const error = new AppError(
          ErrorCodes.TRANSPORT_UNAVAILABLE,
          `the publish did not finish within ${publishTimeoutMs} ms; it was aborted`,
          { details },
        )
        controller.abort(error)
        abandoned = settled
        void settled.then(() => {
          if (abandoned === settled) abandoned = undefined
        })
        logger.warn(
          { holder, ...details },
          'outbox publish timed out; it was aborted and its rows stay pending, to be retried',
        )
        throw error
      }
    } catch (error) {
      throw Object.assign(toError(error), { outboxIds: ids })
    } finally {
      clearTimeout(timer)
    }
    // A crash before this update republishes the batch: at least once, in order.
    const { rowCount } = await db.query(MARK_PUBLISHED, [ids, holder, held.epoch])
    if (rowCount === 0) {
      lostLease('marking published rows was refused', { refusedRows: rows.length })
      return 0
    }
    return rows.length
  }

  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work)
    queue = run.catch(() => {})
    return run
  }

  const drain = async (): Promise<number> => {
    let total = 0
    for (;;) {
      const n = await exclusive(publishBatch)
      total += n
      if (n > 0) options.onPublished?.(n)
      if (n < batchSize) return total
    }
  }

  /** Rows the last drain published: more than one means commits are arriving in bursts. */
  let lastDrained = 0
  const loop = async () => {
    while (!stopped) {
      // Under load, waiting a moment lets the rows of concurrent commands go out in one batch
      // instead of one publish (and one UPDATE) per command. When idle, the row goes out at once:
      // the wait would only add latency to every hop.
      if (coalesceMs > 0 && lastDrained > 1) await new Promise((resolve) => setTimeout(resolve, coalesceMs))
      dirty = false
      current = drain()
      try {
        lastDrained = await current
        if (failures > 0) logger.info({ afterFailures: failures }, 'outbox relay recovered')
        failures = 0
      } catch (error) {
        failures++
        const delay = Math.min(retryMaxMs, retryBaseMs * 2 ** (failures - 1))
        const ids = (error as { outboxIds?: string[] }).outboxIds
        if (ids) {
          await db
            .query(
              'UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $2 WHERE id = ANY($1::bigint[])',
              [ids, (error as Error).message],
            )
            .catch(() => {})
        }
        logger.warn(
          { err: error, attempt: failures, retryInMs: delay },
          'outbox relay could not publish; the rows stay pending and will be retried',
        )
        await sleep(delay, (resolve) => {
          wake = resolve
        })
        continue
      }
      if (Date.now() >= nextPrune) {
        nextPrune = Date.now() + PRUNE_EVERY_MS
        const pruned = await prunePublished(db, options.retainPublishedHours ?? 24).catch(() => 0)
        if (pruned > 0) logger.info({ pruned }, 'deleted published outbox rows past their retention')
      }
      // Rows that arrived while draining are published at once; otherwise wait for a signal or the poll.
      if (!dirty && !stopped) {
        await sleep(pollIntervalMs, (resolve) => {
          wake = resolve
        })
      }
    }
  }

  const unsubscribe = options.signal.onNotify(() => {
    dirty = true
    // A failing relay keeps its backoff; a new row must not turn it into a busy loop.
    if (failures === 0) wake?.()
  })
  const running = loop()

  return {
    drain: () => drain(),
    async pending() {
      const { rows } = await db.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM outbox WHERE published_at IS NULL',
      )
      return Number(rows[0]?.n ?? 0)
    },
    async stop() {
      stopped = true
      stopping.abort()
      unsubscribe()
      wake?.()
      await current.catch(() => {})
      await running
      await queue
      const held = lease
      lease = undefined
      if (!held) return
      if (abandoned) {
        // Released, the lease would go to the next relay at once, while this publish may still land.
        logger.warn({ holder, epoch: held.epoch }, 'outbox relay stopped with a publish unsettled; its lease expires')
        return
      }
      // Hand the lease over at once instead of making another process wait for it to expire.
      await db
        .query(`UPDATE outbox_relay_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = $1 AND epoch = $2`, [
          holder,
          held.epoch,
        ])
        .catch(() => {})
    },
  }
}

function sleep(ms: number, expose: (resolve: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    expose(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}

/** Waits `ms`, or less if `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
