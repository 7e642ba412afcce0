import { createHash } from 'node:crypto'
import pg from 'pg'
import type { QueryResult, SqlDatabase, SqlExecutor } from './port.ts'

export interface PostgresOptions {
  connectionString: string
  /** Every connection of the pool uses this schema first (tests give each file its own). */
  schema?: string
  max?: number
  onPoolError?: (error: Error) => void
}

/** A PostgreSQL server through a `pg` pool. */
export function openPostgres(options: PostgresOptions): SqlDatabase {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: 5_000,
    ...(options.schema ? { options: `-c search_path=${quoteIdentifier(options.schema)},public` } : {}),
  })
  // An idle client losing its connection must not crash the process; the next query reports it.
  pool.on('error', (error) => options.onPoolError?.(error))
  // Nor a client between owners: pg-pool drops its idle listener when it hands a client to a
  // waiting connect(), and an error the server sent in that moment (57P01 on a database restart)
  // would be emitted with no listener at all, an uncaught exception (brianc/node-postgres#2762).
  // Every client keeps one listener for its whole life; the query or transaction in flight still
  // fails with the error, and a broken client is not reused.
  pool.on('connect', (client) => {
    client.on('error', (error) => options.onPoolError?.(error))
  })

  const executor = (target: pg.Pool | pg.PoolClient): SqlExecutor => ({
    async query<Row>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
      const name = params && params.length > 0 ? preparedName(text) : undefined
      const result = await (name ? target.query({ name, text, values: params }) : target.query(text, params))
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length }
    },
    async exec(text: string) {
      await target.query(text)
    },
  })

  return {
    dialect: 'postgres',
    ...executor(pool),
    async transaction(work) {
      const client = await pool.connect()
      // pg-pool drops its own 'error' listener while a client is checked out: without this one, a
      // connection lost mid-transaction is an uncaught exception that takes the process down.
      let lost: Error | undefined
      const onError = (error: Error) => {
        lost = error
      }
      client.on('error', onError)
      try {
        await client.query('BEGIN')
        const result = await work(executor(client))
        await client.query('COMMIT')
        return result
      } catch (error) {
        if (!lost) await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.off('error', onError)
        // A broken client is destroyed rather than returned to the pool.
        client.release(lost ?? false)
      }
    },
    close: () => pool.end(),
  }
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/**
 * Statements with parameters run as named prepared statements: a connection parses and plans one
 * the first time it runs it, and afterwards only its parameters travel. On the hot path that is
 * most of the bytes a statement sends (a command's append is a kilobyte of SQL), and bytes written
 * to the socket are where a busy process spends its time (docs/benchmarks.md). The names are a
 * hash of the text; past `MAX_PREPARED` distinct texts (SQL built with values in it would be one per
 * call) new texts run unnamed, so no connection holds an unbounded number of statements.
 */
const MAX_PREPARED = 1000
const preparedNames = new Map<string, string>()

function preparedName(text: string): string | undefined {
  const known = preparedNames.get(text)
  if (known !== undefined || preparedNames.size >= MAX_PREPARED) return known
  const name = `of_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`
  preparedNames.set(text, name)
  return name
}
