import { CUSTOMER_STREAM_TYPE } from '../../contracts/customer/events.ts'
import { ERASED } from '../../contracts/personal.ts'
import { problemWithText } from '../../contracts/text.ts'
import type { ProjectionDefinition } from '../../platform/es/projections.ts'
import type { StoredEvent } from '../../platform/eventstore/event-store.ts'
import type { SqlExecutor } from '../../platform/sql/port.ts'
import { evolve, type Order, type OrderStatus } from '../domain/order.ts'
import { STREAM_TYPE, toOrderEvent } from './order-store.ts'

/**
 * The order read model (orders by customer, by status, newest first), a projection of the event
 * store run by the platform's projection runner. Applying an event is idempotent: a row already at
 * or past the event's version is left alone, so replaying events changes nothing. The model can be
 * rebuilt from the event store at any time (`npm run orderflow -- rebuild-read-model`).
 */
export const orderReadModel: ProjectionDefinition = {
  name: 'order_read_model',
  // The customer's stream too: when a customer's personal data is erased, the model drops the
  // sealed fields it kept of their orders (they could no longer be opened anyway).
  streamTypes: [STREAM_TYPE, CUSTOMER_STREAM_TYPE],
  // A batch is one read and one write, whatever its size: the rows of every order it touches are
  // read at once, its events folded in memory in store order, and the changed rows written back in
  // one statement (every statement is a round trip, and round trips are what the hot path pays for).
  async handle(tx, all) {
    // Runs of order events, each followed by the erasures after it, in store order.
    let run: StoredEvent[] = []
    for (const stored of all) {
      if (stored.streamType === STREAM_TYPE) {
        run.push(stored)
        continue
      }
      if (stored.eventType !== 'CustomerDataErased') continue
      await applyOrderEvents(tx, run)
      run = []
      await dropPersonalData(tx, String(stored.data.customerId))
    }
    await applyOrderEvents(tx, run)
  },
  async truncate(tx) {
    await tx.query('DELETE FROM order_read_model')
  },
}

/** The read model's rows of a customer's orders keep ERASED where their personal fields were. */
async function dropPersonalData(tx: SqlExecutor, customerId: string): Promise<void> {
  await tx.query(
    `UPDATE order_read_model
        SET doc = doc || jsonb_build_object(
              'deliveryAddress', CASE WHEN doc->'deliveryAddress' IS NULL OR doc->'deliveryAddress' = 'null'::jsonb
                                      THEN 'null'::jsonb ELSE to_jsonb($2::text) END,
              'contact', CASE WHEN doc->'contact' IS NULL OR doc->'contact' = 'null'::jsonb
                              THEN 'null'::jsonb ELSE to_jsonb($2::text) END)
      WHERE customer_id = $1`,
    [customerId, ERASED],
  )
}

async function applyOrderEvents(tx: SqlExecutor, events: readonly StoredEvent[]): Promise<void> {
  if (events.length === 0) return
  const ids = [...new Set(events.map((e) => e.streamId))]
  const { rows } = await tx.query<{ id: string; doc: Order; version: number }>(
    'SELECT id, doc, version FROM order_read_model WHERE id = ANY($1::text[])',
    [ids],
  )
  const current = new Map<string, Order | null>(rows.map((r) => [r.id, { ...r.doc, version: r.version }]))
  const changed = new Map<string, Order>()
  for (const stored of events) {
    const event = toOrderEvent(stored)
    const before = current.get(event.aggregateId) ?? null
    if (before && before.version >= event.version) continue
    const order = evolve(before, event)
    if (!order) continue
    current.set(event.aggregateId, order)
    changed.set(event.aggregateId, order)
  }
  if (changed.size === 0) return
  const orders = [...changed.values()]
  // Guarded by version as well, so a row written meanwhile by a newer event is never set back.
  await tx.query(
    `INSERT INTO order_read_model (id, customer_id, status, total_amount, currency, version, created_at, updated_at, doc)
       SELECT id, customer_id, status, total_amount, currency, version, created_at::timestamptz, updated_at::timestamptz,
              doc::jsonb
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::integer[], $7::text[], $8::text[],
                     $9::text[]) AS t(id, customer_id, status, total_amount, currency, version, created_at, updated_at, doc)
       ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
         total_amount = EXCLUDED.total_amount, currency = EXCLUDED.currency, version = EXCLUDED.version,
         updated_at = EXCLUDED.updated_at, doc = EXCLUDED.doc
       WHERE order_read_model.version < EXCLUDED.version`,
    [
      orders.map((o) => o.id),
      orders.map((o) => o.customerId),
      orders.map((o) => o.status),
      orders.map((o) => o.totalAmount),
      orders.map((o) => o.currency),
      orders.map((o) => o.version),
      orders.map((o) => o.createdAt),
      orders.map((o) => o.updatedAt),
      orders.map((o) => JSON.stringify(o)),
    ],
  )
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

/** Exactly what `encodeCursor` writes for `createdAt`: a canonical UTC timestamp. */
const cursorTimestamp = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

/**
 * The position in a cursor this API returned, or null for anything else: the parts go into SQL as a
 * timestamptz and a text, so a forged cursor must be refused here (a 400), not by the database.
 */
export function decodeCursor(cursor: string): [string, string] | null {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (!Array.isArray(value) || value.length !== 2) return null
    const [createdAt, id] = value as unknown[]
    if (typeof createdAt !== 'string' || !cursorTimestamp.test(createdAt)) return null
    if (Number.isNaN(Date.parse(createdAt)) || new Date(createdAt).toISOString() !== createdAt) return null
    if (typeof id !== 'string' || id.length === 0 || id.length > 200 || problemWithText(id)) return null
    return [createdAt, id]
  } catch {
    return null
  }
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
