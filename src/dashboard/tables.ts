import type { SqlExecutor } from '../platform/sql/port.ts'

/**
 * The dashboard reads the tables of every module of its database: a table whose module does not
 * run here (it was never created) counts as empty rather than failing the view.
 */
export async function tablesPresent(db: SqlExecutor, names: readonly string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>(
    'SELECT n AS name FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL',
    [names],
  )
  return new Set(rows.map((r) => r.name))
}

/**
 * `read`, reused for `ttlMs`: however many people watch, the database and the brokers are asked
 * once per period. A failure is not kept, so the next call asks again.
 */
export function cachedFor<T>(ttlMs: number, read: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined
  return () => {
    const now = performance.now()
    if (!last || now - last.at > ttlMs) {
      const value = read()
      const entry = { at: now, value }
      last = entry
      value.catch(() => {
        if (last === entry) last = undefined
      })
    }
    return last.value
  }
}

export const count = (value: string | number | null | undefined): number => Number(value ?? 0)

export const iso = (value: Date | string | null | undefined): string | null =>
  value === null || value === undefined ? null : new Date(value).toISOString()
