import type { SqlExecutor } from '../platform/sql/port.ts'
import type { LogDescription, LogGroupMember, LogPartition, Transport } from '../platform/transport/port.ts'
import { cachedFor, tablesPresent } from './tables.ts'

/**
 * Topics and consumer groups as the transport keeps them: partitions and their end offsets, each
 * group's committed offset and lag per partition, and the members where the transport knows them
 * (Kafka's group coordinator; the embedded log keeps its members in the process, not in tables),
 * joined with the database's dead letters. Names are the transport's: without the deployment's
 * prefix, as the services name them.
 */

export type PartitionEnd = LogPartition

export type GroupMemberView = LogGroupMember

export interface TopicView {
  name: string
  partitions: PartitionEnd[]
  /** Sum of the partitions' end offsets: every message ever written (retention aside). */
  messages: number
  /** Messages of this topic not yet committed, over every group that reads it. */
  lag: number
  groups: string[]
  /** Its dead-letter topic (`<name>-dlq`) when it has one, with the records it holds. */
  deadLetterTopic: string | null
  deadLetterRecords: number
  /** Open dead letters of this topic in the console's index (the `dead_letters` table). */
  openDeadLetters: number
  parkedKeys: number
}

export interface GroupPartition {
  topic: string
  partition: number
  /** The next offset the group reads (0 when it never committed on the partition). */
  committed: number
  endOffset: number
  lag: number
}

export interface GroupView {
  group: string
  state: string | null
  /** Null where the transport does not say (the embedded log). */
  members: GroupMemberView[] | null
  lag: number
  partitions: GroupPartition[]
}

export interface TopicsView {
  transport: 'embedded' | 'kafka'
  at: string
  topics: TopicView[]
  groups: GroupView[]
}

export type TopicsSource = { read(): Promise<TopicsView> }

/**
 * The topics view of `transport`'s log, cached: the brokers are asked at most every 5 s, the
 * embedded log's tables every second.
 */
export function topicsSource(transport: Pick<Transport, 'kind' | 'describeLog'>, db: SqlExecutor): TopicsSource {
  const ttlMs = transport.kind === 'kafka' ? 5_000 : 1_000
  return { read: cachedFor(ttlMs, async () => assemble(await transport.describeLog(), db, transport.kind)) }
}

async function assemble(log: LogDescription, db: SqlExecutor, transport: TopicsView['transport']): Promise<TopicsView> {
  const { open, parked } = await deadLetterCountsByTopic(db)
  const ends = new Map(log.topics.map((topic) => [topic.name, topic.partitions]))
  const groups: GroupView[] = []
  const lagOfTopic = new Map<string, number>()
  const readers = new Map<string, Set<string>>()
  for (const { group, state, members, committed: mine } of log.groups) {
    const partitions: GroupPartition[] = []
    // Every partition of every topic the group committed on: one it never committed on counts from 0.
    for (const topic of new Set(mine.map((c) => c.topic))) {
      readers.set(topic, (readers.get(topic) ?? new Set()).add(group))
      for (const end of ends.get(topic) ?? []) {
        const committedOffset = mine.find((c) => c.topic === topic && c.partition === end.partition)?.offset ?? 0
        const lag = Math.max(0, end.endOffset - committedOffset)
        partitions.push({ topic, partition: end.partition, committed: committedOffset, endOffset: end.endOffset, lag })
        lagOfTopic.set(topic, (lagOfTopic.get(topic) ?? 0) + lag)
      }
    }
    groups.push({
      group,
      state,
      members,
      lag: partitions.reduce((sum, p) => sum + p.lag, 0),
      partitions,
    })
  }
  const topics: TopicView[] = [...ends]
    .filter(([name]) => !name.endsWith('-dlq'))
    .map(([name, partitions]) => {
      const dlq = ends.get(`${name}-dlq`)
      return {
        name,
        partitions,
        messages: partitions.reduce((sum, p) => sum + p.endOffset, 0),
        lag: lagOfTopic.get(name) ?? 0,
        groups: [...(readers.get(name) ?? [])].sort(),
        deadLetterTopic: dlq ? `${name}-dlq` : null,
        deadLetterRecords: dlq ? dlq.reduce((sum, p) => sum + p.endOffset, 0) : 0,
        openDeadLetters: open.get(name) ?? 0,
        parkedKeys: parked.get(name) ?? 0,
      }
    })
    .sort((a, b) => a.name.localeCompare(b.name))
  groups.sort((a, b) => a.group.localeCompare(b.group))
  return { transport, at: new Date().toISOString(), topics, groups }
}

async function deadLetterCountsByTopic(db: SqlExecutor) {
  const present = await tablesPresent(db, ['dead_letters', 'parked_keys'])
  const open = new Map<string, number>()
  const parked = new Map<string, number>()
  if (present.has('dead_letters')) {
    const { rows } = await db.query<{ topic: string; n: string }>(
      "SELECT topic, count(*)::text AS n FROM dead_letters WHERE state = 'open' GROUP BY topic",
    )
    for (const row of rows) open.set(row.topic, Number(row.n))
  }
  if (present.has('parked_keys')) {
    const { rows } = await db.query<{ topic: string; n: string }>(
      'SELECT topic, count(*)::text AS n FROM parked_keys GROUP BY topic',
    )
    for (const row of rows) parked.set(row.topic, Number(row.n))
  }
  return { open, parked }
}
