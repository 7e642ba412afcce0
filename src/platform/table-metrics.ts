import { Gauge, type Registry } from 'prom-client'
import type { SqlExecutor } from './sql/port.ts'

/**
 * Gauges read from the database when Prometheus scrapes (not sampled): what the dead-letter
 * console and per-key parking hold (migration 006). They count every process's rows, so each
 * process of a database reports the same figures: aggregate them across instances with `max`, not
 * `sum`. A table that does not exist (the platform's migrations have not run) or a database that
 * is away leaves the gauge empty: `/metrics` still answers, and `/health/ready` names the database.
 */
export function registerTableGauges(registry: Registry, db: SqlExecutor): void {
  tableGauge(registry, db, {
    name: 'orderflow_dead_letters_open',
    help: 'Dead letters not yet redriven or discarded, by source topic, consumer group and reason (all processes: read from the database)',
    labelNames: ['topic', 'group', 'reason'],
    sql: `SELECT topic, group_id AS "group", reason, count(*)::float8 AS value
            FROM dead_letters WHERE state = 'open' GROUP BY topic, group_id, reason`,
  })
  tableGauge(registry, db, {
    name: 'orderflow_parked_keys',
    help: 'Keys parked behind a dead letter, by consumer group and topic (all processes: read from the database)',
    labelNames: ['group', 'topic'],
    sql: `SELECT group_id AS "group", topic, count(*)::float8 AS value FROM parked_keys GROUP BY group_id, topic`,
  })
  tableGauge(registry, db, {
    name: 'orderflow_parked_messages',
    help: 'Messages waiting behind a parked key, by consumer group and topic (all processes: read from the database)',
    labelNames: ['group', 'topic'],
    sql: `SELECT group_id AS "group", topic, count(*)::float8 AS value FROM parked_messages GROUP BY group_id, topic`,
  })
}

/**
 * A gauge whose series are the rows of `sql` (each row: the label values and `value`), read at
 * scrape time. Registered once per registry: several apps of one process (tests) share it.
 */
export function tableGauge<Label extends string>(
  registry: Registry,
  db: SqlExecutor,
  options: { name: string; help: string; labelNames: readonly Label[]; sql: string },
): void {
  if (registry.getSingleMetric(options.name)) return
  new Gauge<Label>({
    name: options.name,
    help: options.help,
    labelNames: options.labelNames,
    registers: [registry],
    async collect() {
      let rows: (Record<Label, string | null> & { value: number })[]
      try {
        rows = (await db.query<Record<Label, string | null> & { value: number }>(options.sql)).rows
      } catch {
        // No such table yet, or the database is away: no figures rather than stale ones.
        this.reset()
        return
      }
      this.reset()
      for (const row of rows) {
        const labels = Object.fromEntries(options.labelNames.map((label) => [label, row[label] ?? ''])) as Record<
          Label,
          string
        >
        this.set(labels, Number(row.value))
      }
    },
  })
}
