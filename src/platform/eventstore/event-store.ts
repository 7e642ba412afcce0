import { AppError } from '../errors.ts'
import { inboxInsert } from '../inbox/inbox.ts'
import type { SqlDatabase, SqlExecutor, SqlStep } from '../sql/port.ts'

/**
 * An append-only event store in PostgreSQL's dialect (PGlite embedded, PostgreSQL in production).
 *
 * - Optimistic concurrency: (stream_id, version) is unique, so of two writers that read the same
 *   version only the first commits; the other gets VERSION_CONFLICT, never a silent overwrite.
 * - Events are never updated or deleted: a trigger refuses both.
 * - Each row records the id of the transaction that wrote it. Readers that follow the whole store
 *   (projections, replay) only read rows below the oldest transaction still running, so a row that
 *   commits late with a smaller global position is never skipped.
 */

export interface NewEvent {
  eventId: string
  eventType: string
  schemaVersion: number
  occurredOn: string
  /** The event's own fields. */
  data: Record<string, unknown>
  metadata: EventMetadata
}

export interface EventMetadata {
  correlationId?: string
  causationId?: string
  traceparent?: string
  tracestate?: string
}

export interface StoredEvent extends NewEvent {
  streamId: string
  streamType: string
  version: number
  globalPosition: string
  transactionId: string
}

export interface StorePosition {
  transactionId: string
  globalPosition: string
}

export const START_POSITION: StorePosition = { transactionId: '0', globalPosition: '0' }

interface EventRow {
  global_position: string
  transaction_id: string
  stream_id: string
  stream_type: string
  version: number
  event_id: string
  event_type: string
  schema_version: number
  data: Record<string, unknown>
  metadata: EventMetadata
  occurred_on: Date | string
}

const columns = `global_position::text, transaction_id::text, stream_id, stream_type, version, event_id::text,
  event_type, schema_version, data, metadata, occurred_on`

function toStored(row: EventRow): StoredEvent {
  return {
    globalPosition: row.global_position,
    transactionId: row.transaction_id,
    streamId: row.stream_id,
    streamType: row.stream_type,
    version: row.version,
    eventId: row.event_id,
    eventType: row.event_type,
    schemaVersion: row.schema_version,
    data: row.data,
    metadata: row.metadata ?? {},
    occurredOn: new Date(row.occurred_on).toISOString(),
  }
}

/**
 * Appends `events` to a stream whose current version must be `expectedVersion` (0 for a new
 * stream), in one statement. Call it inside the transaction that also writes the state and the outbox.
 */
export async function appendToStream(
  tx: SqlExecutor,
  stream: { id: string; type: string; expectedVersion: number },
  events: NewEvent[],
): Promise<StoredEvent[]> {
  if (events.length === 0) return []
  return (await appendOnce(tx, stream, events)).stored
}

/**
 * `appendToStream` for a consumer: records `inbox.messageId` in the consumer's inbox in the same
 * statement, and appends only when the message was not handled before (`duplicate` then, and
 * nothing is written). One round trip for both.
 */
export async function appendOnce(
  tx: SqlExecutor,
  stream: { id: string; type: string; expectedVersion: number },
  events: NewEvent[],
  inbox?: { consumer: string; messageId: string },
): Promise<{ stored: StoredEvent[]; duplicate: boolean }> {
  if (events.length === 0) throw new RangeError('appendOnce: no events to append')
  const params: unknown[] = [
    stream.id,
    stream.type,
    stream.expectedVersion,
    events.map((e) => e.eventId),
    events.map((e) => e.eventType),
    events.map((e) => e.schemaVersion),
    events.map((e) => JSON.stringify(e.data)),
    events.map((e) => JSON.stringify(e.metadata)),
    events.map((e) => e.occurredOn),
  ]
  if (inbox) params.push(inbox.consumer, inbox.messageId)
  try {
    const { rows } = await tx.query<EventRow>(
      `${
        inbox ? `WITH handled AS (${inboxInsert(10)}) ` : ''
      }INSERT INTO es_events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata, occurred_on)
       SELECT $1, $2, $3::integer + e.n::integer, e.event_id::uuid, e.event_type, e.schema_version, e.data::jsonb,
              e.metadata::jsonb, e.occurred_on::timestamptz
         FROM unnest($4::text[], $5::text[], $6::integer[], $7::text[], $8::text[], $9::text[])
              WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, occurred_on, n)
        ${inbox ? 'WHERE EXISTS (SELECT 1 FROM handled)' : ''}
        ORDER BY e.n
       RETURNING ${columns}`,
      params,
    )
    if (rows.length === 0 && inbox) return { stored: [], duplicate: true }
    return { stored: rows.map(toStored).sort((a, b) => a.version - b.version), duplicate: false }
  } catch (error) {
    if ((error as { code?: string }).code === '23505' && /stream_version/.test(String((error as Error).message))) {
      throw new AppError(
        'VERSION_CONFLICT',
        `${stream.type} ${stream.id} was changed concurrently: expected version ${stream.expectedVersion}`,
        { details: { streamId: stream.id, expectedVersion: stream.expectedVersion }, cause: error },
      )
    }
    throw error
  }
}

