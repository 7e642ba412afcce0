import { startPostgres } from '../../scripts/faults/postgres.ts'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { openPostgres } from '../../src/platform/sql/postgres.ts'

/**
 * A PostgreSQL server of the test's own (the fault suite's, scripts/faults/postgres.ts) with
 * `pg_stat_statements` loaded, so that a test can read what PostgreSQL itself counted: how many
 * statements (round trips) and transactions a piece of work cost. The shared server cannot load it
 * (it must be in `shared_preload_libraries` at start-up). Utility statements are counted too
 * (`track_utility`), so BEGIN and COMMIT are.
 */
export interface StatsPostgres {
  db: SqlDatabase
  /** Forgets what was counted so far. */
  reset(): Promise<void>
  /**
   * What PostgreSQL counted since the last reset, in this database: statements executed (each one
   * round trip, BEGIN and COMMIT included), transactions begun, and the statements by text.
   */
  counted(): Promise<{ statements: number; transactions: number; byStatement: { query: string; calls: number }[] }>
  stop(): Promise<void>
}

export async function startStatsPostgres(): Promise<StatsPostgres> {
  const server = await startPostgres({
    settings: ['shared_preload_libraries=pg_stat_statements', 'pg_stat_statements.track_utility=on'],
  })
  let admin: SqlDatabase | undefined
  let db: SqlDatabase | undefined
  try {
    await server.createDatabase('counted')
    admin = openPostgres({ connectionString: server.url('postgres'), max: 1 })
    await admin.exec('CREATE EXTENSION pg_stat_statements')
    db = openPostgres({ connectionString: server.url('counted') })
  } catch (error) {
    await admin?.close().catch(() => {})
    await server.destroy()
    throw error
  }
  const statsOf = admin
  return {
    db,
    async reset() {
      await statsOf.query('SELECT pg_stat_statements_reset()')
    },
    async counted() {
      const { rows } = await statsOf.query<{ query: string; calls: string }>(
        `SELECT query, calls::text AS calls FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'counted') ORDER BY calls DESC, query`,
      )
      const byStatement = rows.map((row) => ({
        query: row.query.replace(/\s+/g, ' ').slice(0, 100),
        calls: Number(row.calls),
      }))
      const callsOf = (pattern: RegExp) =>
        byStatement.filter((row) => pattern.test(row.query)).reduce((sum, row) => sum + row.calls, 0)
      return {
        statements: byStatement.reduce((sum, row) => sum + row.calls, 0),
        transactions: callsOf(/^BEGIN\b/i),
        byStatement,
      }
    },
    async stop() {
      await db?.close().catch(() => {})
      await statsOf.close().catch(() => {})
      await server.destroy()
    },
  }
}
