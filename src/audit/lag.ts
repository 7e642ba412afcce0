import { Admin } from '@platformatic/kafka'
import { DELIVERY_COMMANDS_GROUP, DELIVERY_DISPATCH_EVENTS_GROUP } from '../delivery/index.ts'
import { DISPATCH_COMMANDS_GROUP, DISPATCH_ORDER_EVENTS_GROUP } from '../dispatch/index.ts'
import { ORDER_JOURNEY_GROUP } from '../order/consumers/journey.ts'
import { ORDER_COMMANDS_GROUP } from '../order/consumers/order-commands.ts'
import { PAYMENT_COMMANDS_GROUP, PAYMENT_ORDER_EVENTS_GROUP } from '../payment/index.ts'
import type { KafkaSecurity } from '../platform/config.ts'
import type { SqlExecutor } from '../platform/sql/port.ts'
import { kafkaSecurityOptions } from '../platform/transport/kafka.ts'
import { SAGA_GROUP } from '../saga/consumers/saga-inputs.ts'

/**
 * Consumer lag for the auditor: how many messages each of the journey's consumer groups has not
 * committed yet, read from where the transport keeps it (the embedded log's tables, or the Kafka
 * brokers' committed offsets and log ends). The auditor is an operator's tool that looks across
 * services, so it names their groups here.
 */

/** Every consumer group of the journey, in both modes (a group that never ran is left out). */
export const JOURNEY_GROUPS = [
  ORDER_COMMANDS_GROUP,
  ORDER_JOURNEY_GROUP,
  PAYMENT_COMMANDS_GROUP,
  PAYMENT_ORDER_EVENTS_GROUP,
  DISPATCH_COMMANDS_GROUP,
  DISPATCH_ORDER_EVENTS_GROUP,
  DELIVERY_COMMANDS_GROUP,
  DELIVERY_DISPATCH_EVENTS_GROUP,
  SAGA_GROUP,
]

export interface GroupLag {
  group: string
  topic: string
  lag: number
}

/** Reads the lag of the groups; names come back without the deployment's prefix. */
export type LagSource = (groups: readonly string[]) => Promise<GroupLag[]>

const unprefixed = (prefix: string, name: string) => (name.startsWith(prefix) ? name.slice(prefix.length) : name)

/** The embedded log: committed positions and partition ends are tables in the database. */
export function embeddedLag(db: SqlExecutor, prefix = ''): LagSource {
  return async (groups) => {
    const exists = await db.query<{ t: string | null }>("SELECT to_regclass('log_group_offsets')::text AS t")
    if (!exists.rows[0]?.t) return []
    // Every partition of every topic a group has committed on: a partition it never committed on
    // counts from offset 0, as the group would read it.
    const { rows } = await db.query<{ group_id: string; topic: string; lag: string }>(
      `WITH group_topics AS (
         SELECT DISTINCT group_id, topic FROM log_group_offsets WHERE group_id = ANY($1::text[]))
       SELECT gt.group_id, gt.topic, sum(p.next_offset - coalesce(g.next_offset, 0))::text AS lag
         FROM group_topics gt
         JOIN log_partitions p ON p.topic = gt.topic
         LEFT JOIN log_group_offsets g ON g.group_id = gt.group_id AND g.topic = p.topic AND g.partition = p.partition
        GROUP BY gt.group_id, gt.topic
        ORDER BY gt.group_id, gt.topic`,
      [groups.map((g) => `${prefix}${g}`)],
    )
    return rows.map((r) => ({
      group: unprefixed(prefix, r.group_id),
      topic: unprefixed(prefix, r.topic),
      lag: Number(r.lag),
    }))
  }
}

/** Kafka: the groups' committed offsets against the partitions' log end offsets. */
export function kafkaLag(options: {
  brokers: string[]
  clientId: string
  prefix?: string
  security?: KafkaSecurity
}): LagSource {
  const prefix = options.prefix ?? ''
  return async (groups) => {
    const admin = new Admin({
      clientId: `${options.clientId}-audit`,
      bootstrapBrokers: options.brokers,
      ...kafkaSecurityOptions(options.security),
      connectTimeout: 5_000,
      requestTimeout: 10_000,
    })
    try {
      const known = await admin.listGroups()
      const present = groups.map((g) => `${prefix}${g}`).filter((g) => known.has(g))
      if (present.length === 0) return []
      const committed = await admin.listConsumerGroupOffsets({ groups: present })
      const topics = new Map<string, Set<number>>()
      for (const group of committed) {
        for (const topic of group.topics) {
          const partitions = topics.get(topic.name) ?? new Set<number>()
          for (const p of topic.partitions) partitions.add(p.partitionIndex)
          topics.set(topic.name, partitions)
        }
      }
      if (topics.size === 0) return []
      // A partition a group never committed on is not listed; it counts from offset 0.
      const metadata = await admin.metadata({ topics: [...topics.keys()] })
      for (const [name, partitions] of topics) {
        const count = metadata.topics.get(name)?.partitionsCount ?? 0
        for (let i = 0; i < count; i++) partitions.add(i)
      }
      const ends = await admin.listOffsets({
        topics: [...topics].map(([name, partitions]) => ({
          name,
          partitions: [...partitions].map((partitionIndex) => ({ partitionIndex, timestamp: -1n })),
        })),
      })
      const endOf = new Map<string, bigint>()
      for (const topic of ends) {
        for (const p of topic.partitions) endOf.set(`${topic.name}/${p.partitionIndex}`, p.offset)
      }
      const result: GroupLag[] = []
      for (const group of committed) {
        for (const topic of group.topics) {
          const at = new Map(
            topic.partitions.map((p) => [p.partitionIndex, p.committedOffset < 0n ? 0n : p.committedOffset]),
          )
          let lag = 0n
          for (const partition of topics.get(topic.name) ?? []) {
            const end = endOf.get(`${topic.name}/${partition}`) ?? 0n
            const position = at.get(partition) ?? 0n
            if (end > position) lag += end - position
          }
          result.push({
            group: unprefixed(prefix, group.groupId),
            topic: unprefixed(prefix, topic.name),
            lag: Number(lag),
          })
        }
      }
      return result.sort((a, b) => a.group.localeCompare(b.group) || a.topic.localeCompare(b.topic))
    } finally {
      await admin.close().catch(() => {})
    }
  }
}
