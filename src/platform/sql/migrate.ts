import type { SqlDatabase, SqlExecutor } from './port.ts'

const MIGRATION_LOCK = 0x6f66_6d69_67 // "ofmig"

/**
 * Runs idempotent schema statements under a database-wide lock, so that several processes starting
 * at once against one PostgreSQL do not race on `CREATE TABLE IF NOT EXISTS`.
 */
export async function migrate(db: SqlDatabase, steps: Array<(tx: SqlExecutor) => Promise<void>>): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    for (const step of steps) await step(tx)
  })
}
