import type { Metrics } from '../platform/metrics.ts'
import type { SqlExecutor } from '../platform/sql/port.ts'

/**
 * Rates for the overview's charts, sampled once a second while someone watches: orders and events
 * from the event store (what every process of the database wrote), messages published, consumed and
 * dead-lettered per topic from this process's own metrics registry (prom-client counters). No
 * Prometheus is needed; the counters are read in memory.
 */

export interface RatePoint {
  /** Unix time in seconds. */
  t: number
  orders: number
  events: number
  published: Record<string, number>
  consumed: Record<string, number>
  deadLettered: number
}

interface Totals {
  /** Unix time in milliseconds, for the chart. */
  at: number
  /** The monotonic clock's reading (`performance.now()`), for the interval between two samples. */
  tick: number
  position: bigint
  published: Record<string, number>
  consumed: Record<string, number>
  deadLettered: number
}

/** Five minutes at one point a second. */
const HISTORY = 300
const TICK_MS = 1_000
/** How long a look at the overview keeps the sampler going. */
const WATCH_MS = 30_000

export interface RateSampler {
  /** Keeps sampling for a while (each request and each open stream calls it). */
  watch(): void
  history(): RatePoint[]
  latest(): RatePoint | undefined
  /** Called after each sample, with the new point. */
  onSample(listener: (point: RatePoint) => void): () => void
  stop(): void
}

async function sumByTopic(counter: Metrics['published'] | Metrics['consumed']): Promise<Record<string, number>> {
  const sums: Record<string, number> = {}
  for (const { value, labels } of (await counter.get()).values) {
    const topic = String(labels.topic ?? '')
    sums[topic] = (sums[topic] ?? 0) + value
  }
  return sums
}

const perSecond = (now: Record<string, number>, before: Record<string, number>, seconds: number) =>
  Object.fromEntries(
    Object.entries(now).map(([topic, value]) => [topic, round(Math.max(0, value - (before[topic] ?? 0)) / seconds)]),
  )

const round = (n: number) => Math.round(n * 100) / 100

export function startRateSampler(db: SqlExecutor, metrics: Metrics): RateSampler {
  const points: RatePoint[] = []
  const listeners = new Set<(point: RatePoint) => void>()
  let previous: Totals | undefined
  let watchedUntil = 0
  let timer: NodeJS.Timeout | undefined
  let sampling = false

  const totals = async (since: bigint | undefined): Promise<Totals & { orders: number; events: number }> => {
    const { rows } = await db.query<{ orders: string; events: string; last: string | null }>(
      since === undefined
        ? "SELECT '0' AS orders, '0' AS events, coalesce(max(global_position), 0)::text AS last FROM es_events"
        : `SELECT count(*) FILTER (WHERE event_type = 'OrderCreated')::text AS orders, count(*)::text AS events,
                  max(global_position)::text AS last
             FROM es_events WHERE global_position > $1`,
      since === undefined ? [] : [since.toString()],
    )
    const row = rows[0]
    const deadLettered = (await metrics.deadLettered.get()).values.reduce((sum, v) => sum + v.value, 0)
    return {
      at: Date.now(),
      tick: performance.now(),
      position: row?.last ? BigInt(row.last) : (since ?? 0n),
      orders: Number(row?.orders ?? 0),
      events: Number(row?.events ?? 0),
      published: await sumByTopic(metrics.published),
      consumed: await sumByTopic(metrics.consumed),
      deadLettered,
    }
  }

  const tick = async () => {
    if (sampling) return
    sampling = true
    try {
      // After a pause (nobody watched), start again from a fresh reading rather than smear the gap.
      if (previous && performance.now() - previous.tick > 3 * TICK_MS) previous = undefined
      const now = await totals(previous?.position)
      if (previous) {
        const seconds = Math.max(0.001, (now.tick - previous.tick) / 1000)
        const point: RatePoint = {
          t: Math.round(now.at / 1000),
          orders: round(now.orders / seconds),
          events: round(now.events / seconds),
          published: perSecond(now.published, previous.published, seconds),
          consumed: perSecond(now.consumed, previous.consumed, seconds),
          deadLettered: round(Math.max(0, now.deadLettered - previous.deadLettered) / seconds),
        }
        points.push(point)
        if (points.length > HISTORY) points.splice(0, points.length - HISTORY)
        for (const listener of listeners) listener(point)
      }
      previous = now
    } catch {
      // The database may be briefly away; the next tick tries again and the chart shows a gap.
      previous = undefined
    } finally {
      sampling = false
    }
    if (performance.now() > watchedUntil && listeners.size === 0) {
      clearInterval(timer)
      timer = undefined
    }
  }

  return {
    watch() {
      watchedUntil = performance.now() + WATCH_MS
      if (timer) return
      timer = setInterval(() => void tick(), TICK_MS)
      timer.unref()
      void tick()
    },
    history: () => [...points],
    latest: () => points.at(-1),
    onSample(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    stop() {
      clearInterval(timer)
      timer = undefined
      listeners.clear()
    },
  }
}
