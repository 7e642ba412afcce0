import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, loadConfig } from '../config.ts'
import { formatPlan } from './topics-cli.ts'
import {
  type ClusterState,
  type DesiredTopic,
  desiredTopics,
  type ExistingTopic,
  planHasDifferences,
  planTopics,
  type TopicPlanEntry,
} from './topics-plan.ts'

/** Given a cluster, when the configuration wants `desired`, then the plan of the one topic is… */
const desired = (overrides: Partial<DesiredTopic> = {}): DesiredTopic => ({
  name: 'orders',
  partitions: 3,
  replicationFactor: 1,
  configs: {},
  ...overrides,
})

/** A topic on the cluster: `partitions` partitions of `replicas` each (brokers 1, 2, …). */
const existing = (partitions: number, replicas: number[], configs: ExistingTopic['configs'] = {}): ExistingTopic => ({
  name: 'orders',
  replicas: Array.from({ length: partitions }, () => replicas),
  configs,
})

const cluster = (topics: ExistingTopic[], brokers = [1]): ClusterState => ({ brokers, topics })

function planOf(want: DesiredTopic, state: ClusterState): TopicPlanEntry {
  const plan = planTopics([want], state)
  assert.equal(plan.topics.length, 1)
  return plan.topics[0] as TopicPlanEntry
}

describe('topics plan', () => {
  it('creates a missing topic with every desired setting', () => {
    const want = desired({ configs: { 'retention.ms': '3600000' } })
    const plan = planTopics([want], cluster([]))
    assert.deepEqual(plan.topics, [
      {
        topic: 'orders',
        desired: { partitions: 3, replicationFactor: 1, configs: { 'retention.ms': '3600000' } },
        actual: undefined,
        actions: [{ kind: 'create' }],
        drift: [],
      },
    ])
    assert.equal(planHasDifferences(plan), true)
  })

  it('adds partitions to a topic with fewer than configured', () => {
    const entry = planOf(desired({ partitions: 6 }), cluster([existing(3, [1])]))
    assert.deepEqual(entry.actions, [{ kind: 'add-partitions', from: 3, to: 6 }])
    assert.deepEqual(entry.drift, [])
  })

  it('reports a topic with more partitions than configured, and never removes any', () => {
    const plan = planTopics([desired({ partitions: 2 })], cluster([existing(3, [1])]))
    const entry = plan.topics[0]
    assert.deepEqual(entry?.actions, [])
    assert.deepEqual(entry?.drift, [{ kind: 'more-partitions', actual: 3, desired: 2 }])
    assert.equal(planHasDifferences(plan), true, 'drift fails a drift check too')
  })

  it('reports a replication factor that differs, with a reassignment that keeps the replicas there', () => {
    const plan = planTopics([desired({ partitions: 3, replicationFactor: 3 })], cluster([existing(3, [2])], [1, 2, 3]))
    assert.deepEqual(plan.topics[0]?.actions, [], 'replicas are not moved by apply')
    assert.deepEqual(plan.topics[0]?.drift, [{ kind: 'replication-factor', actual: 1, desired: 3, reassignable: true }])
    assert.deepEqual(plan.reassignment, {
      version: 1,
      partitions: [
        { topic: 'orders', partition: 0, replicas: [2, 1, 3] },
        { topic: 'orders', partition: 1, replicas: [2, 3, 1] },
        { topic: 'orders', partition: 2, replicas: [2, 3, 1] },
      ],
    })
  })

  it('reassigns to fewer replicas by dropping the last ones, keeping the preferred leader', () => {
    const plan = planTopics(
      [desired({ partitions: 1, replicationFactor: 2 })],
      cluster([existing(1, [3, 1, 2])], [1, 2, 3]),
    )
    assert.deepEqual(plan.reassignment?.partitions, [{ topic: 'orders', partition: 0, replicas: [3, 1] }])
  })

  it('has no reassignment for more replicas than the cluster has brokers', () => {
    const plan = planTopics([desired({ replicationFactor: 3 })], cluster([existing(3, [1])], [1]))
    assert.deepEqual(plan.topics[0]?.drift, [
      { kind: 'replication-factor', actual: 1, desired: 3, reassignable: false },
    ])
    assert.equal(plan.reassignment, undefined)
  })

  it('sets a managed config whose value in effect differs, and only the managed ones', () => {
    const want = desired({ configs: { 'retention.ms': '3600000', 'min.insync.replicas': '1' } })
    const have = existing(3, [1], {
      'retention.ms': '604800000',
      'min.insync.replicas': '1',
      'cleanup.policy': 'delete',
    })
    const entry = planOf(want, cluster([have]))
    assert.deepEqual(entry.actions, [
      { kind: 'set-configs', configs: [{ name: 'retention.ms', from: '604800000', to: '3600000' }] },
    ])
    assert.deepEqual(entry.actual?.configs, { 'retention.ms': '604800000', 'min.insync.replicas': '1' })
  })

  it('does nothing when every topic is as configured, a broker default that matches included', () => {
    const want = desired({ configs: { 'retention.ms': '604800000' } })
    const plan = planTopics([want], cluster([existing(3, [1], { 'retention.ms': '604800000' })]))
    assert.deepEqual(plan.topics[0]?.actions, [])
    assert.deepEqual(plan.topics[0]?.drift, [])
    assert.equal(plan.reassignment, undefined)
    assert.equal(planHasDifferences(plan), false)
  })

  it('leaves topics it does not manage out of the plan', () => {
    const plan = planTopics([desired()], cluster([existing(3, [1]), { ...existing(1, [1]), name: 'someone-elses' }]))
    assert.deepEqual(
      plan.topics.map((entry) => entry.topic),
      ['orders'],
    )
    assert.equal(planHasDifferences(plan), false)
  })
})

