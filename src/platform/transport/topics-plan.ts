import { Admin, ConfigResourceTypes, IncrementalAlterConfigOperationTypes } from '@platformatic/kafka'
import type { Config } from '../config.ts'
import { kafkaSecurityOptions } from './kafka.ts'

/**
 * Topics as code: what a Kafka cluster must change so that every topic orderflow uses exists as
 * the configuration says (KAFKA_PARTITIONS, KAFKA_REPLICATION_FACTOR, and, when set,
 * KAFKA_TOPIC_RETENTION_MS and KAFKA_MIN_INSYNC_REPLICAS), under KAFKA_TOPIC_PREFIX.
 *
 * `planTopics` compares the desired topics with what the cluster holds and is pure, so every rule
 * below is unit-tested without a broker; `readClusterState` and `applyTopicPlan` are its Kafka side.
 *
 * - A missing topic is created with every desired setting.
 * - Too few partitions: partitions are added. Adding moves keys to other partitions (the producer
 *   hashes over the partition count), so per-key order holds only for what is written afterwards;
 *   that is the operator's choice to make by raising KAFKA_PARTITIONS, never this tool's.
 * - Too many partitions is reported, never changed: Kafka cannot remove partitions.
 * - A replication factor that differs is reported with a `kafka-reassign-partitions.sh` file,
 *   not applied: moving replicas copies whole partitions between brokers, which an operator
 *   schedules and throttles.
 * - Managed configs (`retention.ms`, `min.insync.replicas`) are compared by the value in effect,
 *   the topic's own or the broker's default, and set with IncrementalAlterConfigs, which leaves
 *   every other config of the topic alone. An unset variable is not managed at all.
 *
 * On Kafka the services do not create topics unless told to (KAFKA_CREATE_TOPICS=on, partitions
 * and replication factor only): `apply` runs before they start (compose's one-shot setup does), and
 * a service that finds a topic missing waits, saying so, until it exists. Applying needs a principal allowed to CREATE, ALTER, DESCRIBE_CONFIGS and ALTER_CONFIGS the
 * topics, which a service's own principal (src/kafka-acls.ts) is not.
 */

/** Kafka's names of the topic configs orderflow manages when they are configured. */
export const RETENTION_MS = 'retention.ms'
export const MIN_INSYNC_REPLICAS = 'min.insync.replicas'

export interface TopicSettings {
  partitions: number
  replicationFactor: number
  /** The managed configs, by Kafka's name; a config not named here is left as it is. */
  configs: Readonly<Record<string, string>>
}

export interface DesiredTopic extends TopicSettings {
  /** The name on the cluster, with the deployment's prefix. */
  name: string
}

/** A topic as the cluster holds it. */
export interface ExistingTopic {
  name: string
  /** The replicas (broker ids, preferred leader first) of each partition, by partition index. */
  replicas: readonly (readonly number[])[]
  /** The value in effect of each managed config: the topic's own, else the broker's default. */
  configs: Readonly<Record<string, string | undefined>>
}

export interface ClusterState {
  /** Ids of the brokers in the cluster, for a reassignment that adds replicas. */
  brokers: readonly number[]
  topics: readonly ExistingTopic[]
}

export interface ConfigChange {
  name: string
  from: string | undefined
  to: string
}

/** What `applyTopicPlan` does to a topic, in order. */
export type TopicAction =
  | { kind: 'create' }
  | { kind: 'add-partitions'; from: number; to: number }
  | { kind: 'set-configs'; configs: readonly ConfigChange[] }

/** A difference `applyTopicPlan` leaves to an operator. */
export type TopicDrift =
  | { kind: 'more-partitions'; actual: number; desired: number }
  | {
      kind: 'replication-factor'
      /** The fewest replicas any partition has. */
      actual: number
      desired: number
      /** False when the cluster has fewer brokers than the desired replication factor. */
      reassignable: boolean
    }

export interface TopicPlanEntry {
  topic: string
  desired: TopicSettings
  /** Undefined when the topic does not exist. */
  actual: TopicSettings | undefined
  actions: readonly TopicAction[]
  drift: readonly TopicDrift[]
}

/** One partition's new replicas, as `kafka-reassign-partitions.sh --reassignment-json-file` reads them. */
export interface PartitionReassignment {
  topic: string
  partition: number
  replicas: number[]
}

export interface TopicPlan {
  topics: readonly TopicPlanEntry[]
  /** The reassignment file for every reassignable replication-factor drift; undefined when there is none. */
  reassignment: { version: 1; partitions: PartitionReassignment[] } | undefined
}

