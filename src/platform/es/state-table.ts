import type { SqlExecutor } from '../sql/port.ts'
import type { StateStore } from './command-handler.ts'

/**
 * Where a service keeps the current state of its streams, declared instead of written: a table with
 * `id`, `version`, a jsonb `state` and `updated_at`, plus the columns a service queries by (status,
 * customer, amounts), each computed from the state. The platform derives every statement from the
 * declaration: a load, a save, and the same for a whole consumer batch in one statement each
 * (`loadMany`, `saveMany`), which a hand-written store could not give it.
 *
 * ```ts
 * const shipments = stateTable<DispatchState>({
 *   table: 'shipments',
 *   initialState: () => null,
 *   columns: { order_id: { type: 'text', of: (s) => s.orderId }, status: { type: 'text', of: statusOf } },
 * })
 * ```
 *
 * Rows are written as one jsonb array of records (`jsonb_to_recordset`): one parameter for any
 * number of rows, and the state goes in as the object it is, not as an escaped string.
 */

/** The column types a state column may have (what `jsonb_to_recordset` turns the value into). */
export type StateColumnType = 'text' | 'integer' | 'bigint' | 'numeric' | 'boolean' | 'timestamptz' | 'jsonb'

export interface StateColumn<Present> {
  type: StateColumnType
  /** The column's value for a state (null or undefined write NULL). */
  of(state: Present, streamId: string): unknown
  /**
   * On update: `set` (the default) writes the new value, `keep` leaves the value the row was
   * inserted with, `coalesce` keeps the row's value when the new one is null.
   */
  onUpdate?: 'set' | 'keep' | 'coalesce'
}

export interface StateTableDefinition<State> {
  table: string
  initialState: () => State
  /** Columns besides `id`, `version`, `state` and `updated_at` (that one too, when the state says when). */
  columns?: Readonly<Record<string, StateColumn<NonNullable<State>>>>
  /**
   * Whether a load asked to lock takes the row lock (`FOR UPDATE`, the default): stores whose
   * commands may race and be decided again (a payment decided by two instances) say false.
   */
  locks?: boolean
}

const PLAIN = /^[a-z_][a-z0-9_]*$/

