import { runAudit, type StuckOrder } from '../audit/audit.ts'
import type { SqlExecutor } from '../platform/sql/port.ts'
import type { RatePoint, RateSampler } from './rates.ts'
import { cachedFor, count, iso, tablesPresent } from './tables.ts'
import type { TopicsSource } from './topics.ts'

/**
 * The overview: one snapshot of the whole system, built at most once a second however many people
 * watch, each part refreshed as often as it is worth (the topics every second on the embedded log
 * and every five on Kafka, the auditor's stuck orders every ten).
 */

export interface Overview {
  at: string
  transport: 'embedded' | 'kafka'
  rates: { latest: RatePoint | null; history?: RatePoint[] }
  lag: {
    total: number
    groups: { group: string; lag: number }[]
    partitions: { group: string; topic: string; partition: number; committed: number; endOffset: number; lag: number }[]
    error?: string
  }
  deadLetters: {
    open: number
    byReason: { topic: string; group: string; reason: string; count: number }[]
    parkedKeys: number
    parked: { topic: string; group: string; keys: number; messages: number }[]
  }
  outbox: { backlog: number; oldestAgeMs: number | null }
  orders: { total: number; byStatus: { status: string; count: number }[] }
  sagas: { bySteps: { status: string; step: string | null; count: number }[]; parked: number; keysParked: number }
  stuck: { checkedAt: string | null; total: number; stuckAfterMs: number; orders: StuckOrder[]; error?: string }
  recent: {
    id: string
    status: string
    createdAt: string | null
    updatedAt: string | null
    sagaStep: string | null
    sagaStatus: string | null
    /** Some group holds the order's messages behind a dead letter (its key is parked). */
    parked: boolean
  }[]
}

export interface OverviewSource {
  read(options?: { history?: boolean }): Promise<Overview>
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))

