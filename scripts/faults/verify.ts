/**
 * What must hold after every fault, checked from the outside: the database the app wrote, the
 * topics on the broker read from the beginning, and the invariant auditor.
 *
 * - durable: every order a 201 acknowledged is in `orders` and its OrderCreated is in Kafka;
 * - published: every outbox row is published, and is on its topic;
 * - per-key order: on every topic, per key, messages come in the order the outbox wrote them
 *   (its `id`), and events' versions per aggregate only go up; an exact copy of a message already
 *   seen is a duplicate (at-least-once publishing allows it), anything else going back is disorder;
 * - dead letters: every record on a `-dlq` topic is poison the suite injected; anything else was
 *   dead-lettered by the fault, which must never happen;
 * - the auditor (src/audit) is clean: every order settled, one capture, money, outbox, consumer lag.
 */
import { Admin } from '@platformatic/kafka'
import { type AuditReport, runAudit } from '../../src/audit/audit.ts'
import type { LagSource } from '../../src/audit/lag.ts'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { createKafkaTransport } from '../../src/platform/transport/kafka.ts'
import { namespaceTransport } from '../../src/platform/transport/namespaced.ts'
import type { IncomingMessage, Transport } from '../../src/platform/transport/port.ts'
import type { DeadLetterRecord } from '../../src/platform/transport/reliable-consumer.ts'
import type { PoisonMessage } from './poison.ts'

/** Keys of the poison messages the suite injects: how their dead letters are told from the others. */
export const POISON_KEY_PREFIX = 'poison-'

export interface Verification {
  accepted: number
  /** Accepted orders found in the database with their OrderCreated on the broker. */
  found: number
  /** Accepted orders not found, with where each is missing (at most 20 listed). */
  missing: string[]
  missingCount: number
  /** Outbox rows still unpublished, and published rows that are on no topic. */
  unpublished: number
  notOnBroker: number
  notOnBrokerSample: string[]
  /** Messages on the broker that are an exact copy of one earlier on the same topic. */
  duplicates: number
  outOfOrder: number
  outOfOrderSample: string[]
  /** Dead letters that are not the suite's poison: work the fault dead-lettered. */
  outageDeadLetters: number
  outageDeadLetterSample: string[]
  poisonDeadLetters: number
  /** Injected poison some group that reads its topic did not dead-letter (`topic key group`). */
  poisonNotDeadLettered: string[]
  audit: { ok: boolean; failed: string[] }
  /** Orders by status. */
  statuses: Record<string, number>
  ok: boolean
  problems: string[]
}

export interface VerifyOptions {
  db: SqlDatabase
  brokers: string[]
  prefix: string
  accepted: readonly string[]
  /** Poison the suite injected: each must be dead-lettered once by every group that reads its topic. */
  poison?: readonly PoisonMessage[]
}

/**
 * A Kafka transport of the suite's own, as the app's is made. One per call: the callers (drain
 * polls, one-off checks) have no lifetime to close a shared one at.
 */
function faultsTransport(brokers: string[]): Promise<Transport> {
  return createKafkaTransport({
    brokers,
    clientId: 'orderflow-faults',
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 200,
  })
}

/** Every message of every topic of the deployment (by prefix), by the topics' full names. */
export async function readPrefixedTopics(brokers: string[], prefix: string): Promise<Map<string, IncomingMessage[]>> {
  const transport = await faultsTransport(brokers)
  try {
    const topics = (await transport.describeLog({ prefix })).topics.map((t) => t.name).sort()
    const byTopic = new Map<string, IncomingMessage[]>()
    for (const topic of topics) {
      const messages: IncomingMessage[] = []
      const read = await transport.readTopic(topic, (m) => messages.push(m), { timeoutMs: 60_000 })
      if (read && !read.complete) throw new Error(`could not read all of ${topic} within 60 s`)
      byTopic.set(topic, messages)
    }
    return byTopic
  } finally {
    await transport.close()
  }
}