describe('desired topics from the configuration', () => {
  const kafka = (env: Record<string, string>) => loadConfig({ KAFKA_BROKERS: '127.0.0.1:9092', ...env }).kafka

  it('prefixes every topic, once each, and manages a config only when its variable is set', () => {
    const unset = desiredTopics(['b', 'a', 'b'], kafka({ KAFKA_TOPIC_PREFIX: 'staging.' }))
    assert.deepEqual(unset, [
      { name: 'staging.a', partitions: 3, replicationFactor: 1, configs: {} },
      { name: 'staging.b', partitions: 3, replicationFactor: 1, configs: {} },
    ])
    const set = desiredTopics(
      ['a'],
      kafka({
        KAFKA_PARTITIONS: '6',
        KAFKA_REPLICATION_FACTOR: '3',
        KAFKA_TOPIC_RETENTION_MS: '-1',
        KAFKA_MIN_INSYNC_REPLICAS: '2',
      }),
    )
    assert.deepEqual(set, [
      {
        name: 'a',
        partitions: 6,
        replicationFactor: 3,
        configs: { 'retention.ms': '-1', 'min.insync.replicas': '2' },
      },
    ])
  })

  it('refuses KAFKA_MIN_INSYNC_REPLICAS above KAFKA_REPLICATION_FACTOR, naming both', () => {
    assert.throws(
      () => kafka({ KAFKA_REPLICATION_FACTOR: '2', KAFKA_MIN_INSYNC_REPLICAS: '3' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        /KAFKA_MIN_INSYNC_REPLICAS \(3\).*KAFKA_REPLICATION_FACTOR \(2\)/.test(error.message),
    )
    assert.throws(
      () => kafka({ KAFKA_TOPIC_RETENTION_MS: 'a week' }),
      /KAFKA_TOPIC_RETENTION_MS must be a whole number/,
    )
  })
})

describe('the plan as a table', () => {
  it('says what changes, what is only reported, and the command that reassigns replicas', () => {
    const config = loadConfig({ KAFKA_BROKERS: '10.0.0.1:9092', KAFKA_REPLICATION_FACTOR: '2' })
    const plan = planTopics(
      [{ ...desired({ replicationFactor: 2 }), name: 'new' }, desired({ partitions: 2, replicationFactor: 2 })],
      cluster([existing(3, [1])], [1, 2]),
    )
    const text = formatPlan(plan, config)
    assert.match(text, /^new\s+- → 3\s+- → 2\s+create$/m)
    assert.match(
      text,
      /^orders\s+3 \(configured 2\)\s+1 \(configured 2\)\s+report: more partitions, report: replication factor$/m,
    )
    assert.match(text, /set KAFKA_PARTITIONS=3/)
    assert.match(text, /"partitions":\[\{"topic":"orders","partition":0,"replicas":\[1,2\]\}/)
    assert.match(
      text,
      /kafka-reassign-partitions\.sh --bootstrap-server 10\.0\.0\.1:9092 --reassignment-json-file reassign\.json --execute/,
    )
  })
})