export function stateTable<State>(definition: StateTableDefinition<State>): Required<StateStore<State>> {
  const { table, initialState } = definition
  const columns = Object.entries(definition.columns ?? {})
  for (const name of [table, ...columns.map(([name]) => name)]) {
    if (!PLAIN.test(name)) throw new Error(`not a plain table or column name: ${name}`)
  }
  for (const name of ['id', 'version', 'state']) {
    if (columns.some(([column]) => column === name)) throw new Error(`${table}: '${name}' is written by the platform`)
  }
  const locks = definition.locks ?? true
  const ownUpdatedAt = columns.some(([name]) => name === 'updated_at')

  const names = ['id', 'version', 'state', ...columns.map(([name]) => name), ...(ownUpdatedAt ? [] : ['updated_at'])]
  const recordType = [
    'id text',
    'version integer',
    'state jsonb',
    ...columns.map(([name, column]) => `${name} ${column.type}`),
  ].join(', ')
  const values = [
    'r.id',
    'r.version',
    'r.state',
    ...columns.map(([name]) => `r.${name}`),
    ...(ownUpdatedAt ? [] : ['now()']),
  ]
  const updates = [
    'version = EXCLUDED.version',
    'state = EXCLUDED.state',
    ...columns.flatMap(([name, column]) =>
      column.onUpdate === 'keep'
        ? []
        : column.onUpdate === 'coalesce'
          ? [`${name} = coalesce(EXCLUDED.${name}, ${table}.${name})`]
          : [`${name} = EXCLUDED.${name}`],
    ),
    ...(ownUpdatedAt ? [] : ['updated_at = EXCLUDED.updated_at']),
  ]
  const upsertOf = (first: number, when: string) => `INSERT INTO ${table} (${names.join(', ')})
    SELECT ${values.join(', ')} FROM jsonb_to_recordset($${first}::jsonb) AS r(${recordType})
     WHERE ${when}
    ON CONFLICT (id) DO UPDATE SET ${updates.join(', ')}`
  const upsert = upsertOf(1, 'true')
  /** One row per stream (an upsert may not touch a row twice): the last state given wins. */
  const lastRows = (rows: readonly { streamId: string; state: State; version: number }[]) => {
    const last = new Map<string, Record<string, unknown>>()
    for (const { streamId, state, version } of rows) last.set(streamId, record(streamId, state, version))
    return [...last.values()]
  }

  const record = (streamId: string, state: State, version: number) => {
    if (state === null || state === undefined) {
      throw new Error(`${table}: an event left stream ${streamId} without a state to save`)
    }
    const row: Record<string, unknown> = { id: streamId, version, state }
    for (const [name, column] of columns) row[name] = column.of(state as NonNullable<State>, streamId) ?? null
    return row
  }

  const loadMany: Required<StateStore<State>>['loadMany'] = async (tx, streamIds, options) => {
    const found = new Map<string, { state: State; version: number }>()
    if (streamIds.length === 0) return found
    // In id order, so that two batches locking overlapping rows take them in the same order.
    const { rows } = await tx.query<{ id: string; state: State; version: number }>(
      `SELECT id, state, version FROM ${table} WHERE id = ANY($1::text[]) ORDER BY id${
        options?.lock && locks ? ' FOR UPDATE' : ''
      }`,
      [[...new Set(streamIds)]],
    )
    for (const row of rows) found.set(row.id, { state: row.state, version: row.version })
    return found
  }

  /**
   * The inbox first, then the rows, in one statement: the rows are read in a lateral join that
   * names the inbox's answer (an aggregate, so every entry is in before any row is locked), so two
   * copies of a batch queue on the inbox keys and never hold row locks in opposite orders. Entries
   * and rows go in sorted order. The new entries come back once, on the first row.
   */
  const claimOf = (lock: boolean) => `WITH handled AS (
      INSERT INTO inbox (consumer, message_id)
      SELECT $1, m FROM unnest($2::text[]) AS m ORDER BY m
      ON CONFLICT (consumer, message_id) DO NOTHING
      RETURNING message_id
    ), fresh AS (
      SELECT coalesce(jsonb_agg(message_id), '[]'::jsonb) AS ids FROM handled
    )
    SELECT CASE WHEN row_number() OVER () = 1 THEN fresh.ids END AS fresh, s.id, s.state, s.version
      FROM fresh
      LEFT JOIN LATERAL (
        SELECT id, state, version FROM ${table}
         WHERE id = ANY($3::text[]) AND fresh.ids IS NOT NULL
         ORDER BY id${lock ? ' FOR UPDATE' : ''}
      ) AS s ON true`
  const claims = { locked: claimOf(locks), unlocked: claimOf(false) }

  return {
    async claimMany(tx, inbox, streamIds, options) {
      const { rows } = await tx.query<{ fresh: string[] | null; id: string | null; state: State; version: number }>(
        options?.lock ? claims.locked : claims.unlocked,
        [inbox.consumer, [...new Set(inbox.messageIds)], [...new Set(streamIds)]],
      )
      const states = new Map<string, { state: State; version: number }>()
      for (const row of rows) if (row.id !== null) states.set(row.id, { state: row.state, version: row.version })
      return { fresh: new Set(rows[0]?.fresh ?? []), states }
    },
    async load(tx: SqlExecutor, streamId: string, options?: { lock?: boolean }) {
      const { rows } = await tx.query<{ state: State; version: number }>(
        `SELECT state, version FROM ${table} WHERE id = $1${options?.lock && locks ? ' FOR UPDATE' : ''}`,
        [streamId],
      )
      const row = rows[0]
      return row ? { state: row.state, version: row.version } : { state: initialState(), version: 0 }
    },
    async save(tx, streamId, state, version) {
      await tx.query(upsert, [JSON.stringify([record(streamId, state, version)])])
    },
    loadMany,
    async saveMany(tx, rows) {
      if (rows.length === 0) return
      await tx.query(upsert, [JSON.stringify(lastRows(rows))])
    },
    saveStep: (rows) => ({ sql: upsertOf, params: [JSON.stringify(lastRows(rows))] }),
  }
}