/** Each consumer group of the deployment (by prefix) and the topics its members subscribe to. */
export async function consumedTopics(brokers: string[], prefix: string): Promise<Map<string, string[]>> {
  const admin = new Admin({ clientId: 'orderflow-faults', bootstrapBrokers: brokers, requestTimeout: 15_000 })
  try {
    const groups = [...(await admin.listGroups()).keys()].filter((g) => g.startsWith(prefix))
    const described = groups.length > 0 ? await admin.describeGroups({ groups }) : new Map()
    const result = new Map<string, string[]>()
    for (const [id, group] of described) {
      const topics = new Set<string>()
      for (const member of group.members.values()) for (const t of member.metadata?.topics ?? []) topics.add(t)
      result.set(id, [...topics].sort())
    }
    return result
  } finally {
    await admin.close()
  }
}

/** Consumer lag of the deployment (by prefix), as a Kafka transport reports it. */
export function deploymentLag(brokers: string[], prefix: string): LagSource {
  return async (groups) => {
    const transport = namespaceTransport(await faultsTransport(brokers), prefix)
    try {
      return await transport.groupLag(groups)
    } finally {
      await transport.close()
    }
  }
}

export async function auditNow(db: SqlDatabase, brokers: string[], prefix: string): Promise<AuditReport> {
  return runAudit(db, { stuckAfterMs: 0, lag: deploymentLag(brokers, prefix) })
}

/** The failed checks of an audit, in one line. */
const failedChecks = (report: AuditReport) =>
  `audit: ${report.checks
    .filter((c) => !c.ok)
    .map((c) => `${c.name}: ${c.summary}`)
    .join('; ')}`

/**
 * Asks `check` every 500 ms until it answers 'drained' or `timeoutMs` passed, saying where it is every
 * 10 s. `check` says what is still open; a throw counts as not drained, with its message.
 */
