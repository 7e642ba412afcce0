import { outboxInsert } from '../outbox/outbox.ts'
import { timerSteps } from './scheduler-batch.ts'
import type { StateColumn } from './state-table.ts'

/**
 * Where a workflow's instances live (`workflow-processor.ts`), and the two statements the processor
 * runs on it for any number of inputs: the claim (inbox entries, then the rows, locked) and the
 * write (rows, outbox messages, timers).
 */

/**
 * The table of a workflow's instances: `id` (text, primary key), `version` (integer), `state`
 * (jsonb) and `updated_at` (timestamptz, the decision's time) are the processor's; `columns` are
 * what operators and reports query, each computed from the state and the row id, as a service's
 * state table declares them (`state-table.ts`).
 */
export interface WorkflowStateTable<State> {
  table: string
  /** The row id of an instance (default: the instance id). */
  rowId?(instanceId: string): string
  columns?: Readonly<Record<string, StateColumn<State>>>
}

const PLAIN = /^[a-z_][a-z0-9_]*$/

/** The statements of a workflow's state table, derived from its description. */
export function workflowStateTable<State>(definition: WorkflowStateTable<State>) {
  const { table } = definition
  const columns = Object.entries(definition.columns ?? {})
  for (const name of [table, ...columns.map(([column]) => column)]) {
    if (!PLAIN.test(name)) throw new Error(`not a plain table or column name: ${name}`)
  }
  for (const [column] of columns) {
    if (['id', 'version', 'state', 'updated_at'].includes(column)) {
      throw new Error(`${table}: '${column}' is written by the workflow processor`)
    }
  }
  const names = ['id', 'version', 'state', 'updated_at', ...columns.map(([column]) => column)]
  const recordType = [
    'id text',
    'version integer',
    'state jsonb',
    'updated_at timestamptz',
    ...columns.map(([column, { type }]) => `${column} ${type}`),
  ].join(', ')
  const updates = [
    'version = EXCLUDED.version',
    'state = EXCLUDED.state',
    'updated_at = EXCLUDED.updated_at',
    ...columns.flatMap(([column, { onUpdate }]) =>
      onUpdate === 'keep'
        ? []
        : onUpdate === 'coalesce'
          ? [`${column} = coalesce(EXCLUDED.${column}, ${table}.${column})`]
          : [`${column} = EXCLUDED.${column}`],
    ),
  ]
  return {
    /**
     * The inbox comes first: the rows are read in a lateral join that names the inbox's answer (an
     * aggregate, so every entry is in before any row is locked), as when they were two statements,
     * so two copies of a batch queue on the inbox keys and never hold row locks in opposite orders.
     * Entries and rows go in sorted order, so overlapping batches take their locks in the same order.
     * Every row of the batch's instances is locked, those of duplicates too: they are few, and the
     * batch's transaction is short. The new entries come back once, on the first row.
     */
    claim: `WITH handled AS (
        INSERT INTO inbox (consumer, message_id)
        SELECT consumer, message_id FROM unnest($1::text[], $2::text[]) AS m(consumer, message_id)
         ORDER BY consumer, message_id
        ON CONFLICT (consumer, message_id) DO NOTHING
        RETURNING consumer, message_id
      ), fresh AS (
        SELECT coalesce(jsonb_agg(jsonb_build_array(consumer, message_id)), '[]'::jsonb) AS entries FROM handled
      )
      SELECT CASE WHEN row_number() OVER () = 1 THEN fresh.entries END AS fresh, s.id, s.state, s.version
        FROM fresh
        LEFT JOIN LATERAL (
          SELECT id, state, version FROM ${table}
           WHERE id = ANY($3::text[]) AND fresh.entries IS NOT NULL
           ORDER BY id FOR UPDATE
        ) AS s ON true`,
    write: `WITH saved AS (
        INSERT INTO ${table} (${names.join(', ')})
        SELECT ${names.map((column) => `r.${column}`).join(', ')} FROM jsonb_to_recordset($1::jsonb) AS r(${recordType})
        ON CONFLICT (id) DO UPDATE SET ${updates.join(', ')}
        RETURNING 1
      ), sent AS (${outboxInsert(2)}), ${timerSteps(6, 'sent')}
      SELECT count(*)::int AS sent FROM sent`,
    get: `SELECT state FROM ${table} WHERE id = $1`,
    record(rowId: string, state: State, version: number, now: string) {
      const row: Record<string, unknown> = { id: rowId, version, state, updated_at: now }
      for (const [column, { of }] of columns) row[column] = of(state, rowId) ?? null
      return row
    },
  }
}
