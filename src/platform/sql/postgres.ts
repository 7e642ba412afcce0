import pg from 'pg'
import type { QueryResult, SqlDatabase, SqlExecutor } from './port.ts'
import { preparedName } from './prepared-name.ts'

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
    // Queries go out without waiting for the answer to the one before (node-postgres' pipelining):
    // a transaction's BEGIN travels with its first statement (`transaction` below). Everything else
    // awaits each statement before the next, so nothing else changes.
    pipeline: true,
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
      const { tx, begun } = beginningWithFirstStatement(client, executor(client))
      try {
        const result = await work(tx)
        if (begun()) await client.query('COMMIT')
        return result
      } catch (error) {
        if (!lost && begun()) await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.off('error', onError)
        // A broken client is destroyed rather than returned to the pool.
        client.release(lost ?? false)
      }
    },
    listen: (channel, onNotification, onError) => listen(options, channel, onNotification, onError),
    close: () => pool.end(),
  }
}

const RELISTEN_MIN_MS = 100
const RELISTEN_MAX_MS = 5_000

/**
 * LISTEN on a connection of its own (a pooled one would be handed to others). A lost connection is
 * opened again, with backoff, and the listener called once it listens again: notifications sent in
 * between are lost, and whoever listens must look for what they announced.
 */
async function listen(
  options: PostgresOptions,
  channel: string,
  onNotification: (payload: string | undefined) => void,
  onError: (error: Error) => void = () => {},
): Promise<() => Promise<void>> {
  let stopped = false
  let client: pg.Client | undefined
  let retry: NodeJS.Timeout | undefined
  let failures = 0
  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString: options.connectionString })
    client = next
    next.on('notification', (message) => {
      if (message.channel === channel) onNotification(message.payload || undefined)
    })
    next.on('error', (error) => {
      onError(error)
      reconnect(next)
    })
    next.on('end', () => reconnect(next))
    try {
      await next.connect()
      await next.query(`LISTEN ${quoteIdentifier(channel)}`)
    } catch (error) {
      onError(error as Error)
      reconnect(next)
      throw error
    }
    failures = 0
  }
  // Once per lost client (its 'error' and 'end' both come): the next one after a backoff.
  const reconnect = (lost: pg.Client) => {
    if (stopped || client !== lost || retry) return
    client = undefined
    lost.end().catch(() => {})
    failures++
    retry = setTimeout(
      () => {
        retry = undefined
        connect().then(
          () => onNotification(undefined),
          () => {},
        )
      },
      Math.min(RELISTEN_MAX_MS, RELISTEN_MIN_MS * 2 ** (failures - 1)),
    )
  }
  try {
    await connect()
  } catch (error) {
    stopped = true
    clearTimeout(retry)
    throw error
  }
  return async () => {
    stopped = true
    clearTimeout(retry)
    await client?.end().catch(() => {})
  }
}

/**
 * A transaction's executor that sends BEGIN with the transaction's first statement, in one write
 * and without waiting for BEGIN's answer: one round trip fewer per transaction (a consumer's hop,
 * an HTTP command), and a transaction that runs no statement sends nothing at all. The server runs
 * what it receives in order, so the statement runs inside the transaction BEGIN opened; BEGIN itself
 * cannot fail on a live connection (on a dead one, the statement fails too).
 */
function beginningWithFirstStatement(
  client: pg.PoolClient,
  plain: SqlExecutor,
): { tx: SqlExecutor; begun: () => boolean } {
  let begun = false
  const tx: SqlExecutor = {
    async query<Row>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
      if (begun) return plain.query<Row>(text, params)
      begun = true
      // Corked, both go out in one write (each query corks its own messages too; nested corks
      // count), and so does any statement sent before this turn of the event loop ends: a consumer
      // batch asks whether its keys are parked and claims its messages in one write (the claim
      // follows the question after a few resolved promises, which run before a nextTick callback
      // queued from a promise's continuation).
      const socket = client.connection.stream as { cork?(): void; uncork?(): void }
      socket.cork?.()
      let began: Promise<unknown>
      let first: Promise<QueryResult<Row>>
      try {
        began = client.query('BEGIN')
        first = plain.query<Row>(text, params)
      } finally {
        process.nextTick(() => socket.uncork?.())
      }
      first.catch(() => {})
      await began
      return first
    },
    async exec(text: string) {
      // Several statements in one text (a migration): BEGIN on its own first.
      if (!begun) {
        begun = true
        await client.query('BEGIN')
      }
      await plain.exec(text)
    },
  }
  return { tx, begun: () => begun }
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
