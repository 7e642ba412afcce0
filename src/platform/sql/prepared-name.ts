import { createHash } from 'node:crypto'

/**
 * Statements with parameters run as named prepared statements, on PostgreSQL (sql/postgres.ts) and
 * on PGlite (sql/pglite.ts): a connection parses and plans one the first time it runs it, and
 * afterwards only its parameters travel. On the hot path that is most of the bytes a statement
 * sends (a command's append is a kilobyte of SQL), and bytes written to the socket are where a busy
 * process spends its time; on PGlite, parsing and planning are most of a statement's cost
 * (docs/benchmarks.md). The names are a hash of the text; past `MAX_PREPARED` distinct texts (SQL
 * built with values in it would be one per call) new texts run unnamed, so no connection holds an
 * unbounded number of statements.
 */
const MAX_PREPARED = 1000
const preparedNames = new Map<string, string>()

/** The statement's name, or undefined when it runs unnamed (past `MAX_PREPARED` texts). */
export function preparedName(text: string): string | undefined {
  const known = preparedNames.get(text)
  if (known !== undefined || preparedNames.size >= MAX_PREPARED) return known
  const name = `of_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`
  preparedNames.set(text, name)
  return name
}
