/**
 * Who holds which partitions, as the broker sees it: the consumer groups of one deployment (by
 * KAFKA_TOPIC_PREFIX), each member named by its process. orderflow's Kafka transport logs no
 * assignment of its own, so the broker is where the movement of partitions is read: every
 * process of the scale-out test runs with a KAFKA_CLIENT_ID of its own (`edge-a-2`: the second
 * start of edge-a), and a member's client id is `<KAFKA_CLIENT_ID>-<group>`.
 */
import { Admin } from '@platformatic/kafka'

/** One group at one moment: its state, and per member (process) the partitions it holds. */
export interface GroupAssignment {
  state: string
  /** `edge-a-1` → `['order_commands:0', 'order_commands:2']` (topics without the prefix). */
  members: Map<string, string[]>
}

/** Every group of the deployment, without the prefix. */
export type Assignments = Map<string, GroupAssignment>

export interface AssignmentChange {
  /** Since the watch started. */
  atMs: number
  group: string
  text: string
}

export interface AssignmentWatch {
  /** The broker's answer last read. */
  latest(): Assignments
  /** Every change of a group's assignment seen, in order. */
  changes(): AssignmentChange[]
  /** Changes seen since `fromMs` (watch time), by group, for the test's output. */
  describeSince(fromMs: number): string[]
  elapsedMs(): number
  stop(): Promise<void>
}

const unprefixed = (prefix: string, name: string) => (name.startsWith(prefix) ? name.slice(prefix.length) : name)

export async function readAssignments(admin: Admin, prefix: string): Promise<Assignments> {
  const groups = [...(await admin.listGroups()).keys()].filter((g) => g.startsWith(prefix)).sort()
  const result: Assignments = new Map()
  if (groups.length === 0) return result
  const described = await admin.describeGroups({ groups })
  for (const [id, group] of described) {
    const members = new Map<string, string[]>()
    for (const member of group.members.values()) {
      // `<KAFKA_CLIENT_ID>-<group>`: what is left is the process that runs the member.
      const owner = member.clientId.endsWith(`-${id}`) ? member.clientId.slice(0, -(id.length + 1)) : member.clientId
      const partitions: string[] = []
      for (const { topic, partitions: numbers } of member.assignments?.values() ?? []) {
        for (const n of numbers) partitions.push(`${unprefixed(prefix, topic)}:${n}`)
      }
      members.set(owner, [...(members.get(owner) ?? []), ...partitions].sort())
    }
    result.set(unprefixed(prefix, id), { state: group.state, members })
  }
  return result
}

/** `edge-a-1: order_commands 0,2 | edge-b-1: order_commands 1`; a group between members says so. */
export function formatAssignment(group: GroupAssignment | undefined): string {
  if (!group) return '(no such group)'
  if (group.state !== 'Stable') return `(${group.state}, ${group.members.size} members)`
  const owners = [...group.members.keys()].sort()
  return owners
    .map((owner) => {
      const byTopic = new Map<string, string[]>()
      for (const partition of group.members.get(owner) ?? []) {
        const [topic = '', n = ''] = partition.split(/:(?=\d+$)/)
        byTopic.set(topic, [...(byTopic.get(topic) ?? []), n])
      }
      const held = [...byTopic].map(([topic, ns]) => `${topic} ${ns.join(',')}`).join('; ')
      return `${owner}: ${held || 'nothing'}`
    })
    .join(' | ')
}

/**
 * Stable, with exactly `owners` as its members, each holding at least one partition: the group
 * has settled on these processes and none of them is a standby.
 */
export function settledOn(group: GroupAssignment | undefined, owners: readonly string[]): boolean {
  if (group?.state !== 'Stable') return false
  const members = [...group.members.keys()].sort()
  if (members.join() !== [...owners].sort().join()) return false
  return members.every((m) => (group.members.get(m)?.length ?? 0) > 0)
}

/** Reads the assignments every `intervalMs` and keeps each change, until stopped. */
export function watchAssignments(options: { brokers: string[]; prefix: string; intervalMs?: number }): AssignmentWatch {
  const admin = new Admin({ clientId: 'scale-test-watch', bootstrapBrokers: options.brokers, requestTimeout: 10_000 })
  const started = Date.now()
  const changes: AssignmentChange[] = []
  const last = new Map<string, string>()
  let latest: Assignments = new Map()
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      try {
        latest = await readAssignments(admin, options.prefix)
        for (const [group, assignment] of latest) {
          const text = formatAssignment(assignment)
          if (last.get(group) !== text) {
            last.set(group, text)
            changes.push({ atMs: Date.now() - started, group, text })
          }
        }
      } catch {
        // The next round asks again: a watch must not fail the test on one slow answer.
      }
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 300))
    }
  })()
  return {
    latest: () => latest,
    changes: () => changes,
    elapsedMs: () => Date.now() - started,
    describeSince(fromMs) {
      const lines: string[] = []
      const groups = [...new Set(changes.map((c) => c.group))].sort()
      for (const group of groups) {
        const own = changes.filter((c) => c.group === group)
        // The state the window started in, then every change within it.
        const before = own.filter((c) => c.atMs < fromMs).at(-1)
        const within = own.filter((c) => c.atMs >= fromMs)
        lines.push(`${group}:`)
        if (before) lines.push(`    before          ${before.text}`)
        for (const c of within)
          lines.push(`    +${((c.atMs - fromMs) / 1000).toFixed(1).padStart(5)} s       ${c.text}`)
      }
      return lines
    },
    async stop() {
      stopped = true
      await loop
      await admin.close().catch(() => {})
    },
  }
}
