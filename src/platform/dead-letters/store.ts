import type { SqlExecutor } from '../sql/port.ts'
import { EVENT_ID_HEADER } from '../transport/instrumented.ts'
import type { IncomingMessage, PublishedPosition } from '../transport/port.ts'

/**
 * The database side of dead letters (tables in migrations/006.do.dead-letters.sql): the index of
 * every dead letter a reliable consumer wrote, and per-key parking.
 *
 * Parking keeps a key's order when one of its messages fails for good. Once a message of key K is
 * dead-lettered by group G, K is parked in G: the later messages of K that G consumes are stored
 * here, in partition order, instead of being handled, and the partition's offsets keep moving
 * (other keys flow). An operator's redrive or discard of K's dead letter reaches G as a message on
 * the same partition, so G's consumer, the only one that reads K, releases K in order: the
 * redriven message first, then the parked ones oldest first, through the same handler and inbox,
 * and only then the messages that came after the redrive. Nothing for K can overtake or be
 * skipped, because one consumer handles a partition one message at a time.
 */

/** Headers an operator's action puts on the messages it sends to a consumer. */
export const REDRIVE_HEADERS = {
  /** The dead letter (id) this message redrives, or releases (with `control: release`). */
  deadLetter: 'orderflow-dead-letter-id',
  /** Only this consumer group handles the message; every other group skips it. */
  group: 'orderflow-redrive-group',
  /** `release`: no payload to handle; the key's parked messages follow (a discarded dead letter). */
  control: 'orderflow-control',
} as const

/** What a dead letter is indexed with, besides the record written to `<topic>-dlq`. */
export interface DeadLetterEntry {
  groupId: string
  message: IncomingMessage
  reason: string
  error: { message: string; code?: string; stack?: string }
  attempts: number
  failedAt: string
  payload: string
  payloadTruncated: boolean
  payloadBytes: number
  dlq: { topic: string; position?: PublishedPosition | undefined }
}

/** A failed attempt that the consumer retries (`consumer_retries`). */
export interface RetryEntry {
  groupId: string
  message: IncomingMessage
  attempt: number
  error: { message: string; code?: string }
  retryInMs: number
}

export interface ParkedMessage {
  seq: string
  message: IncomingMessage
}

export interface DeadLetterStore {
  /**
   * Indexes a dead letter (once: a message dead-lettered again after a redelivery keeps its row)
   * and, with `park`, parks its key in its group behind it. Returns the dead letter's id.
   */
  record(entry: DeadLetterEntry, options: { park: boolean }): Promise<string>
  /** Records a failed attempt that will be retried, for the order's journey. */
  retried(entry: RetryEntry): Promise<void>
  /** Whether any key of `groupId` is parked. */
  anyParked(groupId: string): Promise<boolean>
  /** The dead letter each of `keys` waits for in `groupId` (keys not parked are absent). */
  blockers(groupId: string, keys: readonly string[]): Promise<Map<string, string>>
  /** Stores `message` behind its parked key; false when the key is no longer parked (handle it). */
  park(groupId: string, message: IncomingMessage): Promise<boolean>
  /** The key's oldest parked messages, in the order they arrived. */
  parked(groupId: string, key: string, limit: number): Promise<ParkedMessage[]>
  /** Removes a parked message once it was handled (or dead-lettered). */
  unpark(seq: string): Promise<void>
  /**
   * Releases `key` in `groupId` when it still waits for `deadLetterId` and nothing is parked behind
   * it; false otherwise (a message was parked meanwhile, or the key waits for a newer dead letter).
   */
  release(groupId: string, key: string, deadLetterId: string): Promise<boolean>
}

const asMessage = (row: {
  topic: string
  partition: number
  message_offset: string
  message_key: string
  headers: Record<string, string>
  payload: string
  message_timestamp: Date | string
}): IncomingMessage => ({
  topic: row.topic,
  partition: row.partition,
  offset: row.message_offset,
  key: row.message_key,
  value: row.payload,
  headers: row.headers,
  timestamp: new Date(row.message_timestamp),
})

