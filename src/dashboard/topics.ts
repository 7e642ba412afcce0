import { Admin } from '@platformatic/kafka'
import type { Config } from '../platform/config.ts'
import type { SqlExecutor } from '../platform/sql/port.ts'
import { kafkaSecurityOptions } from '../platform/transport/kafka.ts'
import { cachedFor, tablesPresent } from './tables.ts'

/**
 * Topics and consumer groups as the transport keeps them: partitions and their end offsets, each
 * group's committed offset and lag per partition, and the members where the transport knows them
 * (Kafka's group coordinator; the embedded log keeps its members in the process, not in tables).
 * Names come back without the deployment's prefix, as the services name them.
 */

export interface PartitionEnd {
  partition: number
  endOffset: number
}

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

export interface GroupMemberView {
  id: string
  clientId: string
  host: string
  assignments: { topic: string; partitions: number[] }[]
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

interface RawState {
  ends: Map<string, PartitionEnd[]>
  committed: { group: string; topic: string; partition: number; offset: number }[]
  groups: Map<string, { state: string | null; members: GroupMemberView[] | null }>
}

export type TopicsSource = { read(): Promise<TopicsView>; close(): Promise<void> }

const unprefixed = (prefix: string, name: string) => (name.startsWith(prefix) ? name.slice(prefix.length) : name)

/** The topics view, cached for `ttlMs` (the Kafka admin is asked at most that often). */
export function topicsSourceFor(config: Pick<Config, 'transport' | 'kafka'>, db: SqlExecutor): TopicsSource {
  const prefix = config.kafka.topicPrefix
  const kafka = config.transport === 'kafka' ? kafkaState(config) : undefined
  const ttlMs = kafka ? 5_000 : 1_000
  const read = cachedFor(ttlMs, async () =>
    assemble(await (kafka ? kafka.read() : embeddedState(db, prefix)), db, kafka ? 'kafka' : 'embedded'),
  )
  return {
    read,
    close: () => kafka?.close() ?? Promise.resolve(),
  }
}

async function embeddedState(db: SqlExecutor, prefix: string): Promise<RawState> {
  const present = await tablesPresent(db, ['log_partitions', 'log_group_offsets'])
  const ends = new Map<string, PartitionEnd[]>()
  const committed: RawState['committed'] = []
  if (present.has('log_partitions')) {
    const { rows } = await db.query<{ topic: string; partition: number; next_offset: string }>(
      'SELECT topic, partition, next_offset::text FROM log_partitions ORDER BY topic, partition',
    )
    for (const row of rows) {
      if (!row.topic.startsWith(prefix)) continue
      const name = unprefixed(prefix, row.topic)
      const list = ends.get(name) ?? []
      list.push({ partition: row.partition, endOffset: Number(row.next_offset) })
      ends.set(name, list)
    }
  }
  if (present.has('log_group_offsets')) {
    const { rows } = await db.query<{ group_id: string; topic: string; partition: number; next_offset: string }>(
      'SELECT group_id, topic, partition, next_offset::text FROM log_group_offsets ORDER BY group_id, topic, partition',
    )
    for (const row of rows) {
      if (!row.group_id.startsWith(prefix)) continue
      committed.push({
        group: unprefixed(prefix, row.group_id),
        topic: unprefixed(prefix, row.topic),
        partition: row.partition,
        offset: Number(row.next_offset),
      })
    }
  }
  const groups = new Map([...new Set(committed.map((c) => c.group))].map((g) => [g, { state: null, members: null }]))
  return { ends, committed, groups }
}

/** One admin client for the process's lifetime, made again after a failure. */
function kafkaState(config: Pick<Config, 'kafka'>) {
  const prefix = config.kafka.topicPrefix
  let admin: Admin | undefined
  const client = () => {
    admin ??= new Admin({
      clientId: `${config.kafka.clientId}-dashboard`,
      bootstrapBrokers: config.kafka.brokers,
      ...kafkaSecurityOptions(config.kafka.security),
      connectTimeout: 5_000,
      requestTimeout: 10_000,
    })
    return admin
  }
  return {
    async read(): Promise<RawState> {
      const kafka = client()
      try {
        const names = (await kafka.listTopics()).filter((t) => t.startsWith(prefix) && !t.startsWith('__'))
        const ends = new Map<string, PartitionEnd[]>()
        if (names.length > 0) {
          const metadata = await kafka.metadata({ topics: names })
          const listed = await kafka.listOffsets({
            topics: names.map((name) => ({
              name,
              partitions: Array.from({ length: metadata.topics.get(name)?.partitionsCount ?? 0 }, (_, i) => ({
                partitionIndex: i,
                timestamp: -1n,
              })),
            })),
          })
          for (const topic of listed) {
            ends.set(
              unprefixed(prefix, topic.name),
              topic.partitions
                .map((p) => ({ partition: p.partitionIndex, endOffset: Number(p.offset) }))
                .sort((a, b) => a.partition - b.partition),
            )
          }
        }
        const groupIds = [...(await kafka.listGroups()).keys()].filter((g) => g.startsWith(prefix))
        const groups = new Map<string, { state: string | null; members: GroupMemberView[] | null }>()
        const committed: RawState['committed'] = []
        if (groupIds.length > 0) {
          const described = await kafka.describeGroups({ groups: groupIds })
          for (const [id, group] of described) {
            groups.set(unprefixed(prefix, id), {
              state: String(group.state),
              members: [...group.members.values()].map((m) => ({
                id: m.id,
                clientId: m.clientId,
                host: m.clientHost,
                assignments: [...(m.assignments?.values() ?? [])].map((a) => ({
                  topic: unprefixed(prefix, a.topic),
                  partitions: [...a.partitions].sort((x, y) => x - y),
                })),
              })),
            })
          }
          for (const group of await kafka.listConsumerGroupOffsets({ groups: groupIds })) {
            for (const topic of group.topics) {
              for (const p of topic.partitions) {
                committed.push({
                  group: unprefixed(prefix, group.groupId),
                  topic: unprefixed(prefix, topic.name),
                  partition: p.partitionIndex,
                  offset: p.committedOffset < 0n ? 0 : Number(p.committedOffset),
                })
              }
            }
          }
        }
        return { ends, committed, groups }
      } catch (error) {
        admin = undefined
        await kafka.close().catch(() => {})
        throw error
      }
    },
    async close() {
      const closing = admin
      admin = undefined
      await closing?.close().catch(() => {})
    },
  }
}

async function assemble(raw: RawState, db: SqlExecutor, transport: TopicsView['transport']): Promise<TopicsView> {
  const { open, parked } = await deadLetterCountsByTopic(db)
  const groups: GroupView[] = []
  const lagOfTopic = new Map<string, number>()
  const readers = new Map<string, Set<string>>()
  for (const [group, info] of raw.groups) {
    const mine = raw.committed.filter((c) => c.group === group)
    const partitions: GroupPartition[] = []
    // Every partition of every topic the group committed on: one it never committed on counts from 0.
    for (const topic of new Set(mine.map((c) => c.topic))) {
      readers.set(topic, (readers.get(topic) ?? new Set()).add(group))
      for (const end of raw.ends.get(topic) ?? []) {
        const committedOffset = mine.find((c) => c.topic === topic && c.partition === end.partition)?.offset ?? 0
        const lag = Math.max(0, end.endOffset - committedOffset)
        partitions.push({ topic, partition: end.partition, committed: committedOffset, endOffset: end.endOffset, lag })
        lagOfTopic.set(topic, (lagOfTopic.get(topic) ?? 0) + lag)
      }
    }
    groups.push({
      group,
      state: info.state,
      members: info.members,
      lag: partitions.reduce((sum, p) => sum + p.lag, 0),
      partitions,
    })
  }
  const topics: TopicView[] = [...raw.ends]
    .filter(([name]) => !name.endsWith('-dlq'))
    .map(([name, partitions]) => {
      const dlq = raw.ends.get(`${name}-dlq`)
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
