import { toDecimal } from '../contracts/money.ts'
import type { SqlExecutor } from '../platform/sql/port.ts'
import { type DeadLetterCount, type DeadLetterSource, describeDeadLetters } from './dead-letters.ts'
import { type GroupLag, JOURNEY_GROUPS, type LagSource } from './lag.ts'

/**
 * The invariant auditor: what must hold of the order journey once things settle, checked against
 * the database with a handful of set-based queries (no per-order round trips), so it answers in
 * well under a second on 100k orders.
 *
 * 1. terminal-states: every order older than `stuckAfterMs` is DELIVERED or CANCELLED; the others
 *    are listed as stuck, with the step they wait at (the saga's step in orchestration, what the
 *    order's status waits for in choreography), their age and why it parked (a saga's reason, or a
 *    choreography journey's that gave up waiting for its dispatch or delivery).
 * 2. single-capture: no order's payment stream holds more than one PaymentProcessed (read from the
 *    event store, the source of truth, not from a table derived from it).
 * 3. money: over settled orders (DELIVERED or CANCELLED), captured − refunded equals the total of the
 *    delivered orders, order by order: a delivered order was paid its total, a cancelled one kept
 *    nothing. Orders still in flight are left out and counted.
 * 4. outbox: nothing is waiting in the outbox.
 * 5. consumer-lag: every consumer group of the journey has read everything (lag 0).
 * 6. dead-letters: no dead-letter topic holds a record (listed per source topic and reason). Each
 *    one is a message a consumer gave up on: an order it was about may be waiting for it.
 *
 * The auditor reads the tables of several services, so it runs where they share a database (one
 * process, or every process on one PostgreSQL); a table that does not exist counts as empty.
 */

export interface AuditOptions {
  /** Orders younger than this are not expected to be finished yet. */
  stuckAfterMs: number
  /** Where consumer lag is read; without one, the lag check is skipped. */
  lag?: LagSource
  /** Where open dead letters are counted; without one, the dead-letter check is skipped. */
  deadLetters?: DeadLetterSource
  now?: Date
  /** How many stuck orders and mismatches are listed (all are counted). */
  listLimit?: number
}

export type AuditCheckName = 'terminal-states' | 'single-capture' | 'money' | 'outbox' | 'consumer-lag' | 'dead-letters'

export interface AuditCheck {
  name: AuditCheckName
  ok: boolean
  summary: string
}

export interface StuckOrder {
  orderId: string
  status: string
  step: string
  sagaStatus: string | null
  ageMs: number
  parkedReason: string | null
}

export interface MoneyMismatch {
  orderId: string
  status: string
  total: number
  captured: number
  refunded: number
}

export interface AuditReport {
  ok: boolean
  checkedAt: string
  stuckAfterMs: number
  durationMs: number
  checks: AuditCheck[]
  orders: { total: number; delivered: number; cancelled: number; inFlight: number; stuck: number }
  stuck: StuckOrder[]
  multipleCaptures: { orderId: string; captures: number }[]
  /** Decimal amounts, over settled orders. */
  money: {
    captured: number
    refunded: number
    net: number
    deliveredTotal: number
    mismatches: MoneyMismatch[]
    mismatchCount: number
    /** Captured payments of orders still in flight (not part of the check). */
    inFlightCaptured: number
  }
  outbox: { pending: number; oldestAgeMs: number | null }
  /** Null when no lag source was given. */
  lag: GroupLag[] | null
  /** Open dead letters per source topic and reason; null when no dead-letter source was given. */
  deadLetters: DeadLetterCount[] | null
  sagasParked: number
}

/** What the order's status waits for, when no saga says (choreography). */
const WAITING_FOR: Record<string, string> = {
  PENDING: 'PAYMENT',
  CONFIRMED: 'DISPATCH',
  DISPATCHED: 'DELIVERY',
}

async function tablesPresent(db: SqlExecutor, names: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>(
    'SELECT n AS name FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL',
    [names],
  )
  return new Set(rows.map((r) => r.name))
}

const num = (value: string | number | null | undefined) => Number(value ?? 0)

const FUTURE_SKEW_MS = 60_000

