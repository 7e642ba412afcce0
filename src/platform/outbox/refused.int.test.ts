import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  Admin,
  ConfigResourceTypes,
  IncrementalAlterConfigOperationTypes,
  MultipleErrors,
  ResponseError,
} from '@platformatic/kafka'
import { Registry } from 'prom-client'
import {
  follow,
  kafkaBrokers,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  testDatabaseUrl,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { capturingLogger } from '../../../test/support/logs.ts'
import type { Logger } from '../logger.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import { createKafkaTransport } from '../transport/kafka.ts'
import type { IncomingMessage, OutgoingMessage, PublishOptions, Transport } from '../transport/port.ts'
import { createOutboxSignal, enqueue, type OutboxRelay, startOutboxRelay } from './outbox.ts'
import { discardRefused, listRefused, refusedIds, registerOutboxRefusedGauge, retryRefused } from './refused.ts'

/**
 * A row the broker refuses for good is set aside: the rows of other keys keep flowing, the later
 * rows of its key wait behind it, and an operator retries or discards it. On a real broker (a
 * topic whose max.message.bytes is small), and on the embedded log with the refusal injected.
 */

const ERROR = 50

/** Over the topics' limit below once with its record batch, whatever the compression. */
const oversized = (label: string) => `${label}:${randomBytes(3000).toString('base64')}`
const SMALL_LIMIT = '1024'

/** What a consumer saw, by key, each value by its label (the part before a `:`). */
const labelsByKey = (messages: Pick<IncomingMessage, 'key' | 'value'>[]) => {
  const byKey: Record<string, string[]> = {}
  for (const m of messages) byKey[m.key] = [...(byKey[m.key] ?? []), m.value.split(':')[0] ?? '']
  return byKey
}

interface OutboxState {
  published: boolean
  refused_at: Date | null
  refused_reason: string | null
  publish_attempts: number
  last_error: string | null
  discarded_at: Date | null
  discarded_by: string | null
  discarded_reason: string | null
  published_epoch: string | null
}

const rowOf = async (db: SqlDatabase, id: string): Promise<OutboxState | undefined> =>
  (
    await db.query<OutboxState>(
      `SELECT published_at IS NOT NULL AS published, refused_at, refused_reason, publish_attempts, last_error,
              discarded_at, discarded_by, discarded_reason, published_epoch::text
         FROM outbox WHERE id = $1`,
      [id],
    )
  ).rows[0]

/** The key's rows of the scenario: small, oversized, small; then another key's row after them all. */
const enqueueScenario = async (db: SqlDatabase, topic: string) => {
  const [a1, a2, a3, b1] = await enqueue(db, [
    { topic, key: 'A', value: 'a1' },
    { topic, key: 'A', value: oversized('a2') },
    { topic, key: 'A', value: 'a3' },
    { topic, key: 'B', value: 'b1' },
  ])
  if (!a1 || !a2 || !a3 || !b1) throw new Error('enqueue returned fewer ids than rows')
  return { a1, a2, a3, b1 }
}

/**
 * The held row is still pending once a row written after it went out: one relay publishes in id
 * order, so a held row that was not held would have gone out first.
 */
const assertHeld = async (db: SqlDatabase, topic: string, held: string) => {
  const [b2] = await enqueue(db, [{ topic, key: 'B', value: 'b2' }])
  await waitFor(async () => b2 && (await rowOf(db, b2))?.published, { message: 'a row written later goes out' })
  assert.equal((await rowOf(db, held))?.published, false, 'the later row of the refused key waits behind it')
}

describe('refused outbox rows on PostgreSQL and Kafka', () => {
  let database: TestDatabase
  let db: SqlDatabase
  let kafka: Transport
  let admin: Admin
  before(async () => {
    database = await postgresTestDatabase('of_refused')
    db = database.db
    await migratePlatform(db)
    kafka = await createKafkaTransport({
      brokers: kafkaBrokers(),
      clientId: uniqueName('refused'),
      partitions: 1,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 3,
      retryBackoffMs: 100,
    })
    admin = new Admin({ clientId: uniqueName('refused-admin'), bootstrapBrokers: kafkaBrokers() })
  })
  after(async () => {
    await kafka?.close()
    await admin?.close()
    await database?.cleanup()
  })

  /**
   * A topic of one partition whose records may be at most SMALL_LIMIT bytes: the scenario's rows
   * then share a record batch, which the broker refuses as a whole, so nothing of it is written
   * before the relay finds the refused row (on several partitions, the others' rows may go out twice).
   */
  const smallTopic = async () => {
    const topic = uniqueName('refused')
    await admin.createTopics({
      topics: [topic],
      partitions: 1,
      replicas: 1,
      configs: [{ name: 'max.message.bytes', value: SMALL_LIMIT }],
    })
    return topic
  }

  /** What an operator does about MESSAGE_TOO_LARGE: raises the topic's limit, and the broker applies it. */
  const raiseLimit = async (topic: string) => {
    const limit = String(1024 * 1024)
    await admin.incrementalAlterConfigs({
      resources: [
        {
          resourceType: ConfigResourceTypes.TOPIC,
          resourceName: topic,
          configs: [
            { name: 'max.message.bytes', configOperation: IncrementalAlterConfigOperationTypes.SET, value: limit },
          ],
        },
      ],
    })
    await waitFor(
      async () => {
        const [described] = await admin.describeConfigs({
          resources: [
            { resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: ['max.message.bytes'] },
          ],
        })
        return described?.configs.find((c) => c.name === 'max.message.bytes')?.value === limit
      },
      { message: 'the broker applies the new limit' },
    )
  }

  const startRelay = (logger: Logger): OutboxRelay =>
    startOutboxRelay({
      db,
      transport: kafka,
      signal: createOutboxSignal(),
      logger,
      pollIntervalMs: 50,
      retryBaseMs: 20,
      retryMaxMs: 200,
    })

  it('sets the refused row aside, holds the later rows of its key, and publishes them in order once retried', async () => {
    const topic = await smallTopic()
    const { seen, sub } = await follow(kafka, topic)
    const { logger, records } = capturingLogger()
    const relay = startRelay(logger)
    try {
      const { a2, a3 } = await enqueueScenario(db, topic)
      await waitFor(async () => (await rowOf(db, a2))?.refused_at && seen.length >= 2, {
        message: () => `the oversized row is refused and the others go out (seen ${seen.length})`,
      })
      await assertHeld(db, topic, a3)
      await waitFor(() => seen.length >= 3, { message: 'the consumer sees the later row of B' })
      assert.deepEqual(labelsByKey(seen), { A: ['a1'], B: ['b1', 'b2'] })

      const refused = await rowOf(db, a2)
      assert.equal(refused?.refused_reason, 'MESSAGE_TOO_LARGE')
      assert.equal(refused?.published, false)
      assert.match(refused?.last_error ?? '', /^MESSAGE_TOO_LARGE: /)
      const logged = records.find((r) => r.level === ERROR && r.id === a2)
      assert.deepEqual(
        logged && { topic: logged.topic, key: logged.key, reason: logged.reason },
        { topic, key: 'A', reason: 'MESSAGE_TOO_LARGE' },
        'the refusal is logged at error level with its row, topic, key and reason',
      )
      const listed = await listRefused(db, { topic })
      assert.deepEqual(
        listed.map((r) => ({ id: r.id, key: r.key, reason: r.reason, heldBehind: r.heldBehind })),
        [{ id: a2, key: 'A', reason: 'MESSAGE_TOO_LARGE', heldBehind: 1 }],
      )
      assert.ok((listed[0]?.valueBytes ?? 0) > Number(SMALL_LIMIT), 'the listing shows the row is over the limit')
      const registry = new Registry()
      registerOutboxRefusedGauge(registry, db)
      const series = `orderflow_outbox_refused{topic="${topic}",reason="MESSAGE_TOO_LARGE"} 1`
      assert.ok((await registry.metrics()).includes(series), 'the gauge counts the refused row')

      // The operator raises the topic's limit, then retries the row.
      await raiseLimit(topic)
      assert.deepEqual(await retryRefused(db, [a2, a3]), [a2], 'only the refused row is retried')
      await waitFor(async () => (await relay.pending()) === 0 && seen.length >= 5, {
        message: () => `the retried row and the one held behind it go out (seen ${seen.length})`,
      })
      assert.deepEqual(labelsByKey(seen), { A: ['a1', 'a2', 'a3'], B: ['b1', 'b2'] }, 'each key in order, once')
      assert.deepEqual(await listRefused(db, { topic }), [])
      assert.ok(!(await registry.metrics()).includes(`topic="${topic}"`), 'the gauge no longer counts it')
    } finally {
      await relay.stop()
      await sub.close()
    }
  })

  it('a discard (from the command line) gives the row up for good and releases the rows of its key', async () => {
    const topic = await smallTopic()
    const { seen, sub } = await follow(kafka, topic)
    const relay = startRelay(capturingLogger().logger)
    try {
      const { a2, a3 } = await enqueueScenario(db, topic)
      await waitFor(async () => (await rowOf(db, a2))?.refused_at && seen.length >= 2, {
        message: () => `the oversized row is refused and the others go out (seen ${seen.length})`,
      })
      await assertHeld(db, topic, a3)

      const listed = await outboxCli(db, ['list', '--topic', topic, '--json'])
      assert.equal(listed.code, 0, listed.stderr)
      assert.deepEqual(
        (JSON.parse(listed.stdout) as { id: string }[]).map((r) => r.id),
        [a2],
      )
      const discarded = await outboxCli(db, [
        'discard',
        a2,
        '--reason',
        'over the limit; support re-sent the order',
        '--by',
        'test-operator',
        '--json',
      ])
      assert.equal(discarded.code, 0, discarded.stderr)
      assert.deepEqual(JSON.parse(discarded.stdout), { discarded: [a2], notRefused: [] })

      await waitFor(async () => (await relay.pending()) === 0 && labelsByKey(seen).A?.length === 2, {
        message: () => `the row held behind the discarded one goes out (seen ${seen.length})`,
      })
      assert.deepEqual(labelsByKey(seen), { A: ['a1', 'a3'], B: ['b1', 'b2'] }, 'the discarded row never went out')
      const row = await rowOf(db, a2)
      assert.deepEqual(
        {
          discarded: row?.discarded_at instanceof Date,
          by: row?.discarded_by,
          why: row?.discarded_reason,
          refusedFor: row?.refused_reason,
          epoch: row?.published_epoch,
        },
        {
          discarded: true,
          by: 'test-operator',
          why: 'over the limit; support re-sent the order',
          refusedFor: 'MESSAGE_TOO_LARGE',
          epoch: null,
        },
        'the row keeps who discarded it, why, and what the broker said; no relay published it',
      )
      assert.deepEqual(await retryRefused(db, [a2]), [], 'a discarded row is never retried')
      const again = await outboxCli(db, ['discard', a2, '--reason', 'twice'])
      assert.equal(again.code, 1, 'an id that is no refused row is named, and left alone')
      assert.match(again.stderr, new RegExp(`left alone: ${a2}`))
    } finally {
      await relay.stop()
      await sub.close()
    }
  })

  it('retry --topic (from the command line) retries every refused row of that topic, in order, and none of another', async () => {
    const topic = await smallTopic()
    const other = await smallTopic()
    const { seen, sub } = await follow(kafka, topic)
    const relay = startRelay(capturingLogger().logger)
    try {
      const [a1, a2, a3, c1, c2, o1, o2] = await enqueue(db, [
        { topic, key: 'A', value: 'a1' },
        { topic, key: 'A', value: oversized('a2') },
        { topic, key: 'A', value: 'a3' },
        { topic, key: 'C', value: oversized('c1') },
        { topic, key: 'C', value: 'c2' },
        { topic: other, key: 'A', value: oversized('o1') },
        { topic: other, key: 'A', value: 'o2' },
      ])
      assert.ok(a1 && a2 && a3 && c1 && c2 && o1 && o2)
      await waitFor(
        async () =>
          (await refusedIds(db, { topic })).length === 2 && (await refusedIds(db, { topic: other })).length === 1,
        { message: 'the oversized rows of both topics are refused' },
      )
      await waitFor(() => seen.length >= 1, { message: 'the row before them goes out' })

      // The dry run names what a retry would take, and changes nothing.
      const before = await Promise.all([a2, c1, a3, c2].map((id) => rowOf(db, id)))
      const dry = await outboxCli(db, ['retry', '--topic', topic, '--dry-run', '--json'])
      assert.equal(dry.code, 0, dry.stderr)
      assert.deepEqual(JSON.parse(dry.stdout), { topic, refusedWith: null, matched: 2, dryRun: true, ids: [a2, c1] })
      assert.deepEqual(await Promise.all([a2, c1, a3, c2].map((id) => rowOf(db, id))), before, 'nothing changed')

      await raiseLimit(topic)
      const otherBefore = await rowOf(db, o1)
      const retried = await outboxCli(db, ['retry', '--topic', topic])
      assert.equal(retried.code, 0, retried.stderr)
      assert.match(retried.stdout, new RegExp(`^retried 2 refused row\\(s\\) of topic '${topic}': `))
      assert.deepEqual(await rowOf(db, o1), otherBefore, "the other topic's refused row is left as it was")
      await waitFor(() => seen.length >= 5, {
        message: () => `the retried rows and the rows held behind them go out (seen ${seen.length})`,
      })
      assert.deepEqual(labelsByKey(seen), { A: ['a1', 'a2', 'a3'], C: ['c1', 'c2'] }, 'each key in order, once')
      assert.deepEqual(await refusedIds(db, { topic }), [])
      assert.equal((await rowOf(db, o2))?.published, false, "the other topic's held row still waits")

      const discarded = await outboxCli(db, ['discard', '--topic', other, '--reason', 'test over', '--json'])
      assert.equal(discarded.code, 0, discarded.stderr)
      assert.deepEqual(JSON.parse(discarded.stdout), {
        topic: other,
        refusedWith: null,
        matched: 1,
        discarded: [o1],
        notRefused: [],
      })
      await waitFor(async () => (await rowOf(db, o2))?.published, { message: 'the row held behind it goes out' })
    } finally {
      await relay.stop()
      await sub.close()
    }
  })

  it('retry and discard take ids or --topic, not both nor neither; a topic with nothing refused is said, not an error', async () => {
    const both = await outboxCli(db, ['retry', '1', '--topic', 'order-events'])
    assert.deepEqual(
      { code: both.code, stderr: both.stderr },
      { code: 2, stderr: 'outbox: retry takes the ids of refused rows or --topic, not both\n' },
    )
    const neither = await outboxCli(db, ['discard', '--reason', 'why'])
    assert.equal(neither.code, 2)
    assert.match(neither.stderr, /discard takes the id\(s\) of refused rows, as 'list' shows, or --topic T/)

    const topic = uniqueName('never_refused')
    const none = await outboxCli(db, ['retry', '--topic', topic])
    assert.deepEqual(
      { code: none.code, stdout: none.stdout },
      { code: 0, stdout: `no refused outbox rows of topic '${topic}': nothing to retry\n` },
    )
    // The outbox names topics as the services do; the prefixed name the broker's logs show is pointed back.
    const prefixed = await outboxCli(db, ['discard', '--topic', `staging.${topic}`, '--reason', 'why'], {
      KAFKA_TOPIC_PREFIX: 'staging.',
    })
    assert.equal(prefixed.code, 0, prefixed.stderr)
    assert.match(prefixed.stdout, new RegExp(`without KAFKA_TOPIC_PREFIX 'staging\\.': --topic ${topic}\\)\n$`))
  })
})

/** Runs `npm run orderflow -- outbox` (cli.ts) on the test's schema; resolves with its exit status and output. */
async function outboxCli(
  db: SqlDatabase,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const schema = (await db.query<{ schema: string }>('SELECT current_schema() AS schema')).rows[0]?.schema ?? ''
  const url = new URL(testDatabaseUrl)
  url.searchParams.set('options', `-c search_path=${schema}`)
  const cli = fileURLToPath(new URL('./cli.ts', import.meta.url))
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      { env: { ...process.env, ...env, DATABASE_URL: url.toString() } },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr })
      },
    )
  })
}