export function overviewSource(options: {
  db: SqlExecutor
  topics: TopicsSource
  rates: RateSampler
  transport: 'embedded' | 'kafka'
  stuckAfterMs: number
  clock: () => Date
}): OverviewSource {
  const { db } = options
  const tables = cachedFor(10_000, () =>
    tablesPresent(db, ['orders', 'sagas', 'dead_letters', 'parked_keys', 'parked_messages', 'order_read_model']),
  )

  const stuck = cachedFor(10_000, async (): Promise<Overview['stuck']> => {
    try {
      const report = await runAudit(db, { stuckAfterMs: options.stuckAfterMs, now: options.clock(), listLimit: 50 })
      return {
        checkedAt: report.checkedAt,
        total: report.orders.stuck,
        stuckAfterMs: options.stuckAfterMs,
        orders: report.stuck,
      }
    } catch (error) {
      return { checkedAt: null, total: 0, stuckAfterMs: options.stuckAfterMs, orders: [], error: message(error) }
    }
  })

  const counts = cachedFor(2_000, async () => {
    const present = await tables()
    const byStatus = present.has('orders')
      ? (
          await db.query<{ status: string; n: string }>(
            'SELECT status, count(*)::text AS n FROM orders GROUP BY status ORDER BY status',
          )
        ).rows.map((r) => ({ status: r.status, count: count(r.n) }))
      : []
    const bySteps = present.has('sagas')
      ? (
          await db.query<{ status: string; step: string | null; n: string }>(
            `SELECT status, CASE WHEN status = 'COMPLETED' THEN coalesce(outcome, step) ELSE step END AS step,
                    count(*)::text AS n
               FROM sagas GROUP BY 1, 2 ORDER BY 1, 2`,
          )
        ).rows.map((r) => ({ status: r.status, step: r.step, count: count(r.n) }))
      : []
    // A saga whose next message waits behind a dead letter (its key parked in some group).
    const keysParked =
      present.has('sagas') && present.has('parked_keys')
        ? count(
            (
              await db.query<{ n: string }>(
                `SELECT count(DISTINCT s.order_id)::text AS n FROM sagas s
                   JOIN parked_keys k ON k.message_key = s.order_id WHERE s.status <> 'COMPLETED'`,
              )
            ).rows[0]?.n,
          )
        : 0
    return { byStatus, bySteps, keysParked }
  })

  const deadLetters = async (): Promise<Overview['deadLetters']> => {
    const present = await tables()
    const byReason = present.has('dead_letters')
      ? (
          await db.query<{ topic: string; group_id: string; reason: string; n: string }>(
            `SELECT topic, group_id, reason, count(*)::text AS n FROM dead_letters WHERE state = 'open'
              GROUP BY topic, group_id, reason ORDER BY count(*) DESC, topic LIMIT 100`,
          )
        ).rows.map((r) => ({ topic: r.topic, group: r.group_id, reason: r.reason, count: count(r.n) }))
      : []
    const parked =
      present.has('parked_keys') && present.has('parked_messages')
        ? (
            await db.query<{ topic: string; group_id: string; keys: string; messages: string }>(
              `SELECT k.topic, k.group_id, count(*)::text AS keys,
                      coalesce(sum((SELECT count(*) FROM parked_messages m
                                     WHERE m.group_id = k.group_id AND m.message_key = k.message_key)), 0)::text AS messages
                 FROM parked_keys k GROUP BY k.topic, k.group_id ORDER BY k.topic, k.group_id`,
            )
          ).rows.map((r) => ({ topic: r.topic, group: r.group_id, keys: count(r.keys), messages: count(r.messages) }))
        : []
    return {
      open: byReason.reduce((sum, r) => sum + r.count, 0),
      byReason,
      parkedKeys: parked.reduce((sum, r) => sum + r.keys, 0),
      parked,
    }
  }

  const outbox = async (): Promise<Overview['outbox']> => {
    const { rows } = await db.query<{ backlog: string; age: number | null }>(
      `SELECT count(*)::text AS backlog, (extract(epoch FROM now() - min(created_at)) * 1000)::float8 AS age
         FROM outbox WHERE published_at IS NULL`,
    )
    const backlog = count(rows[0]?.backlog)
    return { backlog, oldestAgeMs: backlog > 0 ? Math.max(0, Math.round(rows[0]?.age ?? 0)) : null }
  }

  const recent = async (): Promise<Overview['recent']> => {
    const present = await tables()
    if (!present.has('orders')) return []
    // The read model has the index on creation time; the orders table answers the current status.
    const source = present.has('order_read_model')
      ? 'SELECT id FROM order_read_model ORDER BY created_at DESC, id DESC LIMIT 12'
      : 'SELECT id FROM orders ORDER BY created_at DESC LIMIT 12'
    const { rows } = await db.query<{
      id: string
      status: string
      created_at: Date | string
      updated_at: Date | string
      saga_step: string | null
      saga_status: string | null
      parked: boolean
    }>(
      `SELECT o.id, o.status, o.created_at, o.updated_at,
              ${present.has('sagas') ? 's.step AS saga_step, s.status AS saga_status' : 'NULL AS saga_step, NULL AS saga_status'},
              ${present.has('parked_keys') ? 'EXISTS (SELECT 1 FROM parked_keys k WHERE k.message_key = o.id)' : 'false'} AS parked
         FROM (${source}) r JOIN orders o ON o.id = r.id
         ${present.has('sagas') ? 'LEFT JOIN sagas s ON s.order_id = o.id' : ''}
        ORDER BY o.created_at DESC, o.id DESC`,
    )
    return rows.map((r) => ({
      id: r.id,
      status: r.status,
      createdAt: iso(r.created_at),
      updatedAt: iso(r.updated_at),
      sagaStep: r.saga_step,
      sagaStatus: r.saga_status,
      parked: r.parked,
    }))
  }

  const lag = async (): Promise<Overview['lag']> => {
    try {
      const view = await options.topics.read()
      const partitions = view.groups.flatMap((g) => g.partitions.map((p) => ({ group: g.group, ...p })))
      return {
        total: view.groups.reduce((sum, g) => sum + g.lag, 0),
        groups: view.groups.map((g) => ({ group: g.group, lag: g.lag })),
        partitions,
      }
    } catch (error) {
      return { total: 0, groups: [], partitions: [], error: message(error) }
    }
  }

  const build = cachedFor(900, async (): Promise<Overview> => {
    const [lagView, dead, box, tallies, stuckView, latestOrders] = await Promise.all([
      lag(),
      deadLetters(),
      outbox(),
      counts(),
      stuck(),
      recent(),
    ])
    return {
      at: options.clock().toISOString(),
      transport: options.transport,
      rates: { latest: options.rates.latest() ?? null },
      lag: lagView,
      deadLetters: dead,
      outbox: box,
      orders: { total: tallies.byStatus.reduce((sum, s) => sum + s.count, 0), byStatus: tallies.byStatus },
      sagas: {
        bySteps: tallies.bySteps,
        parked: tallies.bySteps.filter((s) => s.status === 'PARKED').reduce((sum, s) => sum + s.count, 0),
        keysParked: tallies.keysParked,
      },
      stuck: stuckView,
      recent: latestOrders,
    }
  })

  return {
    async read(readOptions = {}) {
      options.rates.watch()
      const overview = await build()
      return readOptions.history
        ? { ...overview, rates: { ...overview.rates, history: options.rates.history() } }
        : overview
    },
  }
}
