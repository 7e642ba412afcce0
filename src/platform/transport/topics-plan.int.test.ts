import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Admin, ConfigResourceTypes } from '@platformatic/kafka'
import { kafkaBrokers, uniqueName } from '../../../test/support/index.ts'
import { orderflowTopics } from './topics-cli.ts'
import type { TopicApplied, TopicPlan } from './topics-plan.ts'

/**
 * `topics plan` and `topics apply` as an operator runs them, against the test broker, under a
 * topic prefix of their own: from nothing to every topic, then more partitions, then a retention.
 */

const cli = fileURLToPath(new URL('./topics-cli.ts', import.meta.url))

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function topics(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      // Only what the test sets: the broker's address, not whatever the shell running the tests has.
      { env: { PATH: process.env.PATH ?? '', KAFKA_BROKERS: kafkaBrokers().join(','), ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0
        resolve({ code, stdout, stderr })
      },
    )
  })
}

const json = <T>(run: Run): T => {
  try {
    return JSON.parse(run.stdout) as T
  } catch {
    throw new Error(`not JSON (exit ${run.code}):\n${run.stdout}\n${run.stderr}`)
  }
}

describe('topics plan and apply on Kafka', () => {
  const prefix = `${uniqueName('topics')}.`
  const expected = orderflowTopics().map((topic) => `${prefix}${topic}`)
  const env = { KAFKA_TOPIC_PREFIX: prefix }
  let admin: Admin

  before(() => {
    admin = new Admin({ clientId: 'topics-plan-test', bootstrapBrokers: kafkaBrokers() })
  })

  after(async () => {
    const ours = (await admin.listTopics()).filter((topic) => topic.startsWith(prefix))
    if (ours.length > 0) await admin.deleteTopics({ topics: ours })
    await admin.close()
  })

  const partitionCounts = async () => {
    const metadata = await admin.metadata({ topics: expected, forceUpdate: true })
    return new Set(expected.map((topic) => metadata.topics.get(topic)?.partitionsCount))
  }

  it('plans every topic, dead-letter topics included, to create when none exists (exit 1)', async () => {
    assert.ok(expected.includes(`${prefix}order-events`) && expected.includes(`${prefix}order-events-dlq`))
    const run = await topics(['plan', '--json'], env)
    assert.equal(run.code, 1, run.stderr)
    const plan = json<TopicPlan & { differs: boolean }>(run)
    assert.equal(plan.differs, true)
    assert.deepEqual(
      plan.topics.map((entry) => entry.topic),
      expected,
    )
    assert.ok(plan.topics.every((entry) => entry.actual === undefined && entry.actions[0]?.kind === 'create'))
    assert.deepEqual(
      await admin.listTopics().then((all) => all.filter((t) => t.startsWith(prefix))),
      [],
      'plan changes nothing',
    )
  })

  it('applies: creates them with progress per topic, after which plan finds nothing to do (exit 0)', async () => {
    const applied = await topics(['apply'], env)
    assert.equal(applied.code, 0, applied.stderr)
    assert.match(
      applied.stderr,
      new RegExp(`\\[1/${expected.length}\\] ${prefix.replace('.', '\\.')}\\S+: created with 3 partition`),
    )
    assert.match(applied.stdout, new RegExp(`Applied: ${expected.length} topic\\(s\\) changed, 0 failed\\.`))
    assert.deepEqual(await partitionCounts(), new Set([3]))

    const again = await topics(['plan'], env)
    assert.equal(again.code, 0, again.stdout + again.stderr)
    assert.match(again.stdout, new RegExp(`${expected.length} topics: 0 to create, 0 to change, 0 left to an operator`))
  })

  it('adds partitions when KAFKA_PARTITIONS grows, and never removes any when it shrinks', async () => {
    const more = { ...env, KAFKA_PARTITIONS: '4' }
    const plan = json<TopicPlan>(await topics(['plan', '--json'], more))
    assert.ok(plan.topics.every((entry) => entry.actions[0]?.kind === 'add-partitions'))
    const applied = await topics(['apply'], more)
    assert.equal(applied.code, 0, applied.stderr)
    assert.deepEqual(await partitionCounts(), new Set([4]))
    assert.equal((await topics(['plan'], more)).code, 0)

    const fewer = await topics(['apply', '--json'], { ...env, KAFKA_PARTITIONS: '2' })
    assert.equal(fewer.code, 0, fewer.stderr)
    const result = json<{ applied: TopicApplied[]; after: TopicPlan }>(fewer)
    assert.deepEqual(result.applied, [])
    assert.ok(result.after.topics.every((entry) => entry.drift[0]?.kind === 'more-partitions'))
    assert.deepEqual(await partitionCounts(), new Set([4]), 'partitions are never removed')
    assert.equal((await topics(['plan'], { ...env, KAFKA_PARTITIONS: '2' })).code, 1, 'drift fails the check')
  })

  it('sets retention.ms when KAFKA_TOPIC_RETENTION_MS is set', async () => {
    const retained = { ...env, KAFKA_PARTITIONS: '4', KAFKA_TOPIC_RETENTION_MS: '3600000' }
    const plan = json<TopicPlan>(await topics(['plan', '--json'], retained))
    assert.ok(plan.topics.every((entry) => entry.actions[0]?.kind === 'set-configs'))
    assert.equal((await topics(['apply'], retained)).code, 0)

    const described = await admin.describeConfigs({
      resources: expected.map((topic) => ({
        resourceType: ConfigResourceTypes.TOPIC,
        resourceName: topic,
        configurationKeys: ['retention.ms'],
      })),
    })
    assert.deepEqual(
      new Set(described.map((resource) => resource.configs.find((c) => c.name === 'retention.ms')?.value)),
      new Set(['3600000']),
    )
    assert.equal((await topics(['plan'], retained)).code, 0)
  })

  it('stops with exit 2 and the reason for a configuration error', async () => {
    const run = await topics(['plan'], { ...env, KAFKA_MIN_INSYNC_REPLICAS: '2' })
    assert.equal(run.code, 2)
    assert.match(run.stderr, /KAFKA_MIN_INSYNC_REPLICAS \(2\) must not exceed KAFKA_REPLICATION_FACTOR \(1\)/)
  })
})
