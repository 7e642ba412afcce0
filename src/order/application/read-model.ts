import { countAfter, readAll, START_POSITION, type StorePosition } from '../../platform/eventstore/event-store.ts'
import type { Logger } from '../../platform/logger.ts'
import type { OutboxSignal } from '../../platform/outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor } from '../../platform/sql/port.ts'
import { evolve, type Order, type OrderStatus } from '../domain/order.ts'
import { STREAM_TYPE, toOrderEvent } from './order-store.ts'

/**
 * The order read model (orders by customer, by status, newest first), kept by a projection that
 * follows the event store from its own checkpoint. Applying an event is idempotent: a row already
 * at or past the event's version is left alone, so replaying events changes nothing. The model can
 * be rebuilt from the event store at any time (`npm run orders -- rebuild-read-model`).
 */

export const PROJECTION_NAME = 'order_read_model'
const BATCH_SIZE = 500

export const readModelSchema = `
CREATE TABLE IF NOT EXISTS order_read_model (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL,
  total_amount bigint NOT NULL,
  currency text NOT NULL,
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS order_read_model_by_customer ON order_read_model (customer_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS order_read_model_by_status ON order_read_model (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS order_read_model_newest ON order_read_model (created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS projection_checkpoints (
  name text PRIMARY KEY,
  transaction_id xid8 NOT NULL,
  global_position bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
`

export async function migrateReadModel(db: SqlExecutor): Promise<void> {
  await db.exec(readModelSchema)
}

async function checkpoint(tx: SqlExecutor): Promise<StorePosition> {
  const select = () =>
    tx.query<{ transaction_id: string; global_position: string }>(
      'SELECT transaction_id::text, global_position::text FROM projection_checkpoints WHERE name = $1 FOR UPDATE',
      [PROJECTION_NAME],
    )
  let { rows } = await select()
  if (rows.length === 0) {
    await tx.query(
      `INSERT INTO projection_checkpoints (name, transaction_id, global_position) VALUES ($1, '0', 0)
       ON CONFLICT (name) DO NOTHING`,
      [PROJECTION_NAME],
    )
    ;({ rows } = await select())
  }
  const row = rows[0]
  return row ? { transactionId: row.transaction_id, globalPosition: row.global_position } : START_POSITION
}

/** Projects up to `limit` events after the checkpoint, in one transaction; returns how many. */
export async function projectBatch(db: SqlDatabase, limit = 500): Promise<number> {
  return db.transaction(async (tx) => {
    const after = await checkpoint(tx)
    const events = await readAll(tx, { after, limit, streamType: STREAM_TYPE })
    for (const stored of events) {
      const event = toOrderEvent(stored)
      const { rows } = await tx.query<{ doc: Order; version: number }>(
        'SELECT doc, version FROM order_read_model WHERE id = $1',
        [event.aggregateId],
      )
      const current = rows[0]
      if (current && current.version >= event.version) continue
      const order = evolve(current?.doc ?? null, event)
      if (!order) continue
      await tx.query(
        `INSERT INTO order_read_model (id, customer_id, status, total_amount, currency, version, created_at, updated_at, doc)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
           total_amount = EXCLUDED.total_amount, currency = EXCLUDED.currency, version = EXCLUDED.version,
           updated_at = EXCLUDED.updated_at, doc = EXCLUDED.doc`,
        [
          order.id,
          order.customerId,
          order.status,
          order.totalAmount,
          order.currency,
          order.version,
          order.createdAt,
          order.updatedAt,
          JSON.stringify(order),
        ],
      )
    }
    const last = events.at(-1)
    if (last) {
      await tx.query(
        `UPDATE projection_checkpoints SET transaction_id = $2::text::xid8, global_position = $3, updated_at = now()
          WHERE name = $1`,
        [PROJECTION_NAME, last.transactionId, last.globalPosition],
      )
    }
    return events.length
  })
}

