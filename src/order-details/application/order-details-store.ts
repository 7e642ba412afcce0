import type { ShopOrder, ShopOrderCreated, ShopOrderStatusUpdated } from '../../contracts/shop/events.ts'
import { markHandled } from '../../platform/inbox/inbox.ts'
import type { SqlDatabase, SqlExecutor } from '../../platform/sql/port.ts'

/**
 * Seed 002's order service state: the orders learnt from `orders.events`, and the status updates
 * waiting for their order. Every event is applied in one transaction with its inbox entry, so a
 * redelivered event (after a crash, or published twice by the relay) changes nothing.
 *
 * The outcomes are what the seed promises: an update for an order not created yet is buffered
 * durably and applied when ORDER_CREATED arrives; a second ORDER_CREATED is ignored.
 */

export type ApplyOutcome = 'created' | 'duplicate-create' | 'updated' | 'buffered' | 'redelivered'

export interface OrderDetailsStore {
  apply(
    event: ShopOrderCreated | ShopOrderStatusUpdated,
    messageId: string,
  ): Promise<{ outcome: ApplyOutcome; applied?: number }>
  get(orderId: string): Promise<ShopOrder | null>
  /** Status updates waiting for the order's ORDER_CREATED. */
  pendingUpdates(orderId: string): Promise<number>
}

export function createOrderDetailsStore(db: SqlDatabase, consumer: string): OrderDetailsStore {
  const create = async (tx: SqlExecutor, event: ShopOrderCreated) => {
    const { status, ...order } = event.order
    const { rowCount } = await tx.query(
      `INSERT INTO order_details (order_id, order_doc, status) VALUES ($1, $2, $3)
       ON CONFLICT (order_id) DO NOTHING`,
      [event.orderId, JSON.stringify({ ...order, orderId: event.orderId }), status],
    )
    if (rowCount === 0) return { outcome: 'duplicate-create' as const }
    // Updates that came first, oldest first: the last one is the status now.
    const { rows } = await tx.query<{ seq: string; status: string }>(
      'DELETE FROM order_details_pending_updates WHERE order_id = $1 RETURNING seq::text AS seq, status',
      [event.orderId],
    )
    const ordered = rows.sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1))
    const last = ordered.at(-1)
    if (last) {
      await tx.query('UPDATE order_details SET status = $2, updated_at = now() WHERE order_id = $1', [
        event.orderId,
        last.status,
      ])
    }
    return { outcome: 'created' as const, applied: ordered.length }
  }

  const update = async (tx: SqlExecutor, event: ShopOrderStatusUpdated, messageId: string) => {
    const { rowCount } = await tx.query(
      'UPDATE order_details SET status = $2, updated_at = now() WHERE order_id = $1',
      [event.orderId, event.status],
    )
    if (rowCount > 0) return { outcome: 'updated' as const }
    await tx.query('INSERT INTO order_details_pending_updates (order_id, status, event_id) VALUES ($1, $2, $3)', [
      event.orderId,
      event.status,
      messageId,
    ])
    return { outcome: 'buffered' as const }
  }

  return {
    apply: (event, messageId) =>
      db.transaction(async (tx) => {
        if (!(await markHandled(tx, consumer, messageId))) return { outcome: 'redelivered' as const }
        return event.eventType === 'ORDER_CREATED' ? create(tx, event) : update(tx, event, messageId)
      }),
    async get(orderId) {
      const { rows } = await db.query<{ order_doc: Omit<ShopOrder, 'status'>; status: ShopOrder['status'] }>(
        'SELECT order_doc, status FROM order_details WHERE order_id = $1',
        [orderId],
      )
      const row = rows[0]
      return row ? { ...row.order_doc, status: row.status } : null
    },
    async pendingUpdates(orderId) {
      const { rows } = await db.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM order_details_pending_updates WHERE order_id = $1',
        [orderId],
      )
      return Number(rows[0]?.n ?? 0)
    },
  }
}