describe('refused outbox rows on PGlite and the embedded log', () => {
  let database: TestDatabase
  let db: SqlDatabase
  let embedded: Transport
  before(async () => {
    database = await pgliteTestDatabase()
    db = database.db
    await migratePlatform(db)
    embedded = await createEmbeddedTransport({ db, pollIntervalMs: 20 })
  })
  after(async () => {
    await embedded?.close()
    await database?.cleanup()
  })

  /**
   * The embedded log takes any size and every topic: the broker's refusals are injected, as
   * @platformatic/kafka reports them (the partition's error in a produce response): values over
   * 1000 bytes are MESSAGE_TOO_LARGE, and a topic in `unauthorized` (as it is at each publish) is
   * TOPIC_AUTHORIZATION_FAILED.
   */
  const refusing = (unauthorized: ReadonlySet<string> = new Set()): Transport => ({
    kind: embedded.kind,
    ensureTopics: (topics) => embedded.ensureTopics(topics),
    ping: () => embedded.ping(),
    subscribe: (options) => embedded.subscribe(options),
    groupLag: (groups) => embedded.groupLag(groups),
    readTopic: (topic, visit, options) => embedded.readTopic(topic, visit, options),
    describeLog: (options) => embedded.describeLog(options),
    close: async () => {},
    async publish(messages: OutgoingMessage[], options?: PublishOptions) {
      const PRODUCE = 0
      const TOPIC_AUTHORIZATION_FAILED = 29
      const MESSAGE_TOO_LARGE = 10
      const code = messages.some((m) => unauthorized.has(m.topic))
        ? TOPIC_AUTHORIZATION_FAILED
        : messages.some((m) => m.value.length > 1000)
          ? MESSAGE_TOO_LARGE
          : undefined
      if (code !== undefined) {
        throw new MultipleErrors('Producing messages failed.', [
          new ResponseError(PRODUCE, 9, { '/responses/0/partition_responses/0': [code, null] }, {}),
        ])
      }
      return embedded.publish(messages, options)
    },
  })

  /** A relay on the embedded database, publishing through `transport`, quick to poll and retry. */
  const relayOn = (transport: Transport) =>
    startOutboxRelay({
      db,
      transport,
      signal: createOutboxSignal(),
      logger: capturingLogger().logger,
      pollIntervalMs: 20,
      retryBaseMs: 20,
      retryMaxMs: 100,
    })

  it('publishes as before, sets refused rows aside, and retries and discards them', async () => {
    const topic = uniqueName('refused')
    const { seen, sub } = await follow(embedded, topic)
    const relay = relayOn(refusing())
    try {
      // Nothing refused: the relay publishes every key in order, as it always did.
      await enqueue(
        db,
        Array.from({ length: 9 }, (_, i) => ({ topic, key: `k${i % 3}`, value: `v${i}` })),
      )
      await waitFor(async () => (await relay.pending()) === 0 && seen.length === 9, {
        message: () => `everything goes out (seen ${seen.length})`,
      })
      assert.deepEqual(labelsByKey(seen), {
        k0: ['v0', 'v3', 'v6'],
        k1: ['v1', 'v4', 'v7'],
        k2: ['v2', 'v5', 'v8'],
      })

      const { a2, a3 } = await enqueueScenario(db, topic)
      await waitFor(async () => (await rowOf(db, a2))?.refused_at && seen.length >= 11, {
        message: () => `the oversized row is refused and the others go out (seen ${seen.length})`,
      })
      await assertHeld(db, topic, a3)
      assert.deepEqual(
        (await listRefused(db, { topic })).map((r) => [r.id, r.reason, r.heldBehind]),
        [[a2, 'MESSAGE_TOO_LARGE', 1]],
      )

      // Retried while the cause is still there: refused again, and set aside again.
      assert.deepEqual(await retryRefused(db, [a2]), [a2])
      await waitFor(async () => (await rowOf(db, a2))?.publish_attempts === 2 && (await rowOf(db, a2))?.refused_at, {
        message: 'the retried row is tried, refused, and set aside again',
      })
      assert.equal((await rowOf(db, a3))?.published, false, 'the row behind it still waits')

      await assert.rejects(discardRefused(db, [a2], '  '), /needs a reason/)
      assert.deepEqual(await discardRefused(db, [a2, a3], 'too large for the topic', 'test-operator'), [a2])
      await waitFor(async () => (await relay.pending()) === 0, { message: 'the row held behind goes out' })
      await waitFor(() => labelsByKey(seen).A?.length === 2, { message: 'the consumer sees it' })
      assert.deepEqual(labelsByKey(seen).A, ['a1', 'a3'])
      assert.deepEqual(await listRefused(db, { topic }), [])
    } finally {
      await relay.stop()
      await sub.close()
    }
  })

  it('a failure that is not a refusal, while looking for the refused row, goes through the usual retry', async () => {
    const topic = uniqueName('refused')
    const { seen, sub } = await follow(embedded, topic)
    const refusingLarge = refusing()
    // The broker goes away for b1's own publish, once: after the batch was refused, before b1 went out.
    let failedOnce = false
    const flaky: Transport = {
      ...refusingLarge,
      async publish(messages, options) {
        if (!failedOnce && messages.length === 1 && messages[0]?.value === 'b1') {
          failedOnce = true
          throw new Error('the broker went away')
        }
        return refusingLarge.publish(messages, options)
      },
    }
    const relay = relayOn(flaky)
    try {
      const [a1, a2, b1, b2] = await enqueue(db, [
        { topic, key: 'A', value: 'a1' },
        { topic, key: 'A', value: oversized('a2') },
        { topic, key: 'B', value: 'b1' },
        { topic, key: 'B', value: 'b2' },
      ])
      assert.ok(a1 && a2 && b1 && b2)
      await waitFor(async () => (await relay.pending()) === 1 && seen.length === 3, {
        message: () => `everything but the refused row goes out (seen ${seen.length})`,
      })
      assert.ok(failedOnce)
      assert.deepEqual(labelsByKey(seen), { A: ['a1'], B: ['b1', 'b2'] })
      const retried = await rowOf(db, b1)
      assert.deepEqual(
        { attempts: retried?.publish_attempts, error: retried?.last_error, refused: retried?.refused_at },
        { attempts: 2, error: 'the broker went away', refused: null },
        'the failed attempt is recorded on the row, which is not set aside',
      )
      assert.equal((await rowOf(db, a2))?.refused_reason, 'MESSAGE_TOO_LARGE')
      await discardRefused(db, [a2], 'test over')
    } finally {
      await relay.stop()
      await sub.close()
    }
  })

  it('retries every row of a topic refused for one reason, in order, and no other row', async () => {
    const granted = uniqueName('refused')
    const other = uniqueName('refused')
    const unauthorized = new Set<string>()
    const { seen, sub } = await follow(embedded, granted)
    const otherSeen = await follow(embedded, other)
    const relay = relayOn(refusing(unauthorized))
    try {
      // First a row too large for the topic; then the principal loses both topics.
      const [c1, c2] = await enqueue(db, [
        { topic: granted, key: 'C', value: oversized('c1') },
        { topic: granted, key: 'C', value: 'c2' },
      ])
      assert.ok(c1 && c2)
      await waitFor(async () => (await rowOf(db, c1))?.refused_reason, { message: 'the oversized row is refused' })
      unauthorized.add(granted).add(other)
      const [a1, a2, b1, o1, o2] = await enqueue(db, [
        { topic: granted, key: 'A', value: 'a1' },
        { topic: granted, key: 'A', value: 'a2' },
        { topic: granted, key: 'B', value: 'b1' },
        { topic: other, key: 'A', value: 'o1' },
        { topic: other, key: 'A', value: 'o2' },
      ])
      assert.ok(a1 && a2 && b1 && o1 && o2)
      const aclRefused = { topic: granted, reason: 'TOPIC_AUTHORIZATION_FAILED' }
      await waitFor(
        async () =>
          (await refusedIds(db, aclRefused)).length === 2 && (await refusedIds(db, { topic: other })).length === 1,
        { message: 'the first row of each key of the unauthorized topics is refused' },
      )
      assert.deepEqual(await refusedIds(db, aclRefused), [a1, b1], 'the rows the ACL refused, oldest first')
      assert.deepEqual(await refusedIds(db, { topic: granted }), [c1, a1, b1], 'and every refused row of the topic')
      assert.deepEqual(
        (await listRefused(db, aclRefused)).map((r) => [r.id, r.heldBehind]),
        [
          [a1, 1],
          [b1, 0],
        ],
        'list selects as retry does',
      )

      // The operator grants the ACL on one topic and retries the rows it refused.
      unauthorized.delete(granted)
      const otherBefore = await rowOf(db, o1)
      assert.deepEqual(await retryRefused(db, await refusedIds(db, aclRefused)), [a1, b1])
      await waitFor(() => seen.length === 3, { message: () => `the retried rows go out (seen ${seen.length})` })
      assert.deepEqual(labelsByKey(seen), { A: ['a1', 'a2'], B: ['b1'] }, 'each key in order, the held row after')
      assert.deepEqual(await refusedIds(db, { topic: granted }), [c1], 'the row refused for its size is not retried')
      assert.equal((await rowOf(db, c1))?.publish_attempts, 1)
      assert.deepEqual(await rowOf(db, o1), otherBefore, "the other topic's refused row is left as it was")
      assert.equal((await rowOf(db, o2))?.published, false, "and its key's later row still waits")
      assert.equal(otherSeen.seen.length, 0)

      unauthorized.clear()
      await discardRefused(
        db,
        [...(await refusedIds(db, { topic: granted })), ...(await refusedIds(db, { topic: other }))],
        'test over',
      )
    } finally {
      await relay.stop()
      await sub.close()
      await otherSeen.sub.close()
    }
  })
})
