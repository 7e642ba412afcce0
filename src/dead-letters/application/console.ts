import { SpanKind } from '@opentelemetry/api'
import { REDRIVE_HEADERS } from '../../platform/dead-letters/store.ts'
import { AppError, notFound } from '../../platform/errors.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import { inSpan } from '../../platform/tracing.ts'
import type { OutgoingMessage, Transport } from '../../platform/transport/port.ts'

/**
 * The dead-letter console: what an operator sees of the dead letters every reliable consumer
 * wrote (indexed in `dead_letters`, the records themselves on `<topic>-dlq`) and what they do
 * with them.
 *
 * - **Redrive to the consumer** sends the message back on its original topic and partition key,
 *   with its original headers (its event id among them, so the inbox still recognises it) and a
 *   header naming the one group that failed it; every other group skips it. When that group had
 *   parked the key, the message releases it: handled first, then the key's parked messages in
 *   order (platform/dead-letters/store.ts).
 * - **Redrive to the topic** sends it back for every group; those that handled it already find its
 *   event id in their inbox and do nothing.
 * - **Discard** closes it with a comment; when its key was parked, a release message (no payload)
 *   lets the parked messages follow.
 *
 * A dead letter is claimed (open → redriven) before it is sent and given back when sending fails,
 * so two operators never redrive one twice. Every action is recorded in `dead_letter_actions`: who,
 * when, what was asked, how many matched and how many were done.
 */

export type DeadLetterState = 'open' | 'redriven' | 'discarded'
export type RedriveTarget = 'consumer' | 'topic'

export interface DeadLetterFilter {
  topic?: string | undefined
  group?: string | undefined
  reason?: string | undefined
  key?: string | undefined
  /** Default open; `all` for every state. */
  state?: DeadLetterState | 'all' | undefined
}

export interface DeadLetterSummary {
  id: string
  topic: string
  group: string
  key: string
  eventId: string | null
  reason: string
  attempts: number
  failedAt: string
  state: DeadLetterState
  errorMessage: string
  /** Messages of its key parked behind it (0 when the key is not parked behind this one). */
  parkedMessages: number
  dlq: { topic: string; partition: number | null; offset: string | null }
}

export interface DeadLetterDetail extends DeadLetterSummary {
  error: { message: string; code?: string; stack?: string }
  headers: Record<string, string>
  payload: string
  payloadTruncated: boolean
  payloadBytes: number
  resolvedAt: string | null
  resolvedBy: string | null
  resolution: Record<string, unknown> | null
  /** The messages parked behind it, oldest first (at most 100). */
  parked: { seq: string; topic: string; partition: number; offset: string; eventId: string | null; parkedAt: string }[]
}

export interface DeadLetterAction {
  id: string
  at: string
  actor: string
  action: 'redrive' | 'discard'
  target: RedriveTarget | null
  selection: Record<string, unknown>
  dryRun: boolean
  matched: number
  done: number
  comment: string | null
  status: 'running' | 'completed' | 'stopped' | 'failed'
}

export interface BulkRedrive extends DeadLetterFilter {
  ids?: string[] | undefined
  to: RedriveTarget
  dryRun: boolean
  /** At most this many dead letters sent per second. */
  ratePerSecond: number
}

export interface Progress {
  matched: number
  done: number
}

interface Row {
  id: string
  group_id: string
  topic: string
  partition: number
  message_offset: string
  message_key: string
  event_id: string | null
  reason: string
  error: { message: string; code?: string; stack?: string }
  attempts: number
  headers: Record<string, string>
  payload: string
  payload_truncated: boolean
  payload_bytes: number
  dlq_topic: string
  dlq_partition: number | null
  dlq_offset: string | null
  failed_at: Date | string
  state: DeadLetterState
  resolved_at: Date | string | null
  resolved_by: string | null
  resolution: Record<string, unknown> | null
  parked_messages: string
}

const iso = (value: Date | string) => new Date(value).toISOString()

