import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import type { Admin } from '@platformatic/kafka'
import { serviceKafkaAccess } from '../../kafka-acls.ts'
import { allModules } from '../../services.ts'
import { argumentProblem } from '../cli.ts'
import { type Config, ConfigError, loadConfig } from '../config.ts'
import { deadLetterTopic } from './reliable-consumer.ts'
import {
  applyTopicPlan,
  type DesiredTopic,
  desiredTopics,
  planHasDifferences,
  planTopics,
  readClusterState,
  reasonOf,
  type TopicAction,
  type TopicApplied,
  type TopicDrift,
  type TopicPlan,
  type TopicPlanEntry,
  topicsAdmin,
} from './topics-plan.ts'

/**
 * `node src/platform/transport/topics-cli.ts plan|apply [--json]`: topics as code for the Kafka
 * cluster the environment describes (see topics-plan.ts for what is changed and what is only
 * reported).
 */
export const USAGE = `Usage: npm run orderflow -- topics <plan|apply> [--json]
   or: node src/platform/transport/topics-cli.ts <plan|apply> [--json]

  plan        what would change so that every topic orderflow uses exists as configured:
              partitions (KAFKA_PARTITIONS), replication factor (KAFKA_REPLICATION_FACTOR),
              retention.ms (KAFKA_TOPIC_RETENTION_MS) and min.insync.replicas
              (KAFKA_MIN_INSYNC_REPLICAS), the last two only when set
  apply       makes those changes: creates missing topics, adds partitions, sets configs;
              more partitions than configured and a different replication factor are
              reported (with the reassignment to run), never changed
  --json      the plan (and what was applied) as JSON
  -h, --help  this text

Reads KAFKA_BROKERS, KAFKA_TOPIC_PREFIX and the KAFKA_SASL_* / KAFKA_TLS_* settings, as the
server does. Topics are every module's and the <topic>-dlq of every topic a consumer group reads.

Exit status: plan 0 nothing differs, 1 something differs; apply 0 done, 1 a change failed;
2 bad arguments, configuration, or the cluster could not be read.
`

/** Every topic orderflow uses: each module's, and the dead-letter topic of each topic a group reads. */
export function orderflowTopics(): string[] {
  const modules = allModules()
  const consumed = serviceKafkaAccess.flatMap((access) => access.reads.flatMap((read) => read.topics))
  return [
    ...new Set([
      ...modules.flatMap((module) => (module.topics ?? []).map((contract) => contract.topic)),
      ...modules.flatMap((module) => (module.plainTopics ?? []).map((contract) => contract.topic)),
      ...consumed,
      ...consumed.map(deadLetterTopic),
    ]),
  ].sort()
}

/** How long `apply` waits for the brokers' metadata to show what it changed. */
const SETTLE_MS = 10_000

async function main(argv: string[]): Promise<number> {
  let parsed: { values: { json?: boolean; help?: boolean }; positionals: string[] }
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    })
  } catch (error) {
    const problem = argumentProblem(error)
    if (!problem) throw error
    process.stderr.write(`topics: ${problem}\n\n${USAGE}`)
    return 2
  }
  const [command, ...rest] = parsed.positionals
  if (parsed.values.help) {
    process.stdout.write(USAGE)
    return 0
  }
  if ((command !== 'plan' && command !== 'apply') || rest.length > 0) {
    process.stderr.write(
      `topics: ${command === undefined ? 'say plan or apply' : `unknown command '${parsed.positionals.join(' ')}'`}\n\n${USAGE}`,
    )
    return 2
  }
  const config = loadConfig()
  if (config.transport !== 'kafka') {
    process.stderr.write(
      "topics: TRANSPORT is 'embedded': set KAFKA_BROKERS=host:port to manage a Kafka cluster's topics (the embedded log needs none)\n",
    )
    return 2
  }
  const json = parsed.values.json === true
  const desired = desiredTopics(orderflowTopics(), config.kafka)
  const admin = topicsAdmin(config.kafka)
  try {
    let plan: TopicPlan
    try {
      process.stderr.write(`reading ${desired.length} topics from ${config.kafka.brokers.join(',')}\n`)
      plan = await currentPlan(admin, desired)
    } catch (error) {
      process.stderr.write(`topics: cannot read the topics of ${config.kafka.brokers.join(',')}: ${reasonOf(error)}\n`)
      return 2
    }
    if (command === 'plan') {
      const differs = planHasDifferences(plan)
      process.stdout.write(
        json
          ? `${JSON.stringify({ differs, ...planJson(plan, config) }, null, 2)}\n`
          : `${formatPlan(plan, config)}${plan.topics.some((entry) => entry.actions.length > 0) ? 'Run `npm run orderflow -- topics apply` to make these changes.\n' : ''}`,
      )
      return differs ? 1 : 0
    }

    if (!json) process.stdout.write(formatPlan(plan, config))
    const applied = await applyTopicPlan(admin, plan, (result, index, total) =>
      process.stderr.write(`[${index}/${total}] ${result.topic}: ${result.outcome}\n`),
    )
    // Undefined when the cluster could not be read again: what was applied is said all the same.
    const after = applied.length > 0 ? await settledPlan(admin, desired, applied) : plan
    const failed = applied.filter((result) => !result.ok)
    if (json) {
      process.stdout.write(`${JSON.stringify({ applied, after: after ? planJson(after, config) : null }, null, 2)}\n`)
    } else {
      const left = (after ?? plan).topics.filter((entry) => entry.drift.length > 0).length
      const pending = after ? after.topics.filter((entry) => entry.actions.length > 0).length : 0
      process.stdout.write(
        [
          applied.length === 0
            ? 'Nothing to apply.'
            : `Applied: ${applied.length - failed.length} topic(s) changed, ${failed.length} failed.`,
          ...failed.map((result) => `  ${result.topic}: ${result.outcome}`),
          ...(pending > failed.length
            ? [`The brokers do not show every change yet (${pending} topic(s)): run topics plan again.`]
            : []),
          ...(left > 0 ? [`${left} topic(s) differ in ways apply does not change: see above.`] : []),
          '',
        ].join('\n'),
      )
    }
    return failed.length > 0 ? 1 : 0
  } finally {
    await admin.close().catch(() => {})
  }
}