/** The topics orderflow wants, named as the cluster names them, from the deployment's configuration. */
export function desiredTopics(logicalNames: Iterable<string>, kafka: Config['kafka']): DesiredTopic[] {
  const configs: Record<string, string> = {}
  if (kafka.topicRetentionMs !== undefined) configs[RETENTION_MS] = String(kafka.topicRetentionMs)
  if (kafka.minInsyncReplicas !== undefined) configs[MIN_INSYNC_REPLICAS] = String(kafka.minInsyncReplicas)
  return [...new Set(logicalNames)].sort().map((name) => ({
    name: `${kafka.topicPrefix}${name}`,
    partitions: kafka.partitions,
    replicationFactor: kafka.replicationFactor,
    configs,
  }))
}

/** What would change for `desired` to hold on a cluster in `state`. Pure. */
export function planTopics(desired: readonly DesiredTopic[], state: ClusterState): TopicPlan {
  const existing = new Map(state.topics.map((topic) => [topic.name, topic]))
  const brokers = [...state.brokers].sort((a, b) => a - b)
  const reassignments: PartitionReassignment[] = []
  const topics = desired.map((want): TopicPlanEntry => {
    const settings = { partitions: want.partitions, replicationFactor: want.replicationFactor, configs: want.configs }
    const have = existing.get(want.name)
    if (!have)
      return { topic: want.name, desired: settings, actual: undefined, actions: [{ kind: 'create' }], drift: [] }

    const actions: TopicAction[] = []
    const drift: TopicDrift[] = []
    const partitions = have.replicas.length
    if (partitions < want.partitions) actions.push({ kind: 'add-partitions', from: partitions, to: want.partitions })
    if (partitions > want.partitions)
      drift.push({ kind: 'more-partitions', actual: partitions, desired: want.partitions })

    const replicationFactor = partitions === 0 ? 0 : Math.min(...have.replicas.map((replicas) => replicas.length))
    if (have.replicas.some((replicas) => replicas.length !== want.replicationFactor)) {
      const reassignable = want.replicationFactor <= brokers.length
      drift.push({
        kind: 'replication-factor',
        actual: replicationFactor,
        desired: want.replicationFactor,
        reassignable,
      })
      if (reassignable) reassignments.push(...reassign(want.name, have.replicas, want.replicationFactor, brokers))
    }

    const changes = Object.entries(want.configs)
      .filter(([name, value]) => have.configs[name] !== value)
      .map(([name, value]) => ({ name, from: have.configs[name], to: value }))
    if (changes.length > 0) actions.push({ kind: 'set-configs', configs: changes })

    const actualConfigs = Object.fromEntries(
      Object.keys(want.configs).flatMap((name) => {
        const value = have.configs[name]
        return value === undefined ? [] : [[name, value]]
      }),
    )
    return {
      topic: want.name,
      desired: settings,
      actual: { partitions, replicationFactor, configs: actualConfigs },
      actions,
      drift,
    }
  })
  return {
    topics,
    reassignment: reassignments.length > 0 ? { version: 1, partitions: reassignments } : undefined,
  }
}

/** Whether the cluster differs from the configuration at all: something to apply, or to report. */
export function planHasDifferences(plan: TopicPlan): boolean {
  return plan.topics.some((entry) => entry.actions.length > 0 || entry.drift.length > 0)
}

/**
 * New replicas for the partitions whose count differs: the preferred leader and the replicas
 * already there stay (no data moves for them); brokers are added from a starting point that
 * shifts with the partition, so the new replicas spread over the cluster.
 */
function reassign(
  topic: string,
  current: readonly (readonly number[])[],
  replicationFactor: number,
  brokers: readonly number[],
): PartitionReassignment[] {
  return current.flatMap((replicas, partition) => {
    if (replicas.length === replicationFactor) return []
    if (replicas.length > replicationFactor)
      return [{ topic, partition, replicas: replicas.slice(0, replicationFactor) }]
    const rotated = brokers.map((_, i) => brokers[(partition + i) % brokers.length] as number)
    const added = rotated.filter((broker) => !replicas.includes(broker))
    return [{ topic, partition, replicas: [...replicas, ...added].slice(0, replicationFactor) }]
  })
}

// ---- Kafka ----

/** An admin client for the deployment's cluster, with its SASL and TLS settings. */
export function topicsAdmin(kafka: Config['kafka']): Admin {
  return new Admin({
    clientId: `${kafka.clientId}-topics`,
    bootstrapBrokers: kafka.brokers,
    ...kafkaSecurityOptions(kafka.security),
    retries: kafka.retryMax,
    retryDelay: kafka.retryBackoffMs,
    connectTimeout: 5_000,
    requestTimeout: 15_000,
  })
}

