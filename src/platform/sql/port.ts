/**
 * The SQL port. Everything the platform stores (event store, outbox, inbox, embedded log) speaks
 * PostgreSQL's dialect through this interface, so the same statements run on PGlite (embedded
 * default) and on a PostgreSQL server (production).
 */

export interface QueryResult<Row> {
  rows: Row[]
  rowCount: number
}

export interface SqlExecutor {
  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<Row>>
  /** Runs several statements separated by semicolons, without parameters (schema migrations). */
  exec(text: string): Promise<void>
}

export interface SqlDatabase extends SqlExecutor {
  readonly dialect: 'pglite' | 'postgres'
  /**
   * How many transactions run at once before the next ones wait and group (`batchScope`'s group
   * commit), for writers that can fold a group into fewer statements (the command handler).
   */
  readonly grouping?: { maxInFlight: number; maxSize: number }
  /** Runs `work` in one transaction: committed if it resolves, rolled back if it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>
  /**
   * Where the database can tell other processes (PostgreSQL's LISTEN/NOTIFY): listens on `channel`
   * on a connection of its own, calling `onNotification` with each notification's payload, and
   * once more without one after a lost connection is back (what was sent meanwhile is lost).
   * Resolves, once listening, with a function that stops. Absent where one process is all there is.
   */
  listen?(
    channel: string,
    onNotification: (payload: string | undefined) => void,
    onError?: (error: Error) => void,
  ): Promise<() => Promise<void>>
  close(): Promise<void>
}

/**
 * One table's part of a write, to run as a statement of its own or as one step (`WITH name AS
 * (…)`) of a statement that writes several tables in one round trip: its SQL, given the number of
 * its first parameter and a condition every row it writes must meet (`true`, or `EXISTS (SELECT 1
 * FROM handled)` to write only when the inbox took the message), and its parameters.
 */
export interface SqlStep {
  sql(first: number, when: string): string
  params: unknown[]
}
