import type { SqlExecutor } from '../sql/port.ts'
import type { Headers, IncomingMessage, LogDescription, LogGroup, LogTopic, ReadTopicOptions } from './port.ts'

/**
 * The embedded adapter's operator views (`readTopic`, `describeLog`), read from the log's tables
 * (`embedded-migrations/`), and how a row of `log_messages` becomes a message. Names are as stored:
 * a prefix is the namespacing wrapper's business.
 */

export interface MessageRow {
  offset: string
  key: string
  value: string
  headers: unknown
  created_at: Date | string
}

export function toIncomingMessage(topic: string, partition: number, row: MessageRow): IncomingMessage {
  const headers = typeof row.headers === 'string' ? JSON.parse(row.headers) : row.headers
  return {
    topic,
    partition,
    offset: row.offset,
    key: row.key,
    value: row.value,
    headers: (headers ?? {}) as Headers,
    timestamp: new Date(row.created_at),
  }
}

/** Rows per query: a big topic is read in pages, never all at once. */
const PAGE_SIZE = 500

/**
 * Reads up to the partitions' heads as they were when the read started, page by page, and stops
 * at the deadline between pages.
 */
export async function readEmbeddedTopic(
  db: SqlExecutor,
  topic: string,
  visit: (message: IncomingMessage) => void,
  { timeoutMs }: ReadTopicOptions,
): Promise<{ complete: boolean } | null> {
  const deadline = performance.now() + timeoutMs
  const { rows: heads } = await db.query<{ partition: number; next_offset: string }>(
    `SELECT p.partition, p.next_offset::text AS next_offset FROM log_topics t
       JOIN log_partitions p ON p.topic = t.name WHERE t.name = $1 ORDER BY p.partition`,
    [topic],
  )
  if (heads.length === 0) return null
  for (const head of heads) {
    const partition = Number(head.partition)
    let position = '0'
    for (;;) {
      if (performance.now() > deadline) return { complete: false }
      const { rows } = await db.query<MessageRow>(
        `SELECT m."offset"::text AS "offset", m.key, m.value, m.headers, m.created_at FROM log_messages m
          WHERE m.topic = $1 AND m.partition = $2 AND m."offset" >= $3 AND m."offset" < $4
          ORDER BY m."offset" LIMIT $5`,
        [topic, partition, position, head.next_offset, PAGE_SIZE],
      )
      for (const row of rows) visit(toIncomingMessage(topic, partition, row))
      const last = rows.at(-1)
      if (!last || rows.length < PAGE_SIZE) break
      position = (BigInt(last.offset) + 1n).toString()
    }
  }
  return { complete: true }
}

/**
 * The log's partitions and the groups' committed offsets, of this database: every process that
 * shares it. Groups come from their commits; their members live in the processes, not in tables.
 */
export async function describeEmbeddedLog(db: SqlExecutor, prefix = ''): Promise<LogDescription> {
  const [partitions, offsets] = await Promise.all([
    db.query<{ topic: string; partition: number; next_offset: string }>(
      `SELECT topic, partition, next_offset::text AS next_offset FROM log_partitions
        WHERE left(topic, length($1)) = $1 ORDER BY topic, partition`,
      [prefix],
    ),
    db.query<{ group_id: string; topic: string; partition: number; next_offset: string }>(
      `SELECT group_id, topic, partition, next_offset::text AS next_offset FROM log_group_offsets
        WHERE left(group_id, length($1)) = $1 ORDER BY group_id, topic, partition`,
      [prefix],
    ),
  ])
  const topics = new Map<string, LogTopic>()
  for (const row of partitions.rows) {
    const topic = topics.get(row.topic) ?? { name: row.topic, partitions: [] }
    topic.partitions.push({ partition: Number(row.partition), endOffset: Number(row.next_offset) })
    topics.set(row.topic, topic)
  }
  const groups = new Map<string, LogGroup>()
  for (const row of offsets.rows) {
    const group = groups.get(row.group_id) ?? { group: row.group_id, state: null, members: null, committed: [] }
    group.committed.push({ topic: row.topic, partition: Number(row.partition), offset: Number(row.next_offset) })
    groups.set(row.group_id, group)
  }
  return { topics: [...topics.values()], groups: [...groups.values()] }
}