/** What the cluster holds of `names` (topics that do not exist are left out). */
export async function readClusterState(
  admin: Admin,
  names: readonly string[],
  configNames: readonly string[],
): Promise<ClusterState> {
  const listed = new Set(await admin.listTopics())
  const present = names.filter((name) => listed.has(name))
  const metadata = await admin.metadata({ topics: present, forceUpdate: true })
  const configs = new Map<string, Record<string, string | undefined>>()
  if (present.length > 0 && configNames.length > 0) {
    const described = await admin.describeConfigs({
      resources: present.map((name) => ({
        resourceType: ConfigResourceTypes.TOPIC,
        resourceName: name,
        configurationKeys: [...configNames],
      })),
    })
    for (const resource of described) {
      configs.set(
        resource.resourceName,
        Object.fromEntries(resource.configs.map((config) => [config.name, config.value ?? undefined])),
      )
    }
  }
  return {
    brokers: [...metadata.brokers.keys()],
    topics: present.flatMap((name) => {
      const topic = metadata.topics.get(name)
      if (!topic) return []
      const replicas = Array.from({ length: topic.partitionsCount }, (_, i) => topic.partitions[i]?.replicas ?? [])
      return [{ name, replicas, configs: configs.get(name) ?? {} }]
    }),
  }
}

export interface TopicApplied {
  topic: string
  /** What was done, in words (`created with 3 partitions`), or why it failed. */
  outcome: string
  ok: boolean
}

/**
 * Carries out the plan's actions, one topic after another, and says so after each topic. A topic
 * that fails does not stop the others; drift is left alone.
 */
export async function applyTopicPlan(
  admin: Admin,
  plan: TopicPlan,
  onTopic: (applied: TopicApplied, index: number, total: number) => void = () => {},
): Promise<TopicApplied[]> {
  const work = plan.topics.filter((entry) => entry.actions.length > 0)
  const results: TopicApplied[] = []
  for (const [index, entry] of work.entries()) {
    const done: string[] = []
    let applied: TopicApplied
    try {
      for (const action of entry.actions) done.push(await applyAction(admin, entry, action))
      applied = { topic: entry.topic, outcome: done.join('; '), ok: true }
    } catch (error) {
      applied = { topic: entry.topic, outcome: [...done, `failed: ${reasonOf(error)}`].join('; '), ok: false }
    }
    results.push(applied)
    onTopic(applied, index + 1, work.length)
  }
  return results
}

async function applyAction(admin: Admin, entry: TopicPlanEntry, action: TopicAction): Promise<string> {
  const { topic, desired } = entry
  switch (action.kind) {
    case 'create':
      try {
        await admin.createTopics({
          topics: [topic],
          partitions: desired.partitions,
          replicas: desired.replicationFactor,
          configs: Object.entries(desired.configs).map(([name, value]) => ({ name, value })),
        })
      } catch (error) {
        // Created meanwhile, by a service starting: the next plan shows whether it is as configured.
        if (isTopicAlreadyExists(error)) return 'already created by someone else; plan again to compare'
        throw error
      }
      return `created with ${desired.partitions} partition(s), replication factor ${desired.replicationFactor}${configText(desired.configs)}`
    case 'add-partitions':
      await admin.createPartitions({ topics: [{ name: topic, count: action.to }] })
      return `partitions ${action.from} → ${action.to}`
    case 'set-configs':
      await admin.incrementalAlterConfigs({
        resources: [
          {
            resourceType: ConfigResourceTypes.TOPIC,
            resourceName: topic,
            configs: action.configs.map((change) => ({
              name: change.name,
              configOperation: IncrementalAlterConfigOperationTypes.SET,
              value: change.to,
            })),
          },
        ],
      })
      return action.configs.map((change) => `${change.name} ${change.from ?? '(unset)'} → ${change.to}`).join(', ')
  }
}

const configText = (configs: Readonly<Record<string, string>>) =>
  Object.entries(configs)
    .map(([name, value]) => `, ${name}=${value}`)
    .join('')

/**
 * The broker's own words for a failure (`The topic x currently has 3 partition(s); 2 would not be
 * an increase.`): @platformatic/kafka nests them (`errors`, `cause`) under messages that only say
 * which call failed, and a protocol error's own message is the generic text of its code.
 */
export function reasonOf(error: unknown): string {
  const reasons = innermostErrors(error).map((leaf) =>
    typeof leaf.serverErrorMessage === 'string' && leaf.serverErrorMessage !== ''
      ? leaf.serverErrorMessage
      : String(leaf.message ?? leaf),
  )
  return [...new Set(reasons)].join('; ') || String(error)
}

const isTopicAlreadyExists = (error: unknown) =>
  innermostErrors(error).some((leaf) => leaf.apiId === 'TOPIC_ALREADY_EXISTS')

function innermostErrors(error: unknown, depth = 0): Record<string, unknown>[] {
  if (error === null || typeof error !== 'object') return []
  const { errors, cause } = error as { errors?: unknown; cause?: unknown }
  const nested = [...(Array.isArray(errors) ? errors : []), ...(cause === undefined ? [] : [cause])]
  if (nested.length === 0 || depth > 6) return [error as Record<string, unknown>]
  return nested.flatMap((child) => innermostErrors(child, depth + 1))
}