async function pollUntilDrained(
  check: () => Promise<string>,
  timeoutMs: number,
  onProgress?: (line: string) => void,
): Promise<{ drainMs: number | null; last: string }> {
  const started = Date.now()
  let last = ''
  let lastReported = 0
  while (Date.now() - started < timeoutMs) {
    try {
      last = await check()
      if (last === 'drained') return { drainMs: Date.now() - started, last }
    } catch (error) {
      last = `(${(error as Error).message})`
    }
    if (onProgress && Date.now() - lastReported > 10_000) {
      lastReported = Date.now()
      onProgress(`draining for ${Math.round((Date.now() - started) / 1000)} s: ${last}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  return { drainMs: null, last }
}

/**
 * Waits until the system has worked off the fault: every order settled, the outbox empty and the
 * auditor clean. Resolves to how long that took, or `null` when it did not happen in `timeoutMs`.
 */
export function waitForDrain(
  options: { db: SqlDatabase; brokers: string[]; prefix: string; timeoutMs: number },
  onProgress?: (line: string) => void,
): Promise<{ drainMs: number | null; last: string }> {
  return pollUntilDrained(
    async () => {
      const { rows } = await options.db.query<{ open: string; pending: string }>(
        `SELECT (SELECT count(*) FROM orders WHERE status NOT IN ('DELIVERED', 'CANCELLED'))::text AS open,
                (SELECT count(*) FROM outbox WHERE published_at IS NULL)::text AS pending`,
      )
      const open = Number(rows[0]?.open)
      const pending = Number(rows[0]?.pending)
      if (open !== 0 || pending !== 0) return `${open} orders in flight, ${pending} outbox rows unpublished`
      const report = await auditNow(options.db, options.brokers, options.prefix)
      return report.ok ? 'drained' : failedChecks(report)
    },
    options.timeoutMs,
    onProgress,
  )
}

/**
 * waitForDrain for an app that holds its database alone (the embedded default's PGlite): asks the
 * app's own auditor (`GET /api/audit?stuckAfterMs=0`), which checks the same: every order settled,
 * the outbox empty, consumer lag 0.
 */
export function waitForDrainHttp(
  options: { urls: () => string[]; timeoutMs: number },
  onProgress?: (line: string) => void,
): Promise<{ drainMs: number | null; last: string }> {
  return pollUntilDrained(
    async () => {
      const url = options.urls()[0]
      if (url === undefined) return '(no app running)'
      const response = await fetch(`${url}/api/audit?stuckAfterMs=0`, { signal: AbortSignal.timeout(15_000) })
      if (response.status !== 200) return `(GET /api/audit answered ${response.status}: ${await response.text()})`
      const report = (await response.json()) as AuditReport
      return report.ok ? 'drained' : failedChecks(report)
    },
    options.timeoutMs,
    onProgress,
  )
}

export async function verify(options: VerifyOptions): Promise<Verification> {
  const { db, brokers, prefix } = options
  const problems: string[] = []
  // The outbox before the topics: a fault that did not drain leaves the relay publishing, and a
  // row it publishes between the two reads must count as unpublished, not as missing from Kafka.
  const { rows: outbox } = await db.query<{
    id: string
    topic: string
    message_key: string
    value: string
    published: boolean
  }>('SELECT id::text AS id, topic, message_key, value, published_at IS NOT NULL AS published FROM outbox ORDER BY id')
  const topics = await readPrefixedTopics(brokers, prefix)
  const onTopic = (name: string) => topics.get(`${prefix}${name}`) ?? topics.get(name) ?? []

  // Durable: in the database, and OrderCreated on order-events.
  const { rows: stored } = await db.query<{ id: string }>('SELECT id FROM orders WHERE id = ANY($1::text[])', [
    [...options.accepted],
  ])
  const inDatabase = new Set(stored.map((r) => r.id))
  const createdOnBroker = new Set<string>()
  for (const m of onTopic('order-events')) {
    const event = parse(m.value)
    if (event?.eventType === 'OrderCreated') createdOnBroker.add(m.key)
  }
  const missing: string[] = []
  for (const id of new Set(options.accepted)) {
    const where = [inDatabase.has(id) ? '' : 'database', createdOnBroker.has(id) ? '' : 'order-events'].filter(Boolean)
    if (where.length > 0) missing.push(`${id} (not in ${where.join(', ')})`)
  }
  const acceptedCount = new Set(options.accepted).size
  if (missing.length > 0) problems.push(`${missing.length} accepted orders lost: ${missing.slice(0, 5).join(', ')}`)

  // Published: every outbox row on its topic, and the order the outbox gave each key.
  const unpublished = outbox.filter((r) => !r.published).length
  if (unpublished > 0) problems.push(`${unpublished} outbox rows never published`)
  const fullTopic = (topic: string) => (topic.startsWith(prefix) ? topic : `${prefix}${topic}`)
  const outboxId = new Map<string, bigint>()
  for (const row of outbox) outboxId.set(identity(fullTopic(row.topic), row.message_key, row.value), BigInt(row.id))

  const seenCount = new Map<string, number>()
  let duplicates = 0
  let outOfOrder = 0
  const outOfOrderSample: string[] = []
  let poisonDeadLetters = 0
  const unprefixed = (name: string) => (name.startsWith(prefix) ? name.slice(prefix.length) : name)
  const poisonSeen = new Set<string>()
  let outageDeadLetters = 0
  const outageDeadLetterSample: string[] = []
  for (const [topic, messages] of topics) {
    if (topic.endsWith('-dlq')) {
      for (const m of messages) {
        const record = parse(m.value) as Partial<DeadLetterRecord> | undefined
        if (record?.key?.startsWith(POISON_KEY_PREFIX)) {
          poisonDeadLetters++
          poisonSeen.add(`${unprefixed(record.originalTopic ?? '')} ${record.key} ${unprefixed(record.groupId ?? '')}`)
          continue
        }
        outageDeadLetters++
        if (outageDeadLetterSample.length < 10) {
          outageDeadLetterSample.push(
            `${topic}@${m.partition}/${m.offset} key ${record?.key} group ${record?.groupId}: ${record?.reason} ` +
              `${record?.error?.code ?? ''} ${record?.error?.message?.slice(0, 200) ?? m.value.slice(0, 200)}`,
          )
        }
      }
      continue
    }
    // Per key: the highest outbox id and version (per aggregate) seen so far.
    const highestId = new Map<string, bigint>()
    const highestVersion = new Map<string, number>()
    for (const m of messages) {
      const id = identity(topic, m.key, m.value)
      const copies = (seenCount.get(id) ?? 0) + 1
      seenCount.set(id, copies)
      if (copies > 1) {
        duplicates++
        continue
      }
      let backwards: string | undefined
      const position = outboxId.get(id)
      if (position !== undefined) {
        const highest = highestId.get(m.key)
        if (highest !== undefined && position < highest) backwards = `outbox id ${position} after ${highest}`
        else highestId.set(m.key, position)
      }
      const event = parse(m.value)
      if (typeof event?.aggregateId === 'string' && typeof event.version === 'number') {
        const aggregate = `${m.key}\u0000${event.aggregateId}`
        const highest = highestVersion.get(aggregate)
        if (highest !== undefined && event.version <= highest) {
          backwards ??= `${event.aggregateId} version ${event.version} after ${highest}`
        } else highestVersion.set(aggregate, event.version)
      }
      if (backwards) {
        outOfOrder++
        if (outOfOrderSample.length < 10)
          outOfOrderSample.push(`${topic}@${m.partition}/${m.offset} key ${m.key}: ${backwards}`)
      }
    }
  }
  const notOnBrokerRows = outbox.filter(
    (r) => r.published && !seenCount.has(identity(fullTopic(r.topic), r.message_key, r.value)),
  )
  if (notOnBrokerRows.length > 0) {
    problems.push(
      `${notOnBrokerRows.length} published outbox rows are not on the broker: ${notOnBrokerRows
        .slice(0, 3)
        .map((r) => `#${r.id} ${r.topic} ${r.message_key}`)
        .join(', ')}`,
    )
  }
  if (outOfOrder > 0) problems.push(`${outOfOrder} messages out of order: ${outOfOrderSample.slice(0, 3).join('; ')}`)
  if (outageDeadLetters > 0) {
    problems.push(
      `${outageDeadLetters} dead letters that are not poison: ${outageDeadLetterSample.slice(0, 3).join('; ')}`,
    )
  }

  // A poison message whose key a group had parked already (a poison of the same key on another
  // topic it reads came first) waits behind that dead letter, in the group's parked messages: held,
  // not lost, and dead-lettered in its turn when an operator releases the key.
  const { rows: parkedRows } = await db.query<{ group_id: string; topic: string; message_key: string }>(
    `SELECT group_id, topic, message_key FROM parked_messages WHERE message_key LIKE $1`,
    [`${POISON_KEY_PREFIX}%`],
  )
  for (const row of parkedRows) {
    poisonSeen.add(`${unprefixed(row.topic)} ${row.message_key} ${unprefixed(row.group_id)}`)
  }
  const poisonNotDeadLettered: string[] = []
  for (const p of options.poison ?? []) {
    for (const group of p.groups) {
      const expected = `${unprefixed(p.topic)} ${p.key} ${unprefixed(group)}`
      if (!poisonSeen.has(expected)) poisonNotDeadLettered.push(expected)
    }
  }
  if (poisonNotDeadLettered.length > 0) {
    problems.push(
      `${poisonNotDeadLettered.length} poison messages neither dead-lettered nor parked by a group that reads them: ${poisonNotDeadLettered.slice(0, 3).join('; ')}`,
    )
  }

  const report = await auditNow(db, brokers, prefix)
  const failedChecks = report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.summary}`)
  if (!report.ok) problems.push(`audit: ${failedChecks.join('; ')}`)

  const { rows: statusRows } = await db.query<{ status: string; n: string }>(
    'SELECT status, count(*)::text AS n FROM orders GROUP BY status ORDER BY status',
  )
  // Also here, not only in the auditor: its "older than" cannot see an order whose created_at a
  // clock ahead of the database's put in the future.
  const open = statusRows.filter((r) => r.status !== 'DELIVERED' && r.status !== 'CANCELLED')
  if (open.length > 0) problems.push(`orders not settled: ${open.map((r) => `${r.n} ${r.status}`).join(', ')}`)
  return {
    accepted: acceptedCount,
    found: acceptedCount - missing.length,
    missing: missing.slice(0, 20),
    missingCount: missing.length,
    unpublished,
    notOnBroker: notOnBrokerRows.length,
    notOnBrokerSample: notOnBrokerRows.slice(0, 10).map((r) => `#${r.id} ${r.topic} ${r.message_key}`),
    duplicates,
    outOfOrder,
    outOfOrderSample,
    outageDeadLetters,
    outageDeadLetterSample,
    poisonDeadLetters,
    poisonNotDeadLettered,
    audit: { ok: report.ok, failed: failedChecks },
    statuses: Object.fromEntries(statusRows.map((r) => [r.status, Number(r.n)])),
    ok: problems.length === 0,
    problems,
  }
}

function identity(topic: string, key: string, value: string): string {
  return `${topic}\u0000${key}\u0000${value}`
}

function parse(value: string): Record<string, unknown> | undefined {
  try {
    const parsed = JSON.parse(value) as unknown
    return parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}