/** An event of a batch, with the stream and version it takes. */
export interface NewStreamEvent extends NewEvent {
  streamId: string
  streamType: string
  version: number
}

/**
 * Appends the events of a whole consumer batch, across streams, in one statement: each at the
 * version its command was decided on plus its place (the caller read those states in the same
 * transaction). A version taken meanwhile fails the statement as VERSION_CONFLICT, and the whole
 * batch with it; its consumer then handles the batch one message at a time.
 */
export async function appendMany(tx: SqlExecutor, events: readonly NewStreamEvent[]): Promise<void> {
  if (events.length === 0) return
  const step = appendStep(events)
  try {
    await tx.query(step.sql(1, 'true'), step.params)
  } catch (error) {
    throw asVersionConflict(error)
  }
}

/** `appendMany` as a step of a larger statement (see `SqlStep`). */
export function appendStep(events: readonly NewStreamEvent[]): SqlStep {
  const rows = events.map((e, n) => ({
    n,
    stream_id: e.streamId,
    stream_type: e.streamType,
    version: e.version,
    event_id: e.eventId,
    event_type: e.eventType,
    schema_version: e.schemaVersion,
    data: e.data,
    metadata: e.metadata,
    occurred_on: e.occurredOn,
  }))
  return {
    sql: (first, when) =>
      `INSERT INTO es_events (stream_id, stream_type, version, event_id, event_type, schema_version, data, metadata, occurred_on)
       SELECT r.stream_id, r.stream_type, r.version, r.event_id, r.event_type, r.schema_version, r.data, r.metadata, r.occurred_on
         FROM jsonb_to_recordset($${first}::jsonb) AS r(n integer, stream_id text, stream_type text, version integer,
              event_id uuid, event_type text, schema_version integer, data jsonb, metadata jsonb, occurred_on timestamptz)
        WHERE ${when}
        ORDER BY r.n`,
    params: [JSON.stringify(rows)],
  }
}

/** A unique violation of a stream's versions (a concurrent append) as VERSION_CONFLICT; anything else as it is. */
export function asVersionConflict(error: unknown): unknown {
  if ((error as { code?: string }).code === '23505' && /stream_version/.test(String((error as Error).message))) {
    return new AppError('VERSION_CONFLICT', 'a stream was changed concurrently', { cause: error })
  }
  return error
}

export async function readStream(db: SqlExecutor, streamId: string): Promise<StoredEvent[]> {
  const { rows } = await db.query<EventRow>(`SELECT ${columns} FROM es_events WHERE stream_id = $1 ORDER BY version`, [
    streamId,
  ])
  return rows.map(toStored)
}

export interface ReadAllOptions {
  after: StorePosition
  limit: number
  /** Only events of these stream types (one or several). */
  streamType?: string | readonly string[]
  /** Only events that occurred in [from, to). */
  from?: string
  to?: string
}

export type EventFilter = Pick<ReadAllOptions, 'streamType' | 'from' | 'to'>

/** `AND …` conditions for `filter`, numbering their parameters after those already in `params`. */
function filterConditions(filter: EventFilter, params: unknown[]): string {
  const conditions: string[] = []
  const add = (condition: string, value: unknown) => {
    params.push(value)
    conditions.push(`AND ${condition} $${params.length}${condition.endsWith('(') ? ')' : ''}`)
  }
  if (typeof filter.streamType === 'string') add('es_events.stream_type =', filter.streamType)
  else if (filter.streamType) add('es_events.stream_type = ANY(', [...filter.streamType])
  if (filter.from) add('es_events.occurred_on >=', filter.from)
  if (filter.to) add('es_events.occurred_on <', filter.to)
  return conditions.join(' ')
}

/**
 * Reads the whole store in commit-safe order after `after`. Rows of transactions still running, and
 * anything after them, are left for a later call.
 */
export async function readAll(db: SqlExecutor, options: ReadAllOptions): Promise<StoredEvent[]> {
  const params: unknown[] = [options.after.transactionId, options.after.globalPosition, options.limit]
  const { rows } = await db.query<EventRow>(
    `SELECT ${columns} FROM es_events
      WHERE (es_events.transaction_id, es_events.global_position) > ($1::text::xid8, $2::bigint)
        AND es_events.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
        ${filterConditions(options, params)}
      -- Qualified: the select list turns both into text, and ordering by text would put 10 before 9.
      ORDER BY es_events.transaction_id, es_events.global_position
      LIMIT $3`,
    params,
  )
  return rows.map(toStored)
}

/** How many events follow `after` (for progress reporting). */
export async function countAfter(db: SqlExecutor, after: StorePosition, filter: EventFilter = {}): Promise<number> {
  const params: unknown[] = [after.transactionId, after.globalPosition]
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM es_events
      WHERE (es_events.transaction_id, es_events.global_position) > ($1::text::xid8, $2::bigint)
        ${filterConditions(filter, params)}`,
    params,
  )
  return Number(rows[0]?.n ?? 0)
}

export type { SqlDatabase }