async function currentPlan(admin: Admin, desired: readonly DesiredTopic[]): Promise<TopicPlan> {
  const configNames = [...new Set(desired.flatMap((topic) => Object.keys(topic.configs)))]
  const state = await readClusterState(
    admin,
    desired.map((topic) => topic.name),
    configNames,
  )
  return planTopics(desired, state)
}

/**
 * The plan once the brokers' metadata shows what was applied (a broker learns of a new topic or
 * partition from the controller a moment after the call returns), or as it is after SETTLE_MS.
 */
async function settledPlan(
  admin: Admin,
  desired: readonly DesiredTopic[],
  applied: readonly TopicApplied[],
): Promise<TopicPlan | undefined> {
  const changed = new Set(applied.filter((result) => result.ok).map((result) => result.topic))
  const deadline = performance.now() + SETTLE_MS
  for (;;) {
    const plan = await currentPlan(admin, desired).catch(() => undefined)
    const settled = plan?.topics.every((entry) => entry.actions.length === 0 || !changed.has(entry.topic))
    if (settled || performance.now() > deadline) return plan
    await sleep(200)
  }
}

function planJson(plan: TopicPlan, config: Config) {
  return {
    brokers: config.kafka.brokers,
    topicPrefix: config.kafka.topicPrefix,
    ...plan,
    ...(plan.reassignment ? { reassignCommand: reassignCommand(config) } : {}),
  }
}

function reassignCommand(config: Config): string {
  const secured = config.kafka.security.sasl || config.kafka.security.tls ? ' --command-config admin.properties' : ''
  return `kafka-reassign-partitions.sh --bootstrap-server ${config.kafka.brokers.join(',')}${secured} --reassignment-json-file reassign.json --execute`
}