export async function runAudit(db: SqlExecutor, options: AuditOptions): Promise<AuditReport> {
  const started = performance.now()
  const now = options.now ?? new Date()
  const limit = options.listLimit ?? 100
  const threshold = new Date(now.getTime() - options.stuckAfterMs).toISOString()
  // An order stamped more than a minute in the future was written by a clock running ahead: its age
  // cannot be known, so it counts as old enough to be checked (a clock step must not hide one).
  const future = new Date(now.getTime() + FUTURE_SKEW_MS).toISOString()
  const present = await tablesPresent(db, [
    'orders',
    'sagas',
    'payments',
    'es_events',
    'outbox',
    'order_journey_parked',
  ])
  const hasOrders = present.has('orders')
  const hasSagas = present.has('sagas')
  // Choreography's parked journeys count while the order is still at the step they name.
  const journeyParks = present.has('order_journey_parked')
    ? `LEFT JOIN order_journey_parked p ON p.order_id = o.id
         AND ((p.step = 'DISPATCH' AND o.status = 'CONFIRMED') OR (p.step = 'DELIVERY' AND o.status = 'DISPATCHED'))`
    : ''
  const parkedReason = [hasSagas ? 's.parked_reason' : '', journeyParks ? 'p.reason' : ''].filter(Boolean)

  // 1. Orders by state, and the stuck ones.
  const counts = hasOrders
    ? (
        await db.query<{ total: string; delivered: string; cancelled: string; stuck: string }>(
          `SELECT count(*)::text AS total,
                  count(*) FILTER (WHERE status = 'DELIVERED')::text AS delivered,
                  count(*) FILTER (WHERE status = 'CANCELLED')::text AS cancelled,
                  count(*) FILTER (WHERE status NOT IN ('DELIVERED', 'CANCELLED') AND (created_at < $1 OR created_at > $2))::text AS stuck
             FROM orders`,
          [threshold, future],
        )
      ).rows[0]
    : undefined
  const stuckRows = hasOrders
    ? (
        await db.query<{
          id: string
          status: string
          created_at: Date | string
          step: string | null
          saga_status: string | null
          parked_reason: string | null
        }>(
          `SELECT o.id, o.status, o.created_at, ${hasSagas ? 's.step, s.status AS saga_status' : 'NULL AS step, NULL AS saga_status'},
                  ${parkedReason.length > 0 ? `coalesce(${parkedReason.join(', ')})` : 'NULL'} AS parked_reason
             FROM orders o ${hasSagas ? 'LEFT JOIN sagas s ON s.order_id = o.id' : ''} ${journeyParks}
            WHERE o.status NOT IN ('DELIVERED', 'CANCELLED') AND (o.created_at < $1 OR o.created_at > $3)
            ORDER BY o.created_at LIMIT $2`,
          [threshold, limit, future],
        )
      ).rows
    : []
  const stuck: StuckOrder[] = stuckRows.map((r) => ({
    orderId: r.id,
    status: r.status,
    step: r.step ?? WAITING_FOR[r.status] ?? r.status,
    sagaStatus: r.saga_status,
    ageMs: now.getTime() - new Date(r.created_at).getTime(),
    parkedReason: r.parked_reason,
  }))

  // 2 and 3. One pass over the payment events: captures per order, amounts captured and refunded.
  const paymentsCte = `
    payment_facts AS MATERIALIZED (
      SELECT substr(stream_id, 9) AS order_id,
             count(*) FILTER (WHERE event_type = 'PaymentProcessed') AS captures,
             coalesce(sum((data->>'amount')::bigint) FILTER (WHERE event_type = 'PaymentProcessed'), 0) AS captured,
             coalesce(sum((data->>'amount')::bigint) FILTER (WHERE event_type = 'PaymentRefunded'), 0) AS refunded
        FROM es_events
       WHERE stream_type = 'payment' AND event_type IN ('PaymentProcessed', 'PaymentRefunded')
       GROUP BY stream_id)`
  const hasEvents = present.has('es_events')
  // One pass over the payment events (materialised once) answers the capture and the money checks.
  const moneyRow = hasEvents
    ? (
        await db.query<{
          captured: string
          refunded: string
          delivered_total: string
          mismatches: string
          in_flight_captured: string
          multiple: { order_id: string; captures: number }[] | string
        }>(
          hasOrders
            ? `WITH ${paymentsCte},
               settled AS (
                 SELECT o.id, o.status, (o.state->>'totalAmount')::bigint AS total,
                        coalesce(p.captured, 0) AS captured, coalesce(p.refunded, 0) AS refunded
                   FROM orders o LEFT JOIN payment_facts p ON p.order_id = o.id
                  WHERE o.status IN ('DELIVERED', 'CANCELLED'))
               SELECT coalesce(sum(captured), 0)::text AS captured,
                      coalesce(sum(refunded), 0)::text AS refunded,
                      coalesce(sum(total) FILTER (WHERE status = 'DELIVERED'), 0)::text AS delivered_total,
                      count(*) FILTER (WHERE captured - refunded <> CASE WHEN status = 'DELIVERED' THEN total ELSE 0 END)::text AS mismatches,
                      (SELECT coalesce(sum(p.captured - p.refunded), 0) FROM payment_facts p
                         JOIN orders o ON o.id = p.order_id WHERE o.status NOT IN ('DELIVERED', 'CANCELLED'))::text AS in_flight_captured,
                      (SELECT coalesce(json_agg(m), '[]'::json) FROM (
                         SELECT order_id, captures FROM payment_facts WHERE captures > 1 ORDER BY order_id LIMIT $1) m) AS multiple
                 FROM settled`
            : `WITH ${paymentsCte}
               SELECT '0' AS captured, '0' AS refunded, '0' AS delivered_total, '0' AS mismatches, '0' AS in_flight_captured,
                      (SELECT coalesce(json_agg(m), '[]'::json) FROM (
                         SELECT order_id, captures FROM payment_facts WHERE captures > 1 ORDER BY order_id LIMIT $1) m) AS multiple`,
          [limit],
        )
      ).rows[0]
    : undefined
  const multipleRaw = moneyRow?.multiple ?? []
  const multipleCaptures = (typeof multipleRaw === 'string' ? JSON.parse(multipleRaw) : multipleRaw).map(
    (r: { order_id: string; captures: number | string }) => ({ orderId: r.order_id, captures: num(r.captures) }),
  ) as { orderId: string; captures: number }[]
  const mismatches =
    moneyRow && num(moneyRow.mismatches) > 0
      ? (
          await db.query<{ id: string; status: string; total: string; captured: string; refunded: string }>(
            `WITH ${paymentsCte.replace('MATERIALIZED ', '')}
             SELECT o.id, o.status, (o.state->>'totalAmount')::bigint::text AS total,
                    coalesce(p.captured, 0)::text AS captured, coalesce(p.refunded, 0)::text AS refunded
               FROM orders o LEFT JOIN payment_facts p ON p.order_id = o.id
              WHERE o.status IN ('DELIVERED', 'CANCELLED')
                AND coalesce(p.captured, 0) - coalesce(p.refunded, 0)
                    <> CASE WHEN o.status = 'DELIVERED' THEN (o.state->>'totalAmount')::bigint ELSE 0 END
              ORDER BY o.id LIMIT $1`,
            [limit],
          )
        ).rows.map((r) => ({
          orderId: r.id,
          status: r.status,
          total: toDecimal(num(r.total)),
          captured: toDecimal(num(r.captured)),
          refunded: toDecimal(num(r.refunded)),
        }))
      : []

  // 4. The outbox.
  const outboxRow = present.has('outbox')
    ? (
        await db.query<{ pending: string; oldest: Date | string | null }>(
          'SELECT count(*)::text AS pending, min(created_at) AS oldest FROM outbox WHERE published_at IS NULL',
        )
      ).rows[0]
    : undefined

  // 5. Consumer lag.
  const lag = options.lag ? await options.lag(JOURNEY_GROUPS) : null
  // 6. Dead letters.
  const deadLetters = options.deadLetters ? await options.deadLetters() : null
  const deadLetterCount = (deadLetters ?? []).reduce((sum, d) => sum + d.count, 0)
  const sagasParked = hasSagas
    ? num((await db.query<{ n: string }>("SELECT count(*)::text AS n FROM sagas WHERE status = 'PARKED'")).rows[0]?.n)
    : 0

  const total = num(counts?.total)
  const delivered = num(counts?.delivered)
  const cancelled = num(counts?.cancelled)
  const stuckCount = num(counts?.stuck)
  const captured = num(moneyRow?.captured)
  const refunded = num(moneyRow?.refunded)
  const deliveredTotal = num(moneyRow?.delivered_total)
  const mismatchCount = num(moneyRow?.mismatches)
  const pending = num(outboxRow?.pending)
  const lagging = (lag ?? []).filter((l) => l.lag > 0)

  const checks: AuditCheck[] = [
    {
      name: 'terminal-states',
      ok: stuckCount === 0,
      summary:
        stuckCount === 0
          ? `every order older than ${options.stuckAfterMs} ms is DELIVERED or CANCELLED (${delivered} delivered, ${cancelled} cancelled, ${total - delivered - cancelled} in flight)`
          : `${stuckCount} order(s) older than ${options.stuckAfterMs} ms are not finished`,
    },
    {
      name: 'single-capture',
      ok: multipleCaptures.length === 0,
      summary:
        multipleCaptures.length === 0
          ? 'no order was captured more than once'
          : `${multipleCaptures.length} order(s) captured more than once`,
    },
    {
      name: 'money',
      ok: mismatchCount === 0 && captured - refunded === deliveredTotal,
      summary: `captured ${toDecimal(captured)} − refunded ${toDecimal(refunded)} = ${toDecimal(captured - refunded)}; delivered orders total ${toDecimal(deliveredTotal)}${mismatchCount > 0 ? `; ${mismatchCount} order(s) do not add up` : ''}`,
    },
    {
      name: 'outbox',
      ok: pending === 0,
      summary: pending === 0 ? 'the outbox is drained' : `${pending} message(s) wait in the outbox`,
    },
    {
      name: 'consumer-lag',
      ok: lagging.length === 0,
      summary:
        lag === null
          ? 'not checked (no lag source)'
          : lagging.length === 0
            ? `every consumer group has read everything (${new Set(lag.map((l) => l.group)).size} groups)`
            : lagging.map((l) => `${l.group} is ${l.lag} behind on ${l.topic}`).join('; '),
    },
    {
      name: 'dead-letters',
      ok: deadLetterCount === 0,
      summary:
        deadLetters === null
          ? 'not checked (no dead-letter source)'
          : deadLetterCount === 0
            ? 'no dead letters'
            : `${deadLetterCount} dead letter(s) open: ${describeDeadLetters(deadLetters)}`,
    },
  ]

  return {
    ok: checks.every((c) => c.ok),
    checkedAt: now.toISOString(),
    stuckAfterMs: options.stuckAfterMs,
    durationMs: Math.round(performance.now() - started),
    checks,
    orders: { total, delivered, cancelled, inFlight: total - delivered - cancelled, stuck: stuckCount },
    stuck,
    multipleCaptures,
    money: {
      captured: toDecimal(captured),
      refunded: toDecimal(refunded),
      net: toDecimal(captured - refunded),
      deliveredTotal: toDecimal(deliveredTotal),
      mismatches,
      mismatchCount,
      inFlightCaptured: toDecimal(num(moneyRow?.in_flight_captured)),
    },
    outbox: {
      pending,
      oldestAgeMs: outboxRow?.oldest ? now.getTime() - new Date(outboxRow.oldest).getTime() : null,
    },
    lag,
    deadLetters,
    sagasParked,
  }
}