/** Events up to global position `head` that the projection has not applied yet. */
async function behindCheckpoint(db: SqlDatabase, head: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM es_events e
      LEFT JOIN projection_checkpoints c ON c.name = $1
      WHERE e.stream_type = $2 AND e.global_position <= $3::bigint
        AND (c.name IS NULL OR (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position))`,
    [PROJECTION_NAME, STREAM_TYPE, head],
  )
  return Number(rows[0]?.n ?? 0)
}

export interface Progress {
  done: number
  total: number
}

/**
 * Rebuilds the read model from the event store. With `resume`, continues an interrupted rebuild
 * from its checkpoint instead of starting over.
 */
export async function rebuildReadModel(
  db: SqlDatabase,
  options: {
    resume?: boolean
    batchSize?: number
    onProgress?: (progress: Progress) => void
    signal?: AbortSignal
  } = {},
): Promise<Progress> {
  if (!options.resume) {
    await db.transaction(async (tx) => {
      await tx.query('DELETE FROM order_read_model')
      await tx.query('DELETE FROM projection_checkpoints WHERE name = $1', [PROJECTION_NAME])
    })
  }
  const start = await db.transaction((tx) => checkpoint(tx))
  const total = await countAfter(db, start, { streamType: STREAM_TYPE })
  let done = 0
  options.onProgress?.({ done, total })
  while (!options.signal?.aborted) {
    const n = await projectBatch(db, options.batchSize ?? 500)
    if (n === 0) break
    // PGlite answers through promises alone; without a macrotask turn a signal handler (Ctrl-C →
    // abort) would only run once the whole rebuild is over.
    await new Promise((resolve) => setImmediate(resolve))
    done += n
    options.onProgress?.({ done, total: Math.max(total, done) })
  }
  return { done, total: Math.max(total, done) }
}

export interface ReadModelProjection {
  /** Resolves once every event committed before the call is in the read model. */
  catchUp(): Promise<void>
  stop(): Promise<void>
}

/** Keeps the read model up to date: woken by new commands, with a poll for other processes' writes. */
export function startReadModelProjection(deps: {
  db: SqlDatabase
  signal: OutboxSignal
  logger: Logger
  pollIntervalMs?: number
}): ReadModelProjection {
  let stopped = false
  let dirty = false
  let wake: (() => void) | undefined
  let failures = 0
  const run = async () => {
    while (!stopped) {
      // As in the outbox relay: a moment's wait turns a burst of commands into one batch.
      await new Promise((resolve) => setTimeout(resolve, 5))
      dirty = false
      try {
        // A short batch means the projection reached the end; no need to ask again.
        while ((await projectBatch(deps.db, BATCH_SIZE)) === BATCH_SIZE) {}
        failures = 0
      } catch (error) {
        failures++
        deps.logger.warn({ err: error, attempt: failures }, 'order read-model projection failed; retrying')
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
  const unsubscribe = deps.signal.onNotify(() => {
    dirty = true
    wake?.()
  })
  const running = run()
  return {
    async catchUp() {
      // Events commit in one order and become readable in another (the projection reads below the
      // oldest running transaction), so "a batch came back empty" is not "caught up": wait until
      // nothing committed before this call is left behind the checkpoint.
      const { rows } = await deps.db.query<{ head: string }>(
        'SELECT coalesce(max(global_position), 0)::text AS head FROM es_events WHERE stream_type = $1',
        [STREAM_TYPE],
      )
      const head = rows[0]?.head ?? '0'
      for (;;) {
        await projectBatch(deps.db)
        if ((await behindCheckpoint(deps.db, head)) === 0) return
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
    async stop() {
      stopped = true
      unsubscribe()
      wake?.()
      await running
    },
  }
}

export interface OrderQuery {
  customerId?: string
  status?: OrderStatus
  limit: number
  /** Opaque cursor from the previous page. */
  cursor?: string
}

export interface OrderPage {
  orders: Order[]
  nextCursor: string | null
}

export function encodeCursor(createdAt: string, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url')
}

export function decodeCursor(cursor: string): [string, string] | null {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string')) {
      return value as [string, string]
    }
  } catch {}
  return null
}

/** Orders newest first, filtered by customer and/or status, keyset-paginated. */
export async function queryOrders(
  db: SqlExecutor,
  query: OrderQuery,
  after: [string, string] | null,
): Promise<OrderPage> {
  const params: unknown[] = []
  const where: string[] = []
  if (query.customerId) {
    params.push(query.customerId)
    where.push(`customer_id = $${params.length}`)
  }
  if (query.status) {
    params.push(query.status)
    where.push(`status = $${params.length}`)
  }
  if (after) {
    params.push(after[0], after[1])
    where.push(`(created_at, id) < ($${params.length - 1}::timestamptz, $${params.length})`)
  }
  params.push(query.limit + 1)
  const { rows } = await db.query<{ doc: Order }>(
    `SELECT doc FROM order_read_model ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
    params,
  )
  const orders = rows.slice(0, query.limit).map((r) => r.doc)
  const last = orders.at(-1)
  return { orders, nextCursor: rows.length > query.limit && last ? encodeCursor(last.createdAt, last.id) : null }
}
