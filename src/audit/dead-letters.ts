import type { SqlExecutor } from '../platform/sql/port.ts'

/**
 * Open dead letters for the auditor and for readiness: how many records each `<topic>-dlq` holds,
 * by the topic they came from and the reason the reliable consumer gave (`dlq-reason` header:
 * POISON_MESSAGE, REJECTED, RETRIES_EXHAUSTED, ...).
 *
 * The deployment's own count is the dead-letter console's index (`indexedDeadLetters`): a dead
 * letter an operator redrove or discarded is no longer open, though its record stays on the topic.
 * The embedded log's topic count (`embeddedDeadLetters`) counts every record a dead-letter topic
 * holds, whoever wrote it, until the topic's retention removes it.
 */
export interface DeadLetterCount {
  /** The topic the message was consumed from (without the deployment's prefix). */
  topic: string
  reason: string
  count: number
}

/**
 * Reads the open dead letters. `reasons: false` may count per topic only (reason `*`), where
 * telling reasons apart costs a read of the topic (Kafka); readiness asks for that.
 */
export type DeadLetterSource = (options?: { reasons?: boolean }) => Promise<DeadLetterCount[]>

const SUFFIX = '-dlq'
const unprefixed = (prefix: string, name: string) => (name.startsWith(prefix) ? name.slice(prefix.length) : name)
const sourceOf = (prefix: string, dlqTopic: string) => unprefixed(prefix, dlqTopic).slice(0, -SUFFIX.length)

const byTopicAndReason = (a: DeadLetterCount, b: DeadLetterCount) =>
  a.topic.localeCompare(b.topic) || a.reason.localeCompare(b.reason)

/** The open dead letters of the console's index (platform/migrations/006.do.dead-letters.sql). */
export function indexedDeadLetters(db: SqlExecutor): DeadLetterSource {
  return async () => {
    const exists = await db.query<{ t: string | null }>("SELECT to_regclass('dead_letters')::text AS t")
    if (!exists.rows[0]?.t) return []
    const { rows } = await db.query<{ topic: string; reason: string; count: string }>(
      `SELECT topic, reason, count(*)::text AS count FROM dead_letters WHERE state = 'open' GROUP BY topic, reason`,
    )
    return rows.map((r) => ({ topic: r.topic, reason: r.reason, count: Number(r.count) })).sort(byTopicAndReason)
  }
}

/** The embedded log: one query over its messages table. */
export function embeddedDeadLetters(db: SqlExecutor, prefix = ''): DeadLetterSource {
  return async () => {
    const exists = await db.query<{ t: string | null }>("SELECT to_regclass('log_messages')::text AS t")
    if (!exists.rows[0]?.t) return []
    const { rows } = await db.query<{ topic: string; reason: string | null; count: string }>(
      `SELECT topic, headers->>'dlq-reason' AS reason, count(*)::text AS count
         FROM log_messages
        WHERE topic LIKE $1 ESCAPE '\\'
        GROUP BY topic, headers->>'dlq-reason'`,
      [`${prefix.replace(/[\\%_]/g, '\\$&')}%${SUFFIX}`],
    )
    return rows
      .map((r) => ({ topic: sourceOf(prefix, r.topic), reason: r.reason ?? 'UNKNOWN', count: Number(r.count) }))
      .sort(byTopicAndReason)
  }
}

/** "order_commands: 2 REJECTED; payment_commands: 1 POISON_MESSAGE" */
export function describeDeadLetters(counts: readonly DeadLetterCount[]): string {
  const topics = new Map<string, string[]>()
  for (const c of counts) topics.set(c.topic, [...(topics.get(c.topic) ?? []), `${c.count} ${c.reason}`])
  return [...topics].map(([topic, reasons]) => `${topic}-dlq: ${reasons.join(', ')}`).join('; ')
}