/** The report as a table for people (`npm run orderflow -- audit`, `GET /api/audit?format=table`). */
export function formatAuditReport(report: AuditReport): string {
  const lines: string[] = []
  lines.push(
    `orderflow audit at ${report.checkedAt} (${report.durationMs} ms): ${report.ok ? 'CLEAN' : 'PROBLEMS FOUND'}`,
  )
  lines.push('')
  const width = Math.max(...report.checks.map((c) => c.name.length))
  for (const check of report.checks) {
    lines.push(`  ${check.ok ? 'ok  ' : 'FAIL'}  ${check.name.padEnd(width)}  ${check.summary}`)
  }
  if (report.stuck.length > 0) {
    lines.push('', `stuck orders (${report.orders.stuck}, oldest first):`)
    lines.push(`  ${'order'.padEnd(44)} ${'status'.padEnd(10)} ${'step'.padEnd(15)} ${'age'.padStart(10)}  saga`)
    for (const s of report.stuck) {
      const saga = s.sagaStatus ? `${s.sagaStatus}${s.parkedReason ? `: ${s.parkedReason}` : ''}` : '-'
      lines.push(
        `  ${s.orderId.padEnd(44)} ${s.status.padEnd(10)} ${s.step.padEnd(15)} ${formatAge(s.ageMs).padStart(10)}  ${saga}`,
      )
    }
  }
  if (report.multipleCaptures.length > 0) {
    lines.push('', 'orders captured more than once:')
    for (const m of report.multipleCaptures) lines.push(`  ${m.orderId}  ${m.captures} captures`)
  }
  if (report.money.mismatches.length > 0) {
    lines.push('', 'orders whose money does not add up:')
    for (const m of report.money.mismatches) {
      lines.push(`  ${m.orderId}  ${m.status}  total ${m.total}  captured ${m.captured}  refunded ${m.refunded}`)
    }
  }
  if (report.lag?.some((l) => l.lag > 0)) {
    lines.push('', 'consumer lag:')
    for (const l of (report.lag ?? []).filter((x) => x.lag > 0))
      lines.push(`  ${l.group.padEnd(28)} ${l.topic.padEnd(20)} ${l.lag}`)
  }
  if (report.deadLetters?.length) {
    lines.push('', 'open dead letters (the orders they are about: GET /getAllOrderIdsFromTopic?topicName=<topic>-dlq):')
    for (const d of report.deadLetters) lines.push(`  ${`${d.topic}-dlq`.padEnd(28)} ${d.reason.padEnd(20)} ${d.count}`)
  }
  if (report.sagasParked > 0) lines.push('', `${report.sagasParked} saga(s) parked: GET /api/sagas?status=PARKED`)
  return `${lines.join('\n')}\n`
}

function formatAge(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
  return `${(ms / 3_600_000).toFixed(1)} h`
}
