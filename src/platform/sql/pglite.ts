import { PGlite, parse, protocol, type Results, types } from '@electric-sql/pglite'
import type { QueryResult, SqlDatabase, SqlExecutor } from './port.ts'
import { preparedName } from './prepared-name.ts'

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

  const prepared = preparedStatements(db)
  const executor = (target: Pick<PGlite, 'query' | 'exec'>, fair: boolean): SqlExecutor => ({
    async query<Row>(text: string, params?: unknown[]): Promise<QueryResult<Row>> {
      if (fair) await turn()
      const name = params && params.length > 0 ? preparedName(text) : undefined
      const result = await watch(() =>
        name && params
          ? prepared.query<Row>(name, text, params, { inTransaction: !fair })
          : target.query<Row>(text, params),
      )
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
 * Statements with parameters run as named prepared statements, as they do on a server
 * (sql/prepared-name.ts): PGlite's `query` parses, analyses and plans its text every time, and on
 * the hot path that is most of a statement's cost (a decision's write, a kilobyte of SQL, took
 * 1.25 ms through `query` and 0.33 ms prepared, docs/benchmarks.md). Each statement is parsed once
 * in this database (Parse and Describe, for its parameter types); after that one call into PGlite
 * sends Bind, Describe, Execute and Sync together, with PGlite's own serializers and parsers, so
 * values go in and rows come out exactly as through `query`. The statements are PGlite's public
 * protocol API (`execProtocol`, `protocol.serialize`, `parse.parseResults`), run under the locks
 * `query` takes.
 */
function preparedStatements(db: PGlite) {
  const { serialize } = protocol
  /** The parameter types of each statement parsed in this database, by name. */
  const parsed = new Map<string, number[]>()
  const call = async (...messages: Uint8Array[]) => {
    const size = messages.reduce((n, m) => n + m.length, 0)
    const buffer = new Uint8Array(size)
    let at = 0
    for (const m of messages) {
      buffer.set(m, at)
      at += m.length
    }
    const { messages: answer } = await db.execProtocol(buffer, { throwOnError: false, syncToFs: false })
    const failed = answer.find((m) => m instanceof Error)
    if (failed) throw failed
    return answer
  }
  const typesOf = async (name: string, text: string) => {
    const cached = parsed.get(name)
    if (cached) return cached
    const described = await call(
      serialize.parse({ name, text }),
      serialize.describe({ type: 'S', name }),
      serialize.sync(),
    )
    const types = parse.parseDescribeStatementResults(described)
    parsed.set(name, types)
    return types
  }
  const run = async (name: string, text: string, params: unknown[]): Promise<Results> => {
    const types = await typesOf(name, text)
    const values = params.map((value, i) => {
      if (value === null || value === undefined) return null
      const serializer = db.serializers[types[i] ?? 0]
      return serializer ? serializer(value) : String(value)
    })
    const answer = await call(
      serialize.bind({ statement: name, values }),
      serialize.describe({ type: 'P' }),
      serialize.execute({}),
      serialize.sync(),
    )
    return parse.parseResults(answer, db.parsers)[0] as Results
  }
  return {
    async query<Row>(name: string, text: string, params: unknown[], { inTransaction }: { inTransaction: boolean }) {
      const once = async () => {
        await db._checkReady()
        try {
          return await run(name, text, params)
        } catch (error) {
          // A table changed under a statement prepared before it (DDL: "cached plan must not change
          // result type"): the statement is prepared again, and run again outside a transaction
          // (inside one, the failure aborted the transaction; its caller runs it again).
          if ((error as { code?: string }).code !== '0A000') throw error
          parsed.delete(name)
          await call(serialize.close({ type: 'S', name }), serialize.sync()).catch(() => {})
          if (inTransaction) throw error
          return run(name, text, params)
        }
      }
      // As `query` does: inside a transaction the transaction holds the database; outside one a
      // statement waits for any transaction to end, and what it wrote is synced to the data dir.
      const result = inTransaction
        ? await db._runExclusiveQuery(once)
        : await db._runExclusiveTransaction(() =>
            db._runExclusiveQuery(async () => {
              const done = await once()
              await db.syncToFs()
              return done
            }),
          )
      return result as Results<Row>
    },
  }
}

/**
 * Lets the event loop turn between units of work (queries, and transactions outside one). PGlite
 * runs in this thread and answers on the microtask queue, so a chain of statements that always
 * finds the database ready never gives the event loop a turn: sockets are not read, timers do not
 * fire, and the HTTP server starves while consumers are busy. A unit of work that starts more than
 * `TURN_EVERY_MS` after the loop last turned here waits for its turn first, so pending I/O gets in
 * at least that often; units in between do not wait, so a hop of a chain is not slowed by every
 * other task in the process. Statements inside a transaction never wait (the transaction holds the
 * database, and nothing else could run on it meanwhile).
 *
 * The waiting chains go on in turns of the event loop of at most `ROUND_MS` together, first come
 * first served: were each resumed by its own `setImmediate`, all of them would run in one turn of
 * the loop (every request and consumer of a busy process, tens of milliseconds), and the loop,
 * which accepts one new connection per turn, would accept about twenty a second: connections
 * would wait in the listen queue, overflow it, and time out or be reset at the client.
 */
const TURN_EVERY_MS = 2
const ROUND_MS = 4
let turnedAt = performance.now()
const waiting: Array<() => void> = []
let paced = false

/** Queues one round for the next check phase: one `setImmediate` per waiter, each resuming one while the round's time lasts. */
const pace = () => {
  paced = true
  const round = { startedAt: -1, steps: waiting.length }
  for (let i = 0; i < round.steps; i++) setImmediate(step, round)
}
const step = (round: { startedAt: number; steps: number }) => {
  const now = performance.now()
  if (round.startedAt < 0) round.startedAt = now
  if (now - round.startedAt < ROUND_MS) waiting.shift()?.()
  if (--round.steps === 0) {
    paced = false
    if (waiting.length > 0) pace()
  }
}
const turn = async (): Promise<void> => {
  if (performance.now() - turnedAt < TURN_EVERY_MS) return
  await new Promise<void>((resolve) => {
    waiting.push(resolve)
    if (!paced) pace()
  })
  turnedAt = performance.now()
}

/** PostgreSQL failed to write its write-ahead log ("could not write to log file", "could not fsync"): a PANIC. */
export function isLogWriteFailure(error: unknown): boolean {
  const message = (error as { message?: string } | undefined)?.message ?? ''
  return /could not (write to|fsync|extend) (log file|file "pg_wal)|PANIC/i.test(message)
}
