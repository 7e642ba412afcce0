import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'
import type { Headers, OutgoingMessage, Transport } from '../transport/port.ts'

/**
 * The transactional outbox. A command's messages are written to `outbox` in the same transaction
 * as its events, so they are durable exactly when the events are; the relay then publishes them
 * in insertion order, at least once, and marks them published. With the broker unreachable the
 * rows wait; nothing is lost and nothing is reordered.
 */

export const outboxSchema = `
CREATE TABLE IF NOT EXISTS outbox (
  id bigserial PRIMARY KEY,
  topic text NOT NULL,
  message_key text NOT NULL,
  value text NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  publish_attempts integer NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS outbox_relay_lease (
  id integer PRIMARY KEY CHECK (id = 1),
  holder text NOT NULL,
  expires_at timestamptz NOT NULL
);
INSERT INTO outbox_relay_lease (id, holder, expires_at) VALUES (1, '', '-infinity') ON CONFLICT (id) DO NOTHING;
`

export async function migrateOutbox(db: SqlExecutor): Promise<void> {
  await db.exec(outboxSchema)
}

export async function enqueue(tx: SqlExecutor, messages: OutgoingMessage[]): Promise<void> {
  for (const m of messages) {
    await tx.query('INSERT INTO outbox (topic, message_key, value, headers) VALUES ($1, $2, $3, $4)', [
      m.topic,
      m.key,
      m.value,
      JSON.stringify(m.headers ?? {}),
    ])
  }
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
}

export interface OutboxRelay {
  /** Publishes everything pending now; resolves with the number of rows published. */
  drain(): Promise<number>
  stop(): Promise<void>
  pending(): Promise<number>
}

/** How long a relay's claim to publish lasts without renewal (another process takes over after). */
const LEASE_SECONDS = 15
const PRUNE_EVERY_MS = 60 * 60 * 1000

interface OutboxRow {
  id: string
  topic: string
  message_key: string
  value: string
  headers: Headers
}

export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { db, transport, logger } = options
  const batchSize = options.batchSize ?? 500
  const pollIntervalMs = options.pollIntervalMs ?? 1000
  const retryBaseMs = options.retryBaseMs ?? 250
  const retryMaxMs = options.retryMaxMs ?? 10_000
  const coalesceMs = options.coalesceMs ?? 5
  let nextPrune = 0
  let stopped = false
  let wake: (() => void) | undefined
  let dirty = false
  let failures = 0
  let current: Promise<number> = Promise.resolve(0)

  const holder = options.holderId ?? randomUUID()

  // Only one relay publishes at a time, so that the outbox's order is the order on the wire. A lease
  // row (rather than a lock held across the publish) keeps the database free while the broker is
  // slow, and lets another process take over when the holder dies.
  // Renewed once a third of it has passed rather than on every batch: one statement less per batch.
  let leaseRenewAfter = 0
  const claimLease = async (): Promise<boolean> => {
    if (Date.now() < leaseRenewAfter) return true
    const claimedAt = Date.now()
    const { rowCount } = await db.query(
      `UPDATE outbox_relay_lease SET holder = $1, expires_at = now() + make_interval(secs => $2)
        WHERE id = 1 AND (holder = $1 OR expires_at < now())`,
      [holder, LEASE_SECONDS],
    )
    leaseRenewAfter = rowCount > 0 ? claimedAt + (LEASE_SECONDS * 1000) / 3 : 0
    return rowCount > 0
  }

  const publishBatch = async (): Promise<number> => {
    if (!(await claimLease())) return 0
    const { rows } = await db.query<OutboxRow>(
      // Qualified: the select list turns id into text, and ordering by text would put 10 before 9.
      `SELECT outbox.id::text, topic, message_key, value, headers FROM outbox
        WHERE published_at IS NULL ORDER BY outbox.id LIMIT $1`,
      [batchSize],
    )
    if (rows.length === 0) return 0
    try {
      await transport.publish(
        rows.map((r) => ({ topic: r.topic, key: r.message_key, value: r.value, headers: r.headers })),
      )
    } catch (error) {
      throw Object.assign(toError(error), { outboxIds: rows.map((r) => r.id) })
    }
    // A crash before this update republishes the batch: at least once, in order.
    await db.query(
      'UPDATE outbox SET published_at = now(), publish_attempts = publish_attempts + 1 WHERE id = ANY($1::bigint[])',
      [rows.map((r) => r.id)],
    )
    return rows.length
  }

  const drain = async (): Promise<number> => {
    let total = 0
    for (;;) {
      const n = await publishBatch()
      total += n
      if (n > 0) options.onPublished?.(n)
      if (n < batchSize) return total
    }
  }

  const loop = async () => {
    while (!stopped) {
      // Under load, waiting a moment lets the rows of concurrent commands go out in one batch
      // instead of one publish (and one UPDATE) per command.
      if (coalesceMs > 0) await new Promise((resolve) => setTimeout(resolve, coalesceMs))
      dirty = false
      current = drain()
      try {
        await current
        if (failures > 0) logger.info({ afterFailures: failures }, 'outbox relay recovered; publishing again')
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
      unsubscribe()
      wake?.()
      await current.catch(() => {})
      await running
      // Hand the lease over at once instead of making another process wait for it to expire.
      leaseRenewAfter = 0
      await db
        .query(`UPDATE outbox_relay_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = $1`, [holder])
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