/** The plan as a table, one row a topic, then what is left to an operator and how. */
export function formatPlan(plan: TopicPlan, config: Config): string {
  const configNames = [...new Set(plan.topics.flatMap((entry) => Object.keys(entry.desired.configs)))]
  const header = ['TOPIC', 'PARTITIONS', 'REPLICATION', ...configNames, 'PLAN']
  const rows = plan.topics.map((entry) => [
    entry.topic,
    entry.drift.some((drift) => drift.kind === 'more-partitions')
      ? reported(entry.actual?.partitions, entry.desired.partitions)
      : cell(entry.actual?.partitions, entry.desired.partitions),
    entry.drift.some((drift) => drift.kind === 'replication-factor')
      ? reported(entry.actual?.replicationFactor, entry.desired.replicationFactor)
      : cell(entry.actual?.replicationFactor, entry.desired.replicationFactor),
    ...configNames.map((name) =>
      cell(entry.actual?.configs[name], entry.desired.configs[name], entry.actual !== undefined),
    ),
    planText(entry),
  ])
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (row: string[]) =>
    row
      .map((value, i) => (i === row.length - 1 ? value : value.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  const count = (test: (entry: TopicPlanEntry) => boolean) => plan.topics.filter(test).length
  const lines = [
    line(header),
    ...rows.map(line),
    '',
    `${plan.topics.length} topics: ${count((e) => e.actual === undefined)} to create, ` +
      `${count((e) => e.actual !== undefined && e.actions.length > 0)} to change, ` +
      `${count((e) => e.drift.length > 0)} left to an operator, ` +
      `${count((e) => e.actions.length === 0 && e.drift.length === 0)} as configured.`,
  ]
  const more = drifts(plan, 'more-partitions')
  const replication = drifts(plan, 'replication-factor')
  const unreachable = replication.filter(({ drift }) => !drift.reassignable)
  if (more.length + replication.length > 0) lines.push('', 'Left to an operator (apply does not change these):')
  if (more.length > 0) {
    const most = Math.max(...more.map(({ drift }) => drift.actual))
    lines.push(
      `  More partitions than KAFKA_PARTITIONS=${config.kafka.partitions} ${topicList(more)}: Kafka cannot remove partitions;`,
      `    set KAFKA_PARTITIONS=${most}, or delete and recreate the topic (its messages go with it).`,
    )
  }
  const reassignable = replication.filter(({ drift }) => drift.reassignable)
  if (reassignable.length > 0) {
    lines.push(
      `  Replication factor other than KAFKA_REPLICATION_FACTOR=${config.kafka.replicationFactor} ${topicList(reassignable)}:`,
      '    reassign their partitions (below).',
    )
  }
  if (unreachable.length > 0) {
    lines.push(
      `  Replication factor other than KAFKA_REPLICATION_FACTOR=${config.kafka.replicationFactor} ${topicList(unreachable)}:`,
      '    the cluster has fewer brokers than that; start more brokers, or lower KAFKA_REPLICATION_FACTOR.',
    )
  }
  if (plan.reassignment) {
    lines.push(
      '',
      'To change the replication factor, save this as reassign.json:',
      JSON.stringify(plan.reassignment),
      'and run (then the same with --verify in place of --execute until it reports completion):',
      `  ${reassignCommand(config)}`,
    )
  }
  return `${lines.join('\n')}\n`
}

function drifts<Kind extends TopicDrift['kind']>(plan: TopicPlan, kind: Kind) {
  return plan.topics.flatMap((entry) =>
    entry.drift.flatMap((drift) =>
      drift.kind === kind ? [{ topic: entry.topic, drift: drift as Extract<TopicDrift, { kind: Kind }> }] : [],
    ),
  )
}

/** `(order-events)`, `(3 topics: a, b, c)`, `(23 topics: a, b, c, …)`. */
function topicList(found: readonly { topic: string }[]): string {
  if (found.length === 1) return `(${found[0]?.topic})`
  const names = found.slice(0, 3).map(({ topic }) => topic)
  return `(${found.length} topics: ${names.join(', ')}${found.length > 3 ? ', …' : ''})`
}

/** `3`, or `1 → 3` when it differs, or `- → 3` for a topic to create. */
function cell(
  actual: string | number | undefined,
  desired: string | number | undefined,
  exists = actual !== undefined,
) {
  if (desired === undefined) return actual === undefined ? '' : String(actual)
  if (!exists) return `- → ${desired}`
  if (actual === undefined) return `(unset) → ${desired}`
  return String(actual) === String(desired) ? String(actual) : `${actual} → ${desired}`
}

/** A difference apply leaves alone: no arrow, which would say it changes. */
const reported = (actual: number | undefined, desired: number) => `${actual} (configured ${desired})`

function planText(entry: TopicPlanEntry): string {
  const parts = [
    ...entry.actions.map(actionText),
    ...entry.drift.map((drift) =>
      drift.kind === 'more-partitions' ? 'report: more partitions' : 'report: replication factor',
    ),
  ]
  return parts.length > 0 ? parts.join(', ') : 'as configured'
}

function actionText(action: TopicAction): string {
  switch (action.kind) {
    case 'create':
      return 'create'
    case 'add-partitions':
      return `add ${action.to - action.from} partition(s)`
    case 'set-configs':
      return `set ${action.configs.map((change) => change.name).join(', ')}`
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (error: unknown) => {
      if (error instanceof ConfigError) {
        process.stderr.write(`topics: cannot start. ${error.message}\n`)
        process.exitCode = 2
        return
      }
      process.stderr.write(
        `topics failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      )
      process.exitCode = 2
    },
  )
}
