import { PGlite, types } from '@electric-sql/pglite'
import type { QueryResult, SqlDatabase, SqlExecutor } from './port.ts'

/**
 * PGlite (PostgreSQL compiled to WASM) as the embedded database. `dataDir` undefined keeps the
 * database in memory (tests); a directory keeps it on disk across restarts (`npm start`).
 * 64-bit integers come back as strings, as they do from `pg`, so callers see one behaviour.
 */
export async function openPglite(dataDir?: string): Promise<SqlDatabase> {
  const db = await PGlite.create(dataDir ?? 'memory://', {
    parsers: { [types.INT8]: (value: string) => value },
  })

  const executor = (target: Pick<PGlite, 'query' | 'exec'>): SqlExecutor => ({
    async query<Row>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
      const result = await target.query<Row>(text, params)
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length }
    },
    async exec(text: string) {
      await target.exec(text)
    },
  })

  return {
    dialect: 'pglite',
    ...executor(db),
    transaction: (work) => db.transaction((tx) => work(executor(tx as unknown as Pick<PGlite, 'query' | 'exec'>))),
    close: () => db.close(),
  }
}
