import type { Admin } from '@platformatic/kafka'
import type { GroupLag } from './port.ts'

/**
 * The Kafka adapter's `groupLag`: the groups' committed offsets against the partitions' log end
 * offsets, read with the adapter's admin client whether or not a member of the group runs.
 */
export async function kafkaGroupLag(admin: Admin, groups: readonly string[]): Promise<GroupLag[]> {
  if (groups.length === 0) return []
  const known = await admin.listGroups()
  const present = groups.filter((group) => known.has(group))
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
  // A partition a group never committed on is not listed; it counts from the log's start.
  const metadata = await admin.metadata({ topics: [...topics.keys()] })
  for (const [name, partitions] of topics) {
    const count = metadata.topics.get(name)?.partitionsCount ?? 0
    for (let i = 0; i < count; i++) partitions.add(i)
  }
  // Timestamp -1 asks for each partition's end, -2 for its start (what retention left).
  const offsetsAt = async (timestamp: bigint) => {
    const answer = await admin.listOffsets({
      topics: [...topics].map(([name, partitions]) => ({
        name,
        partitions: [...partitions].map((partitionIndex) => ({ partitionIndex, timestamp })),
      })),
    })
    const offsets = new Map<string, bigint>()
    for (const topic of answer) {
      for (const p of topic.partitions) offsets.set(`${topic.name}/${p.partitionIndex}`, p.offset)
    }
    return offsets
  }
  const [endOf, startOf] = await Promise.all([offsetsAt(-1n), offsetsAt(-2n)])
  const result: GroupLag[] = []
  for (const group of committed) {
    for (const topic of group.topics) {
      const positions = new Map(topic.partitions.map((p) => [p.partitionIndex, p.committedOffset]))
      let lag = 0n
      for (const partition of topics.get(topic.name) ?? []) {
        const end = endOf.get(`${topic.name}/${partition}`) ?? 0n
        const start = startOf.get(`${topic.name}/${partition}`) ?? 0n
        // Only what the log still holds counts: retention may have moved its start past the
        // group's position (and -1 is no position at all).
        const at = positions.get(partition) ?? -1n
        const position = at > start ? at : start
        if (end > position) lag += end - position
      }
      result.push({ group: group.groupId, topic: topic.name, lag: Number(lag) })
    }
  }
  return result.sort((a, b) => a.group.localeCompare(b.group) || a.topic.localeCompare(b.topic))
}