const SELECT = `
  SELECT d.id::text AS id, d.group_id, d.topic, d.partition, d.message_offset, d.message_key, d.event_id, d.reason,
         d.error, d.attempts, d.headers, d.payload, d.payload_truncated, d.payload_bytes, d.dlq_topic, d.dlq_partition,
         d.dlq_offset, d.failed_at, d.state, d.resolved_at, d.resolved_by, d.resolution,
         (SELECT count(*) FROM parked_keys k JOIN parked_messages m
             ON m.group_id = k.group_id AND m.message_key = k.message_key
           WHERE k.dead_letter_id = d.id)::text AS parked_messages
    FROM dead_letters d`

const summaryOf = (row: Row): DeadLetterSummary => ({
  id: row.id,
  topic: row.topic,
  group: row.group_id,
  key: row.message_key,
  eventId: row.event_id,
  reason: row.reason,
  attempts: row.attempts,
  failedAt: iso(row.failed_at),
  state: row.state,
  errorMessage: row.error.message,
  parkedMessages: Number(row.parked_messages),
  dlq: { topic: row.dlq_topic, partition: row.dlq_partition, offset: row.dlq_offset },
})

/** The WHERE clause of a filter, its parameters from `$first`. */
function where(filter: DeadLetterFilter, params: unknown[]): string {
  const clauses: string[] = []
  const add = (sql: string, value: unknown) => {
    params.push(value)
    clauses.push(sql.replace('?', `$${params.length}`))
  }
  if (filter.topic !== undefined) add('d.topic = ?', filter.topic)
  if (filter.group !== undefined) add('d.group_id = ?', filter.group)
  if (filter.reason !== undefined) add('d.reason = ?', filter.reason)
  if (filter.key !== undefined) add('d.message_key = ?', filter.key)
  const state = filter.state ?? 'open'
  if (state !== 'all') add('d.state = ?', state)
  return clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : ''
}

const actionOf = (row: {
  id: string
  at: Date | string
  actor: string
  action: DeadLetterAction['action']
  target: RedriveTarget | null
  selection: Record<string, unknown>
  dry_run: boolean
  matched: number
  done: number
  comment: string | null
  status: DeadLetterAction['status']
}): DeadLetterAction => ({
  id: row.id,
  at: iso(row.at),
  actor: row.actor,
  action: row.action,
  target: row.target,
  selection: row.selection,
  dryRun: row.dry_run,
  matched: row.matched,
  done: row.done,
  comment: row.comment,
  status: row.status,
})

const ACTION_COLUMNS = `id::text AS id, at, actor, action, target, selection, dry_run, matched, done, comment, status`

export interface DeadLetterConsole {
  list(filter: DeadLetterFilter & { limit: number; cursor?: string | undefined }): Promise<{
    items: DeadLetterSummary[]
    nextCursor: string | null
  }>
  get(id: string): Promise<DeadLetterDetail>
  redrive(
    id: string,
    options: { to: RedriveTarget; actor: string },
  ): Promise<{ action: DeadLetterAction; deadLetter: DeadLetterDetail }>
  /**
   * Redrives every open dead letter the selection matches, oldest first, at most `ratePerSecond`,
   * saying its progress as it goes; stops (status `stopped`) when `signal` aborts.
   */
  redriveMany(
    selection: BulkRedrive,
    options: { actor: string; signal?: AbortSignal; onProgress?: (progress: Progress) => void },
  ): Promise<DeadLetterAction>
  discard(
    id: string,
    options: { comment: string; actor: string },
  ): Promise<{ action: DeadLetterAction; deadLetter: DeadLetterDetail }>
  actions(limit: number): Promise<DeadLetterAction[]>
  summary(): Promise<{
    open: { topic: string; group: string; reason: string; count: number }[]
    parkedKeys: {
      group: string
      key: string
      topic: string
      deadLetterId: string
      messages: number
      parkedAt: string
    }[]
  }>
}

/** A cursor is the last id of a page, opaque to clients. */
const encodeCursor = (id: string) => Buffer.from(`dl:${id}`).toString('base64url')
function decodeCursor(cursor: string): string {
  const text = Buffer.from(cursor, 'base64url').toString()
  if (!/^dl:\d+$/.test(text)) {
    throw new AppError('VALIDATION_FAILED', 'cursor is not one this API gave out', {
      fields: [{ field: 'cursor', message: 'must be the nextCursor of an earlier page' }],
    })
  }
  return text.slice(3)
}

