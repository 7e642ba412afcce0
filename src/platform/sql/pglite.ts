import { PGlite, types } from '@electric-sql/pglite'
import type { QueryResult, SqlDatabase, SqlExecutor } from './port.ts'

/**
 * PGlite (PostgreSQL compiled to WASM) as the embedded database. `dataDir` undefined keeps the
 * database in memory (tests); a directory keeps it on disk across restarts (`npm start`).
 * 64-bit integers come back as strings, as they do from `pg`, so callers see one behaviour.
 */
export async function openPglite(
  dataDir?: string,
  options: {
    /**
     * Called when the database cannot go on: PostgreSQL could not write its write-ahead log (a full
     * or failing disk). On a server that is a PANIC and a restart; inside this process PGlite would
     * spin and never answer again, so the owner should stop the process (what is committed is safe
     * in the log) rather than hang.
     */
    onFatal?: (error: Error) => void
  } = {},
): Promise<SqlDatabase> {
  const db = await PGlite.create(dataDir ?? 'memory://', {
    parsers: { [types.INT8]: (value: string) => value },
  })
  const watch = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work()
    } catch (error) {
      if (options.onFatal && isLogWriteFailure(error)) options.onFatal(error as Error)
      throw error
    }
  }

  const executor = (target: Pick<PGlite, 'query' | 'exec'>, fair: boolean): SqlExecutor => ({
    async query<Row>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
      if (fair) await turn()
      const result = await watch(() => target.query<Row>(text, params))
      // PGlite counts only the rows a write touched (0 for a SELECT); `pg` counts the rows a SELECT
      // returned too, and the port means what `pg` means.
      return { rows: result.rows, rowCount: Math.max(result.affectedRows ?? 0, result.rows.length) }
    },
    async exec(text: string) {
      if (fair) await turn()
      await watch(() => target.exec(text))
    },
  })

  return {
    dialect: 'pglite',
    ...executor(db, true),
    async transaction(work) {
      await turn()
      return watch(() => db.transaction((tx) => work(executor(tx as unknown as Pick<PGlite, 'query' | 'exec'>, false))))
    },
    close: () => db.close(),
  }
}

/**
 * Lets the event loop turn between units of work (queries, and transactions outside one). PGlite
 * runs in this thread and answers on the microtask queue, so a chain of statements that always
 * finds the database ready never gives the event loop a turn: sockets are not read, timers do not
 * fire, and the HTTP server starves while consumers are busy. A unit of work that starts more than
 * `TURN_EVERY_MS` after the loop last turned here waits for one `setImmediate` first, so pending I/O
 * gets in at least that often; units in between do not wait, so a hop of a chain is not slowed by
 * every other task in the process. Statements inside a transaction never wait (the transaction
 * holds the database, and nothing else could run on it meanwhile).
 */
const TURN_EVERY_MS = 2
let turnedAt = performance.now()
const turn = async (): Promise<void> => {
  if (performance.now() - turnedAt < TURN_EVERY_MS) return
  await new Promise<void>((resolve) => setImmediate(resolve))
  turnedAt = performance.now()
}

/** PostgreSQL failed to write its write-ahead log ("could not write to log file", "could not fsync"): a PANIC. */
export function isLogWriteFailure(error: unknown): boolean {
  const message = (error as { message?: string } | undefined)?.message ?? ''
  return /could not (write to|fsync|extend) (log file|file "pg_wal)|PANIC/i.test(message)
}