export function sqlDeadLetterStore(db: SqlExecutor): DeadLetterStore {
  return {
    async record(entry, { park }) {
      const { message } = entry
      const statement = `
        WITH indexed AS (
          INSERT INTO dead_letters (group_id, topic, partition, message_offset, message_key, event_id, reason, error,
                                    attempts, headers, payload, payload_truncated, payload_bytes, dlq_topic,
                                    dlq_partition, dlq_offset, failed_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb, $11, $12, $13, $14, $15, $16, $17)
          ON CONFLICT (group_id, topic, partition, message_offset)
            DO UPDATE SET state = 'open', reason = EXCLUDED.reason, error = EXCLUDED.error, attempts = EXCLUDED.attempts,
                          dlq_topic = EXCLUDED.dlq_topic, dlq_partition = EXCLUDED.dlq_partition,
                          dlq_offset = EXCLUDED.dlq_offset, failed_at = EXCLUDED.failed_at,
                          resolved_at = NULL, resolved_by = NULL, resolution = NULL
          RETURNING id
        )${
          park
            ? `, parked AS (
          INSERT INTO parked_keys (group_id, message_key, topic, dead_letter_id)
          SELECT $1, $5, $2, id FROM indexed WHERE $5 <> ''
          ON CONFLICT (group_id, message_key) DO UPDATE SET dead_letter_id = EXCLUDED.dead_letter_id, topic = EXCLUDED.topic
        )`
            : ''
        }
        SELECT id::text AS id FROM indexed`
      const { rows } = await db.query<{ id: string }>(statement, [
        entry.groupId,
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.headers[EVENT_ID_HEADER] ?? null,
        entry.reason,
        JSON.stringify(entry.error),
        entry.attempts,
        JSON.stringify(message.headers),
        entry.payload,
        entry.payloadTruncated,
        entry.payloadBytes,
        entry.dlq.topic,
        entry.dlq.position?.partition ?? null,
        entry.dlq.position?.offset ?? null,
        entry.failedAt,
      ])
      return (rows[0] as { id: string }).id
    },

    async retried({ groupId, message, attempt, error, retryInMs }) {
      await db.query(
        `INSERT INTO consumer_retries (group_id, topic, partition, message_offset, message_key, event_id, attempt, error,
                                       retry_in_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)`,
        [
          groupId,
          message.topic,
          message.partition,
          message.offset,
          message.key,
          message.headers[EVENT_ID_HEADER] ?? null,
          attempt,
          JSON.stringify(error),
          Math.round(retryInMs),
        ],
      )
    },

    async anyParked(groupId) {
      const { rows } = await db.query<{ parked: boolean }>(
        'SELECT EXISTS (SELECT 1 FROM parked_keys WHERE group_id = $1) AS parked',
        [groupId],
      )
      return rows[0]?.parked === true
    },

    async blockers(groupId, keys) {
      const blockers = new Map<string, string>()
      const wanted = [...new Set(keys.filter((k) => k !== ''))]
      if (wanted.length === 0) return blockers
      const { rows } = await db.query<{ message_key: string; dead_letter_id: string }>(
        `SELECT message_key, dead_letter_id::text AS dead_letter_id FROM parked_keys
          WHERE group_id = $1 AND message_key = ANY($2::text[])`,
        [groupId, wanted],
      )
      for (const row of rows) blockers.set(row.message_key, row.dead_letter_id)
      return blockers
    },

    async park(groupId, message) {
      // Only while the key is parked: a key released since it was looked up is handled instead.
      const { rows } = await db.query<{ parked: boolean }>(
        `WITH key AS (SELECT 1 FROM parked_keys WHERE group_id = $1 AND message_key = $2 FOR SHARE),
              stored AS (
                INSERT INTO parked_messages (group_id, message_key, topic, partition, message_offset, event_id,
                                             headers, payload, message_timestamp)
                SELECT $1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9 FROM key
                ON CONFLICT (group_id, topic, partition, message_offset) DO NOTHING
                RETURNING 1
              )
         SELECT EXISTS (SELECT 1 FROM key) AS parked`,
        [
          groupId,
          message.key,
          message.topic,
          message.partition,
          message.offset,
          message.headers[EVENT_ID_HEADER] ?? null,
          JSON.stringify(message.headers),
          message.value,
          message.timestamp.toISOString(),
        ],
      )
      return rows[0]?.parked === true
    },

    async parked(groupId, key, limit) {
      const { rows } = await db.query<{
        seq: string
        topic: string
        partition: number
        message_offset: string
        message_key: string
        headers: Record<string, string>
        payload: string
        message_timestamp: Date | string
      }>(
        `SELECT seq::text AS seq, topic, partition, message_offset, message_key, headers, payload, message_timestamp
           FROM parked_messages WHERE group_id = $1 AND message_key = $2 ORDER BY seq LIMIT $3`,
        [groupId, key, limit],
      )
      return rows.map((row) => ({ seq: row.seq, message: asMessage(row) }))
    },

    async unpark(seq) {
      await db.query('DELETE FROM parked_messages WHERE seq = $1', [seq])
    },

    async release(groupId, key, deadLetterId) {
      const { rowCount } = await db.query(
        `DELETE FROM parked_keys k
          WHERE k.group_id = $1 AND k.message_key = $2 AND k.dead_letter_id = $3
            AND NOT EXISTS (SELECT 1 FROM parked_messages m WHERE m.group_id = $1 AND m.message_key = $2)`,
        [groupId, key, deadLetterId],
      )
      return rowCount > 0
    },
  }
}