export function deadLetterConsole(deps: {
  db: SqlDatabase
  transport: Transport
  clock?: () => Date
}): DeadLetterConsole {
  const { db, transport } = deps
  const clock = deps.clock ?? (() => new Date())

  const load = async (id: string): Promise<DeadLetterDetail> => {
    if (!/^\d{1,18}$/.test(id)) throw notFound('dead letter', id)
    const { rows } = await db.query<Row>(`${SELECT} WHERE d.id = $1`, [id])
    const row = rows[0]
    if (!row) throw notFound('dead letter', id)
    const parked = await db.query<{
      seq: string
      topic: string
      partition: number
      message_offset: string
      event_id: string | null
      parked_at: Date | string
    }>(
      `SELECT m.seq::text AS seq, m.topic, m.partition, m.message_offset, m.event_id, m.parked_at
         FROM parked_keys k JOIN parked_messages m ON m.group_id = k.group_id AND m.message_key = k.message_key
        WHERE k.dead_letter_id = $1 ORDER BY m.seq LIMIT 100`,
      [id],
    )
    return {
      ...summaryOf(row),
      error: row.error,
      headers: row.headers,
      payload: row.payload,
      payloadTruncated: row.payload_truncated,
      payloadBytes: row.payload_bytes,
      resolvedAt: row.resolved_at === null ? null : iso(row.resolved_at),
      resolvedBy: row.resolved_by,
      resolution: row.resolution,
      parked: parked.rows.map((p) => ({
        seq: p.seq,
        topic: p.topic,
        partition: p.partition,
        offset: p.message_offset,
        eventId: p.event_id,
        parkedAt: iso(p.parked_at),
      })),
    }
  }

  const record = async (action: Omit<DeadLetterAction, 'id' | 'at'>): Promise<DeadLetterAction> => {
    const { rows } = await db.query<Parameters<typeof actionOf>[0]>(
      `INSERT INTO dead_letter_actions (at, actor, action, target, selection, dry_run, matched, done, comment, status, finished_at)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, CASE WHEN $10 = 'running' THEN NULL ELSE $1::timestamptz END)
       RETURNING ${ACTION_COLUMNS}`,
      [
        clock().toISOString(),
        action.actor,
        action.action,
        action.target,
        JSON.stringify(action.selection),
        action.dryRun,
        action.matched,
        action.done,
        action.comment,
        action.status,
      ],
    )
    return actionOf(rows[0] as Parameters<typeof actionOf>[0])
  }

  const finish = async (id: string, done: number, status: DeadLetterAction['status']): Promise<DeadLetterAction> => {
    const { rows } = await db.query<Parameters<typeof actionOf>[0]>(
      `UPDATE dead_letter_actions SET done = $2, status = $3, finished_at = $4 WHERE id = $1 RETURNING ${ACTION_COLUMNS}`,
      [id, done, status, clock().toISOString()],
    )
    return actionOf(rows[0] as Parameters<typeof actionOf>[0])
  }

  /** Claims an open dead letter for a redrive or a discard; refuses one that is not open. */
  const claim = async (id: string, state: DeadLetterState, actor: string, resolution: Record<string, unknown>) => {
    const { rows } = await db.query<Row>(
      `UPDATE dead_letters d SET state = $2, resolved_at = $3, resolved_by = $4, resolution = $5::jsonb
        WHERE d.id = $1 AND d.state = 'open'
        RETURNING d.id::text AS id, d.group_id, d.topic, d.partition, d.message_offset, d.message_key, d.headers,
                  d.payload, d.payload_truncated`,
      [id, state, clock().toISOString(), actor, JSON.stringify(resolution)],
    )
    return rows[0]
  }

  const unclaim = (id: string) =>
    db.query(
      `UPDATE dead_letters SET state = 'open', resolved_at = NULL, resolved_by = NULL, resolution = NULL WHERE id = $1`,
      [id],
    )

  const refuseNotOpen = async (id: string, verb: string): Promise<never> => {
    const current = await load(id)
    throw new AppError(
      'INVALID_TRANSITION',
      `dead letter ${id} is ${current.state}${current.resolvedBy ? ` (by ${current.resolvedBy} at ${current.resolvedAt})` : ''}; only an open one can be ${verb}`,
      { details: { id, state: current.state } },
    )
  }

  /** The message that sends dead letter `row` back: to its group only, or to every group. */
  const redriveMessage = (row: Row, to: RedriveTarget): OutgoingMessage => {
    const headers: Record<string, string> = { ...row.headers, [REDRIVE_HEADERS.deadLetter]: row.id }
    delete headers[REDRIVE_HEADERS.control]
    if (to === 'consumer') headers[REDRIVE_HEADERS.group] = row.group_id
    else delete headers[REDRIVE_HEADERS.group]
    return { topic: row.topic, key: row.message_key, value: row.payload, headers }
  }

  const sendRedrive = async (row: Row, to: RedriveTarget) => {
    if (row.payload_truncated) {
      throw new AppError(
        'INVALID_TRANSITION',
        `dead letter ${row.id} holds only the start of its payload (it was too large for the dead-letter topic); it cannot be redriven, only discarded`,
        { details: { id: row.id } },
      )
    }
    // With tracing on, the redrive's publish is a child of this span (and of the operator's request).
    await inSpan(
      'dead-letter redrive',
      {
        kind: SpanKind.INTERNAL,
        attributes: {
          'messaging.kafka.message.key': row.message_key,
          'orderflow.dead_letter_id': row.id,
          'orderflow.redrive_to': to,
        },
      },
      () => transport.publish([redriveMessage(row, to)]),
    )
  }

  return {
    async list({ limit, cursor, ...filter }) {
      const params: unknown[] = []
      let clause = where(filter, params)
      if (cursor !== undefined) {
        params.push(decodeCursor(cursor))
        clause = `${clause ? `${clause} AND` : 'WHERE'} d.id < $${params.length}`
      }
      params.push(limit + 1)
      const { rows } = await db.query<Row>(`${SELECT} ${clause} ORDER BY d.id DESC LIMIT $${params.length}`, params)
      const page = rows.slice(0, limit)
      return {
        items: page.map(summaryOf),
        nextCursor: rows.length > limit ? encodeCursor((page[page.length - 1] as Row).id) : null,
      }
    },

    get: load,

    async redrive(id, { to, actor }) {
      await load(id)
      const action = await record({
        actor,
        action: 'redrive',
        target: to,
        selection: { ids: [id] },
        dryRun: false,
        matched: 1,
        done: 0,
        comment: null,
        status: 'running',
      })
      const row = await claim(id, 'redriven', actor, { to, actionId: action.id })
      if (!row) {
        await finish(action.id, 0, 'failed')
        return refuseNotOpen(id, 'redriven')
      }
      try {
        await sendRedrive(row as Row, to)
      } catch (error) {
        await unclaim(id)
        await finish(action.id, 0, 'failed')
        throw error
      }
      return { action: await finish(action.id, 1, 'completed'), deadLetter: await load(id) }
    },

    async redriveMany(selection, { actor, signal, onProgress }) {
      const { ids, to, dryRun, ratePerSecond, ...filter } = selection
      const params: unknown[] = []
      let clause = where({ ...filter, state: 'open' }, params)
      if (ids !== undefined) {
        params.push(ids.filter((id) => /^\d{1,18}$/.test(id)))
        clause = `${clause ? `${clause} AND` : 'WHERE'} d.id = ANY($${params.length}::bigint[])`
      }
      const { rows: matching } = await db.query<{ id: string }>(
        `SELECT d.id::text AS id FROM dead_letters d ${clause} ORDER BY d.id`,
        params,
      )
      const asked = ids !== undefined ? { ids, ...filter } : filter
      const action = await record({
        actor,
        action: 'redrive',
        target: to,
        selection: asked,
        dryRun,
        matched: matching.length,
        done: 0,
        comment: null,
        status: dryRun ? 'completed' : 'running',
      })
      onProgress?.({ matched: matching.length, done: 0 })
      if (dryRun) return action
      let done = 0
      const started = performance.now()
      try {
        for (const { id } of matching) {
          if (signal?.aborted) return await finish(action.id, done, 'stopped')
          // The rate cap: the n-th redrive starts no earlier than n / rate seconds in.
          const due = started + (done * 1000) / ratePerSecond - performance.now()
          if (due > 0) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, due)
              signal?.addEventListener(
                'abort',
                () => {
                  clearTimeout(timer)
                  resolve()
                },
                { once: true },
              )
            })
            if (signal?.aborted) return await finish(action.id, done, 'stopped')
          }
          const row = await claim(id, 'redriven', actor, { to, actionId: action.id })
          if (!row) continue // redriven or discarded by someone else meanwhile
          if (row.payload_truncated) {
            await unclaim(id)
            continue
          }
          try {
            await sendRedrive(row as Row, to)
          } catch (error) {
            await unclaim(id)
            throw error
          }
          done++
          onProgress?.({ matched: matching.length, done })
          if (done % 10 === 0)
            await db.query('UPDATE dead_letter_actions SET done = $2 WHERE id = $1', [action.id, done])
        }
      } catch (error) {
        await finish(action.id, done, 'failed')
        throw error
      }
      return finish(action.id, done, 'completed')
    },

    async discard(id, { comment, actor }) {
      await load(id)
      const action = await record({
        actor,
        action: 'discard',
        target: null,
        selection: { ids: [id] },
        dryRun: false,
        matched: 1,
        done: 0,
        comment,
        status: 'running',
      })
      const row = await claim(id, 'discarded', actor, { comment, actionId: action.id })
      if (!row) {
        await finish(action.id, 0, 'failed')
        return refuseNotOpen(id, 'discarded')
      }
      // Its key's parked messages follow once its consumer reads the release.
      const { rows: parked } = await db.query('SELECT 1 FROM parked_keys WHERE dead_letter_id = $1', [id])
      if (parked.length > 0) {
        try {
          await transport.publish([
            {
              topic: row.topic,
              key: row.message_key,
              value: '',
              headers: {
                [REDRIVE_HEADERS.deadLetter]: id,
                [REDRIVE_HEADERS.group]: row.group_id,
                [REDRIVE_HEADERS.control]: 'release',
              },
            },
          ])
        } catch (error) {
          await unclaim(id)
          await finish(action.id, 0, 'failed')
          throw error
        }
      }
      return { action: await finish(action.id, 1, 'completed'), deadLetter: await load(id) }
    },

    async actions(limit) {
      const { rows } = await db.query<Parameters<typeof actionOf>[0]>(
        `SELECT ${ACTION_COLUMNS} FROM dead_letter_actions ORDER BY id DESC LIMIT $1`,
        [limit],
      )
      return rows.map(actionOf)
    },

    async summary() {
      const open = await db.query<{ topic: string; group_id: string; reason: string; count: string }>(
        `SELECT topic, group_id, reason, count(*)::text AS count FROM dead_letters WHERE state = 'open'
          GROUP BY topic, group_id, reason ORDER BY topic, group_id, reason`,
      )
      const parked = await db.query<{
        group_id: string
        message_key: string
        topic: string
        dead_letter_id: string
        messages: string
        parked_at: Date | string
      }>(
        `SELECT k.group_id, k.message_key, k.topic, k.dead_letter_id::text AS dead_letter_id, k.parked_at,
                (SELECT count(*) FROM parked_messages m WHERE m.group_id = k.group_id AND m.message_key = k.message_key)::text AS messages
           FROM parked_keys k ORDER BY k.parked_at LIMIT 1000`,
      )
      return {
        open: open.rows.map((r) => ({ topic: r.topic, group: r.group_id, reason: r.reason, count: Number(r.count) })),
        parkedKeys: parked.rows.map((r) => ({
          group: r.group_id,
          key: r.message_key,
          topic: r.topic,
          deadLetterId: r.dead_letter_id,
          messages: Number(r.messages),
          parkedAt: iso(r.parked_at),
        })),
      }
    },
  }
}
