import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  joined,
  kafkaBrokers,
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { watchedDatabase } from '../../../test/support/watched-db.ts'
import { deadLetterConsole } from '../../dead-letters/application/console.ts'
import { createLogger } from '../logger.ts'
import { type BatchScope, batchScope } from '../sql/batch.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import { createKafkaTransport } from '../transport/kafka.ts'
import type { IncomingMessage, Transport } from '../transport/port.ts'
import { type Decoded, type ReliableSubscription, startReliableConsumer } from '../transport/reliable-consumer.ts'
import { sqlDeadLetterStore } from './store.ts'

/**
 * Per-key parking on both transports: a key whose message is dead-lettered waits for it (its later
 * messages are parked, other keys flow), and a redrive or a discard releases it in order, through
 * a restart and with messages of the key arriving while it is released.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

interface Step {
  key: string
  n: number
}

const decodeStep = (message: IncomingMessage): Decoded<Step> => {
  try {
    const value = JSON.parse(message.value) as Step
    if (typeof value.n !== 'number') return { ok: false, reason: 'INVALID_EVENT', message: 'n: must be a number' }
    return { ok: true, value }
  } catch {
    return { ok: false, reason: 'NOT_JSON', message: 'message is not JSON' }
  }
}

const step = (topic: string, key: string, n: number) => ({ topic, key, value: JSON.stringify({ key, n }) })

function suite(name: string, open: () => Promise<{ transport: Transport; db: SqlDatabase; cleanup(): Promise<void> }>) {
  describe(`per-key parking on ${name}`, () => {
    let transport: Transport
    let db: SqlDatabase
    let cleanup: () => Promise<void>
    before(async () => {
      ;({ transport, db, cleanup } = await open())
      await migratePlatform(db)
    })
    after(async () => cleanup())

    /** A consumer that parks keys, recording what it handled per key, failing for good on `failing`. */
    const consumer = async (
      topic: string,
      groupId: string,
      handled: Map<string, number[]>,
      failing: Set<string>,
      options: { gate?: (s: Step) => Promise<void>; scope?: BatchScope } = {},
    ): Promise<ReliableSubscription> => {
      const { scope } = options
      const subscription = await startReliableConsumer({
        transport,
        groupId,
        topics: [topic],
        decode: decodeStep,
        retry: { max: 0, backoffMs: 1 },
        logger,
        // In batches as the app runs them: the store over the scope's database, so that a batch
        // reads whether its keys are parked in its own transaction.
        deadLetters: sqlDeadLetterStore(scope?.db ?? db),
        ...(scope ? { batch: { max: 50, run: (work) => scope.run(work) } } : {}),
        parkKeys: true,
        handle: async (s) => {
          if (failing.has(`${s.key}:${s.n}`)) throw new Error(`step ${s.key}:${s.n} fails`)
          await options.gate?.(s)
          // What a batch handled counts once it committed (a failed batch is handled again one by one).
          const record = () => handled.set(s.key, [...(handled.get(s.key) ?? []), s.n])
          scope ? scope.afterCommit(record) : record()
        },
      })
      await joined(subscription)
      return subscription
    }

    const parkedCount = async (groupId: string, key: string) => {
      const { rows } = await db.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM parked_messages WHERE group_id = $1 AND message_key = $2',
        [groupId, key],
      )
      return Number(rows[0]?.n)
    }
    const openDeadLetter = async (groupId: string, key: string) => {
      const { rows } = await db.query<{ id: string }>(
        "SELECT id::text AS id FROM dead_letters WHERE group_id = $1 AND message_key = $2 AND state = 'open'",
        [groupId, key],
      )
      return rows[0]?.id
    }

    it("parks a key behind its dead letter while other keys flow, and a redrive hands the key's messages back in order", async (t) => {
      const topic = uniqueName('steps')
      const groupId = uniqueName('parking')
      const handled = new Map<string, number[]>()
      const failing = new Set(['k:2'])
      const subscription = await consumer(topic, groupId, handled, failing)
      t.after(() => subscription.close())
      await transport.publish([step(topic, 'k', 1), step(topic, 'k', 2), step(topic, 'k', 3), step(topic, 'k', 4)])
      await transport.publish([step(topic, 'other', 1), step(topic, 'other', 2)])
      await waitFor(async () => (await parkedCount(groupId, 'k')) === 2 && handled.get('other')?.length === 2, {
        message: 'k:3 and k:4 parked behind k:2, other handled',
      })
      assert.deepEqual(handled.get('k'), [1])
      const id = await openDeadLetter(groupId, 'k')
      assert.ok(id, 'k:2 is an open dead letter')
      const console = deadLetterConsole({ db, transport })
      const shown = await console.get(id)
      assert.equal(shown.reason, 'RETRIES_EXHAUSTED')
      assert.equal(shown.parkedMessages, 2)
      assert.deepEqual(
        shown.parked.map((p) => JSON.parse(p.offset) >= 0),
        [true, true],
      )

      failing.clear()
      const { action, deadLetter } = await console.redrive(id, { to: 'consumer', actor: 'operator-1' })
      assert.equal(action.done, 1)
      assert.equal(deadLetter.state, 'redriven')
      assert.equal(deadLetter.resolvedBy, 'operator-1')
      await transport.publish([step(topic, 'k', 5)])
      await waitFor(() => handled.get('k')?.length === 5, { message: 'k is released' })
      assert.deepEqual(handled.get('k'), [1, 2, 3, 4, 5], "k's messages in their original order")
      await waitFor(
        async () => (await console.summary()).parkedKeys.every((p) => p.key !== 'k' || p.group !== groupId),
        {
          message: 'k is no longer parked',
        },
      )
      const [logged] = await console.actions(1)
      assert.equal(logged?.actor, 'operator-1')
      assert.equal(logged?.action, 'redrive')
    })

    it("in batches: a batch holding a parked key goes one by one, the key's messages wait in order, and only a group with parked keys asks about a batch's keys, in the batch's own transaction", async (t) => {
      const topic = uniqueName('steps')
      const groupId = uniqueName('parking')
      const handled = new Map<string, number[]>()
      const failing = new Set(['k:2'])
      // Reads of whether keys are parked, inside a transaction and outside one (a message handled
      // one by one reads its own key outside; a batch, a message that came alone too, reads its
      // keys in its transaction), and of whether the group has any parked key (once per assignment).
      const reads = { inside: 0, outsideForSeveralKeys: 0, outside: 0, group: 0 }
      const isParkedRead = (text: string) => /FROM parked_keys\s+WHERE group_id = \$1 AND message_key/.test(text)
      const counted = watchedDatabase(db, {
        query: (text, params) => {
          if (isParkedRead(text) && ((params?.[1] as string[] | undefined)?.length ?? 0) > 1) {
            reads.outsideForSeveralKeys++
          }
          if (isParkedRead(text)) reads.outside++
          if (/EXISTS \(SELECT 1 FROM parked_keys WHERE group_id = \$1\)/.test(text)) reads.group++
        },
        inTransaction: (text) => {
          if (isParkedRead(text)) reads.inside++
        },
      })
      const scope = batchScope(counted)
      const start = () => consumer(topic, groupId, handled, failing, { scope })
      await transport.publish(Array.from({ length: 20 }, (_, i) => step(topic, `free-${i % 4}`, i)))
      let subscription: ReliableSubscription | undefined = await start()
      t.after(() => subscription?.close())
      await waitFor(() => [...handled.values()].flat().length === 20, { message: 'the 20 free steps handled' })
      // The group has no parked key: the member asked that once for its assignment, and no batch asked
      // about its keys.
      assert.ok(reads.group > 0, 'the member did not ask whether its group has parked keys')
      assert.deepEqual({ inside: reads.inside, outside: reads.outside }, { inside: 0, outside: 0 })
      const groupReads = reads.group
      await transport.publish([step(topic, 'alone', 1)])
      await waitFor(() => handled.get('alone')?.length === 1, { message: 'the message alone handled' })
      assert.deepEqual(
        { inside: reads.inside, outside: reads.outside, group: reads.group },
        { inside: 0, outside: 0, group: groupReads },
      )

      await transport.publish([step(topic, 'k', 1), step(topic, 'k', 2)])
      await waitFor(async () => (await openDeadLetter(groupId, 'k')) !== undefined, { message: 'k:2 dead-lettered' })
      // A backlog after the dead letter: batches of k's later messages and of other keys. The member
      // parked k itself, so its batches ask now, in their transactions.
      await transport.publish([
        step(topic, 'k', 3),
        step(topic, 'other', 1),
        step(topic, 'k', 4),
        step(topic, 'other', 2),
      ])
      await waitFor(async () => (await parkedCount(groupId, 'k')) === 2 && handled.get('other')?.length === 2, {
        message: 'k:3 and k:4 parked behind k:2, other handled',
      })
      assert.deepEqual(handled.get('k'), [1])
      // A message alone asks in its transaction, as a batch of one.
      const before = { inside: reads.inside, outside: reads.outside }
      await transport.publish([step(topic, 'alone', 2)])
      await waitFor(() => handled.get('alone')?.length === 2, { message: 'the second message alone handled' })
      assert.deepEqual(
        { inside: reads.inside - before.inside, outside: reads.outside - before.outside },
        { inside: 1, outside: 0 },
      )
      assert.equal(reads.outsideForSeveralKeys, 0, 'a batch read whether its keys are parked outside its transaction')

      // The group's next member (a restart) learns that k is parked with its assignment: k:5 is parked too.
      await subscription.close()
      subscription = await start()
      await transport.publish([step(topic, 'k', 5), step(topic, 'other', 3)])
      await waitFor(async () => (await parkedCount(groupId, 'k')) === 3 && handled.get('other')?.length === 3, {
        message: 'k:5 parked by the next member, other handled',
      })
      assert.deepEqual(handled.get('k'), [1])

      failing.clear()
      const id = (await openDeadLetter(groupId, 'k')) as string
      await deadLetterConsole({ db, transport }).redrive(id, { to: 'consumer', actor: 'operator-1' })
      await transport.publish([step(topic, 'k', 6)])
      await waitFor(() => handled.get('k')?.length === 6, { message: 'k is released' })
      assert.deepEqual(handled.get('k'), [1, 2, 3, 4, 5, 6], "k's messages in their original order")
      // Released, the group has no parked key again, and the member knows it: its batches stop asking.
      const released = { inside: reads.inside, outside: reads.outside }
      await transport.publish([step(topic, 'alone', 3)])
      await waitFor(() => handled.get('alone')?.length === 3, { message: 'the third message alone handled' })
      assert.deepEqual({ inside: reads.inside, outside: reads.outside }, released)
    })

    it('keeps order when a message of the key arrives while its parked messages are released, and after a restart while parked', async (t) => {
      const topic = uniqueName('steps')
      const groupId = uniqueName('parking')
      const handled = new Map<string, number[]>()
      const failing = new Set(['k:1'])
      let first: ReliableSubscription | undefined = await consumer(topic, groupId, handled, failing)
      t.after(() => first?.close())
      await transport.publish([step(topic, 'k', 1), step(topic, 'k', 2)])
      await waitFor(async () => (await parkedCount(groupId, 'k')) === 1, { message: 'k:2 parked' })
      // A restart while parked: what comes meanwhile is parked by the next consumer of the group.
      await first.close()
      first = undefined
      await transport.publish([step(topic, 'k', 3)])
      let releaseGate: () => void = () => {}
      const gateOpen = new Promise<void>((resolve) => {
        releaseGate = resolve
      })
      let draining = false
      const second = await consumer(topic, groupId, handled, failing, {
        gate: async (s) => {
          if (s.key === 'k' && s.n === 2) {
            draining = true
            await gateOpen
          }
        },
      })
      t.after(() => second.close())
      await waitFor(async () => (await parkedCount(groupId, 'k')) === 2, { message: 'k:3 parked after the restart' })
      const id = await openDeadLetter(groupId, 'k')
      assert.ok(id)
      failing.clear()
      await deadLetterConsole({ db, transport }).redrive(id, { to: 'consumer', actor: 'operator-1' })
      await waitFor(() => draining, { message: 'the release reached k:2' })
      // k:4 arrives while k:2 is being handled in the release: it must wait for k:3.
      await transport.publish([step(topic, 'k', 4)])
      releaseGate()
      await waitFor(() => handled.get('k')?.length === 4, { message: 'k is released' })
      assert.deepEqual(handled.get('k'), [1, 2, 3, 4])
    })

    it('records every retry with its error, for the journey', async (t) => {
      const topic = uniqueName('steps')
      const groupId = uniqueName('retrying')
      let failures = 2
      const subscription = await startReliableConsumer({
        transport,
        groupId,
        topics: [topic],
        decode: decodeStep,
        retry: { max: 3, backoffMs: 5 },
        logger,
        deadLetters: sqlDeadLetterStore(db),
        handle: async (s) => {
          if (failures-- > 0) throw new Error(`step ${s.n} is not ready yet`)
        },
      })
      t.after(() => subscription.close())
      await joined(subscription)
      await transport.publish([step(topic, 'r', 1)])
      const rows = await waitFor(
        async () => {
          const { rows } = await db.query<{ attempt: number; error: { message: string }; retry_in_ms: number }>(
            'SELECT attempt, error, retry_in_ms FROM consumer_retries WHERE group_id = $1 AND message_key = $2 ORDER BY id',
            [groupId, 'r'],
          )
          return rows.length === 2 ? rows : null
        },
        { message: 'two retries recorded' },
      )
      assert.deepEqual(
        rows.map((r) => [r.attempt, r.error.message, r.retry_in_ms]),
        [
          [1, 'step 1 is not ready yet', 5],
          [2, 'step 1 is not ready yet', 10],
        ],
      )
    })

    it('a discard releases the parked messages without handling the dead letter; a second action on it is refused', async (t) => {
      const topic = uniqueName('steps')
      const groupId = uniqueName('parking')
      const handled = new Map<string, number[]>()
      const subscription = await consumer(topic, groupId, handled, new Set())
      t.after(() => subscription.close())
      await transport.publish([{ topic, key: 'k', value: 'not json' }, step(topic, 'k', 2), step(topic, 'k', 3)])
      await waitFor(async () => (await parkedCount(groupId, 'k')) === 2, { message: 'poison parks k' })
      const id = await openDeadLetter(groupId, 'k')
      assert.ok(id)
      const console = deadLetterConsole({ db, transport })
      assert.equal((await console.get(id)).reason, 'NOT_JSON')
      await console.discard(id, { comment: 'a test sent garbage', actor: 'operator-2' })
      await waitFor(() => handled.get('k')?.length === 2, { message: 'the parked messages follow' })
      assert.deepEqual(handled.get('k'), [2, 3])
      await assert.rejects(console.redrive(id, { to: 'consumer', actor: 'operator-2' }), /discarded/)
      const [refused, discarded] = await console.actions(2)
      assert.equal(refused?.status, 'failed')
      assert.equal(discarded?.comment, 'a test sent garbage')
    })

    it('a bulk redrive by reason honours the dry run, and a redrive to one group is skipped by the others', async (t) => {
      const topic = uniqueName('steps')
      const groupA = uniqueName('parking-a')
      const groupB = uniqueName('parking-b')
      const handledA = new Map<string, number[]>()
      const handledB = new Map<string, number[]>()
      const failing = new Set(['a:1', 'b:1'])
      const a = await consumer(topic, groupA, handledA, failing)
      t.after(() => a.close())
      const b = await consumer(topic, groupB, handledB, new Set())
      t.after(() => b.close())
      await transport.publish([step(topic, 'a', 1), step(topic, 'b', 1)])
      await waitFor(async () => (await openDeadLetter(groupA, 'a')) && (await openDeadLetter(groupA, 'b')), {
        message: 'two dead letters in group A',
      })
      await waitFor(() => handledB.get('a')?.length === 1 && handledB.get('b')?.length === 1, {
        message: 'group B handled both',
      })
      const console = deadLetterConsole({ db, transport })
      const dry = await console.redriveMany(
        { group: groupA, reason: 'RETRIES_EXHAUSTED', to: 'consumer', dryRun: true, ratePerSecond: 100 },
        { actor: 'operator-1' },
      )
      assert.equal(dry.matched, 2)
      assert.equal(dry.done, 0)
      failing.clear()
      const progress: number[] = []
      const done = await console.redriveMany(
        { group: groupA, reason: 'RETRIES_EXHAUSTED', to: 'consumer', dryRun: false, ratePerSecond: 100 },
        { actor: 'operator-1', onProgress: (p) => progress.push(p.done) },
      )
      assert.equal(done.done, 2)
      assert.equal(done.status, 'completed')
      assert.equal(progress.at(-1), 2)
      await waitFor(() => handledA.get('a')?.length === 1 && handledA.get('b')?.length === 1, {
        message: 'group A handled both redriven messages',
      })
      // Group B saw the redrives on the topic and left them: it still handled each once.
      await transport.publish([step(topic, 'a', 2)])
      await waitFor(() => handledB.get('a')?.length === 2, { message: 'group B moved past the redrives' })
      assert.deepEqual(handledB.get('a'), [1, 2])
      assert.deepEqual(handledB.get('b'), [1])
    })
  })
}

suite('the embedded log (PGlite)', async () => {
  const database: TestDatabase = await pgliteTestDatabase()
  const transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 20 })
  return {
    transport,
    db: database.db,
    async cleanup() {
      await transport.close()
      await database.cleanup()
    },
  }
})

suite('Kafka and PostgreSQL', async () => {
  const database = await postgresTestDatabase('of_parking')
  const transport = await createKafkaTransport({
    brokers: kafkaBrokers(),
    clientId: uniqueName('parking'),
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
  })
  return {
    transport,
    db: database.db,
    async cleanup() {
      await transport.close()
      await database.cleanup()
    },
  }
})
