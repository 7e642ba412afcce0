import { Admin } from '@platformatic/kafka'
import type { KafkaSecurity } from '../platform/config.ts'
import type { SqlExecutor } from '../platform/sql/port.ts'
import { kafkaSecurityOptions } from '../platform/transport/kafka.ts'
import { kafkaTopicReader } from '../platform/transport/topic-reader.ts'

/**
 * Open dead letters for the auditor and for readiness: how many records each `<topic>-dlq` holds,
 * by the topic they came from and the reason the reliable consumer gave (`dlq-reason` header:
 * POISON_MESSAGE, REJECTED, RETRIES_EXHAUSTED, ...).
 *
 * The deployment's own count is the dead-letter console's index (`indexedDeadLetters`): a dead
 * letter an operator redrove or discarded is no longer open, though its record stays on the topic.
 * The topic counts (`embeddedDeadLetters`, `kafkaDeadLetters`) count every record a dead-letter
 * topic holds, whoever wrote it, until the topic's retention removes it.
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

/**
 * Kafka: the dead-letter topics' sizes from their offsets (cheap, and usually all zero); only a
 * topic that holds records is read, to count them by reason.
 */
export function kafkaDeadLetters(options: {
  brokers: string[]
  clientId: string
  prefix?: string
  security?: KafkaSecurity
}): DeadLetterSource {
  const prefix = options.prefix ?? ''
  return async ({ reasons = true } = {}) => {
    const admin = new Admin({
      clientId: `${options.clientId}-audit`,
      bootstrapBrokers: options.brokers,
      ...kafkaSecurityOptions(options.security),
      connectTimeout: 5_000,
      requestTimeout: 10_000,
    })
    let holding: string[]
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix) && t.endsWith(SUFFIX))
      if (topics.length === 0) return []
      const metadata = await admin.metadata({ topics })
      const partitionsOf = (name: string) =>
        Array.from({ length: metadata.topics.get(name)?.partitionsCount ?? 0 }, (_, partitionIndex) => partitionIndex)
      const offsets = async (timestamp: bigint) => {
        const result = await admin.listOffsets({
          topics: topics.map((name) => ({
            name,
            partitions: partitionsOf(name).map((partitionIndex) => ({ partitionIndex, timestamp })),
          })),
        })
        const size = new Map<string, bigint>()
        for (const topic of result) {
          for (const p of topic.partitions) size.set(topic.name, (size.get(topic.name) ?? 0n) + p.offset)
        }
        return size
      }
      const [ends, starts] = [await offsets(-1n), await offsets(-2n)]
      holding = topics.filter((t) => (ends.get(t) ?? 0n) > (starts.get(t) ?? 0n))
      if (!reasons) {
        return holding
          .map((t) => ({
            topic: sourceOf(prefix, t),
            reason: '*',
            count: Number((ends.get(t) ?? 0n) - (starts.get(t) ?? 0n)),
          }))
          .sort(byTopicAndReason)
      }
    } finally {
      await admin.close().catch(() => {})
    }
    const reader = kafkaTopicReader({ ...options, prefix: '' })
    const counts = new Map<string, DeadLetterCount>()
    for (const dlq of holding) {
      await reader.read(
        dlq,
        (message) => {
          const reason = message.headers['dlq-reason'] ?? 'UNKNOWN'
          const key = `${dlq}\u0000${reason}`
          const entry = counts.get(key) ?? { topic: sourceOf(prefix, dlq), reason, count: 0 }
          entry.count++
          counts.set(key, entry)
        },
        { timeoutMs: 15_000 },
      )
    }
    return [...counts.values()].sort(byTopicAndReason)
  }
}

/** "order_commands: 2 REJECTED; payment_commands: 1 POISON_MESSAGE" */
export function describeDeadLetters(counts: readonly DeadLetterCount[]): string {
  const topics = new Map<string, string[]>()
  for (const c of counts) topics.set(c.topic, [...(topics.get(c.topic) ?? []), `${c.count} ${c.reason}`])
  return [...topics].map(([topic, reasons]) => `${topic}-dlq: ${reasons.join(', ')}`).join('; ')
}
