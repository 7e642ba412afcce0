import type { SqlDatabase, SqlExecutor } from '../../src/platform/sql/port.ts'

/** What a test watches on a database: each is called before the call it names goes through. */
export interface DatabaseWatch {
  /** A statement run on the database itself, outside any transaction. */
  query?(text: string, params: unknown[] | undefined): void
  /** A transaction begun on the database itself. */
  transaction?(): void
  /** A statement run inside one of its transactions. */
  inTransaction?(text: string, params: unknown[] | undefined): void
}

/**
 * `db` as it is, every call passed through, with `watch` told of the statements and transactions
 * that go through it: for tests that count what a piece of code asks of the database.
 */
export function watchedDatabase(db: SqlDatabase, watch: DatabaseWatch): SqlDatabase {
  const watchedTx = (tx: SqlExecutor): SqlExecutor =>
    watch.inTransaction
      ? {
          query: (text, params) => {
            watch.inTransaction?.(text, params)
            return tx.query(text, params)
          },
          exec: (text) => tx.exec(text),
        }
      : tx
  return {
    dialect: db.dialect,
    ...(db.grouping ? { grouping: db.grouping } : {}),
    ...(db.listen ? { listen: db.listen.bind(db) } : {}),
    query: (text, params) => {
      watch.query?.(text, params)
      return db.query(text, params)
    },
    exec: (text) => db.exec(text),
    close: () => db.close(),
    transaction: (work) => {
      watch.transaction?.()
      return db.transaction((tx) => work(watchedTx(tx)))
    },
  }
}
