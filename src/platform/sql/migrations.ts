import { fileURLToPath } from 'node:url'
import Postgrator from 'postgrator'
import type { SqlDatabase, SqlExecutor } from './port.ts'

/**
 * Versioned schema migrations, with postgrator: each module keeps plain SQL files
 * (`001.do.baseline.sql`, `002.do.add-column.sql`, …) in its `migrations/` folder, and its applied
 * version in a table of its own (`schema_version_<module>`), so modules can be added to or left out
 * of a process independently.
 *
 * Every set runs in one transaction under a database-wide advisory lock: several processes starting
 * at once against one PostgreSQL apply each migration exactly once, and a failing migration leaves
 * the schema as it was. PGlite runs the same statements. Checksums of applied files are verified:
 * an applied migration that was edited afterwards stops start-up instead of drifting silently.
 */

const MIGRATION_LOCK = 0x6f66_6d69_67 // "ofmig"

export interface MigrationSet {
  /** The module the migrations belong to; names its version table. */
  module: string
  /** Folder of `NNN.do.description.sql` files (a path or a `file:` URL). */
  directory: string | URL
}

export interface AppliedMigration {
  module: string
  version: number
  name: string
}

export class MigrationError extends Error {
  readonly module: string
  constructor(module: string, message: string, cause: unknown) {
    super(`migrations of module '${module}' failed: ${message}`, { cause })
    this.name = 'MigrationError'
    this.module = module
  }
}

export const versionTable = (module: string): string => `schema_version_${module.replaceAll(/[^a-z0-9_]/g, '_')}`

export async function runMigrations(
  db: SqlDatabase,
  sets: MigrationSet[],
  onApplied?: (migration: AppliedMigration) => void,
): Promise<AppliedMigration[]> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    const { rows } = await tx.query<{ schema: string }>('SELECT current_schema() AS schema')
    const currentSchema = rows[0]?.schema ?? 'public'
    const applied: AppliedMigration[] = []
    for (const set of sets) {
      const directory = typeof set.directory === 'string' ? set.directory : fileURLToPath(set.directory)
      const migrator = new Postgrator({
        driver: 'pg',
        // Forward slashes: the pattern is a glob.
        migrationPattern: `${directory.replaceAll('\\', '/')}/*.sql`,
        // Schema-qualified rather than `currentSchema`, which would SET search_path on the connection.
        schemaTable: `${currentSchema}.${versionTable(set.module)}`,
        execQuery: (query: string) => runQuery(tx, query),
        execSqlScript: (script: string) => tx.exec(script),
      })
      try {
        const done = await migrator.migrate()
        for (const migration of done) {
          const entry = { module: set.module, version: migration.version, name: migration.name }
          applied.push(entry)
          onApplied?.(entry)
        }
      } catch (error) {
        throw new MigrationError(set.module, (error as Error).message, error)
      }
    }
    return applied
  })
}

async function runQuery(tx: SqlExecutor, query: string): Promise<{ rows: unknown[] }> {
  const result = await tx.query(query)
  return { rows: result.rows }
}

/** The folder of `migrations/` beside a module's `index.ts`: `migrationsBeside(import.meta.url)`. */
export const migrationsBeside = (moduleUrl: string): URL => new URL('./migrations/', moduleUrl)

/** The platform's own tables (event store, outbox, inbox, checkpoints, replay jobs, idempotency keys). */
export const platformMigrations = new URL('../migrations/', import.meta.url)

/** Brings the platform's own tables to their latest version. */
export function migratePlatform(db: SqlDatabase): Promise<AppliedMigration[]> {
  return runMigrations(db, [{ module: 'platform', directory: platformMigrations }])
}
