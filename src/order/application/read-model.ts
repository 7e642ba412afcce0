import { problemWithText } from '../../contracts/text.ts'
import type { ProjectionDefinition } from '../../platform/es/projections.ts'
import type { SqlExecutor } from '../../platform/sql/port.ts'
import { evolve, type Order, type OrderStatus } from '../domain/order.ts'
import { STREAM_TYPE, toOrderEvent } from './order-store.ts'

/**
 * The order read model (orders by customer, by status, newest first), a projection of the event
 * store run by the platform's projection runner. Applying an event is idempotent: a row already at
 * or past the event's version is left alone, so replaying events changes nothing. The model can be
 * rebuilt from the event store at any time (`npm run orders -- rebuild-read-model`).
 */
export const orderReadModel: ProjectionDefinition = {
  name: 'order_read_model',
  streamTypes: [STREAM_TYPE],
  async handle(tx, events) {
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
  },
  async truncate(tx) {
    await tx.query('DELETE FROM order_read_model')
  },
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
