import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { startTestApp } from '../../../test/support/app.ts'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase, uniqueName } from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { readStream } from '../eventstore/event-store.ts'
import type { Problem } from '../http/problem.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import type { Transport } from '../transport/port.ts'

/**
 * Group commit through the order API: 200 requests sent at once share transactions, and each still
 * gets the answer it would have had alone. On the same stream: one PATCH per If-Match version
 * wins and the others conflict, PATCHes without one all apply in turn, one cancel wins and the
 * others are refused. On different streams: every create lands once, and two creates with one
 * Idempotency-Key create one order (the second is the first's replay, after the group that held
 * both was rolled back and run again one by one). A COMMIT that fails runs every work again alone.
 */

const order = (customerId: string) => ({
  customerId,
  items: [{ productId: 'p-1', name: 'Pizza', price: 10, quantity: 2 }],
})

interface Counted {
  db: SqlDatabase
  /** Transactions that reached the database, and how many of them were rolled back. */
  stats: { transactions: number; rolledBack: number; failedGroups: number }
  /**
   * The next COMMIT of a transaction that held more than one command fails, as a serialization
   * failure would, after the work ran. A group is seen by its statements: over ten of them (works
   * sharing a transaction), or one given several rows at once (commands folded into one statement
   * per table, whose locked read names every stream).
   */
  failNextGroupCommit(): void
}

/**
 * The database, counting its transactions, with two faults: every COMMIT is slow (1 ms), and a
 * group's COMMIT can fail after the work.
 */
function counted(real: SqlDatabase): Counted {
  const stats = { transactions: 0, rolledBack: 0, failedGroups: 0 }
  let failing = false
  const db: SqlDatabase = {
    dialect: real.dialect,
    query: (text, params) => real.query(text, params),
    exec: (text) => real.exec(text),
    close: () => real.close(),
    async transaction(work) {
      stats.transactions++
      try {
        return await real.transaction(async (tx) => {
          let statements = 0
          let several = false
          const result = await work({
            query: (text, params) => {
              statements++
              if (params?.some((param) => Array.isArray(param) && param.length > 1)) several = true
              return tx.query(text, params)
            },
            exec: (text) => {
              statements++
              return tx.exec(text)
            },
          })
          // A commit takes a moment, as a disk's flush does. PGlite runs in this thread and would
          // otherwise finish each transaction before the next request is parsed, so nothing would
          // ever arrive while one is in flight.
          await new Promise((resolve) => setTimeout(resolve, 1))
          if (failing && (statements > 10 || several)) {
            failing = false
            stats.failedGroups++
            throw Object.assign(new Error('could not serialize access (injected at COMMIT)'), { code: '40001' })
          }
          return result
        })
      } catch (error) {
        stats.rolledBack++
        throw error
      }
    },
  }
  return {
    db,
    stats,
    failNextGroupCommit() {
      failing = true
    },
  }
}

function groupCommit(name: string, open: () => Promise<TestDatabase>) {
  describe(`group commit of concurrent commands on ${name}`, () => {
    let database: TestDatabase
    let transport: Transport
    let app: App
    let db: Counted

    before(async () => {
      database = await open()
      db = counted(database.db)
      transport = await createEmbeddedTransport({ db: database.db, partitions: 3, pollIntervalMs: 50 })
      app = await startTestApp({ db: db.db, transport })
    })
    after(async () => {
      await app?.close()
      await transport?.close()
      await database?.cleanup()
    })

    const send = (
      method: 'POST' | 'PATCH' | 'GET',
      url: string,
      payload?: Record<string, unknown>,
      headers: Record<string, string> = {},
    ): Promise<LightMyRequestResponse> => {
      const options: InjectOptions = { method, url, headers, ...(payload === undefined ? {} : { payload }) }
      return app.http.inject(options)
    }
    const create = async (customerId: string) => {
      const response = await send('POST', '/api/orders', order(customerId))
      assert.equal(response.statusCode, 201, response.body)
      return response.json<{ id: string; version: number }>()
    }
    const problem = (response: LightMyRequestResponse) => response.json<Problem>()

    it('answers each of 200 concurrent requests on the same and on different streams as it would alone', async () => {
      const customer = uniqueName('group')
      const pinned = await create(customer) // PATCHed with If-Match: one wins
      const open = await create(customer) // PATCHed without: all apply
      const cancelled = await create(customer) // cancelled with 20 reasons: one wins
      const before = { ...db.stats }

      const requests: { kind: string; index: number; run: Promise<LightMyRequestResponse> }[] = []
      const add = (kind: string, count: number, run: (i: number) => Promise<LightMyRequestResponse>) => {
        for (let i = 0; i < count; i++) requests.push({ kind, index: i, run: run(i) })
      }
      const keys = Array.from({ length: 10 }, () => uniqueName('key'))
      add('pinned', 50, (i) =>
        send('PATCH', `/api/orders/${pinned.id}`, { notes: `pinned ${i}` }, { 'if-match': `"${pinned.version}"` }),
      )
      add('open', 50, (i) => send('PATCH', `/api/orders/${open.id}`, { notes: `open ${i}` }))
      add('cancel', 20, (i) => send('POST', `/api/orders/${cancelled.id}/cancel`, { reason: `reason ${i}` }))
      add('create', 60, () => send('POST', '/api/orders', order(customer)))
      // Two requests per key: the same order twice, once created and once replayed.
      add('keyed', 20, (i) => send('POST', '/api/orders', order(customer), { 'idempotency-key': keys[i % 10] ?? '' }))
      assert.equal(requests.length, 200)
      const answers = await Promise.all(requests.map(async (r) => ({ ...r, response: await r.run })))
      const of = (kind: string) => answers.filter((a) => a.kind === kind)

      // The same stream with If-Match: exactly one of them applied, the others are told why.
      const pinnedWins = of('pinned').filter((a) => a.response.statusCode === 200)
      assert.equal(pinnedWins.length, 1, 'one PATCH with the version it saw applies')
      for (const loser of of('pinned').filter((a) => a.response.statusCode !== 200)) {
        assert.equal(loser.response.statusCode, 409, loser.response.body)
        assert.equal(problem(loser.response).code, 'VERSION_CONFLICT')
      }
      const pinnedEvents = await readStream(database.db, pinned.id)
      assert.equal(pinnedEvents.length, 2)
      assert.equal(
        (pinnedEvents[1]?.data as { notes?: string } | undefined)?.notes,
        `pinned ${pinnedWins[0]?.index}`,
        'the stored change is the winner’s',
      )

      // The same stream without If-Match: each applies on the state the one before left.
      for (const answer of of('open')) assert.equal(answer.response.statusCode, 200, answer.response.body)
      const versions = of('open')
        .map((a) => a.response.json<{ version: number }>().version)
        .sort((a, b) => a - b)
      assert.deepEqual(
        versions,
        Array.from({ length: 50 }, (_, i) => open.version + 1 + i),
        'every PATCH got a version of its own',
      )
      const openEvents = await readStream(database.db, open.id)
      assert.equal(openEvents.length, 51)
      for (const answer of of('open')) {
        const { version } = answer.response.json<{ version: number }>()
        assert.equal((openEvents[version - 1]?.data as { notes?: string } | undefined)?.notes, `open ${answer.index}`)
      }

      // One cancel wins; the others, with another reason, are refused.
      const cancels = of('cancel').filter((a) => a.response.statusCode === 200)
      assert.equal(
        cancels.length,
        1,
        of('cancel')
          .map((a) => a.response.body)
          .join('\n'),
      )
      for (const refused of of('cancel').filter((a) => a.response.statusCode !== 200)) {
        assert.equal(refused.response.statusCode, 409, refused.response.body)
        assert.equal(problem(refused.response).code, 'INVALID_TRANSITION')
      }
      const cancelledEvents = await readStream(database.db, cancelled.id)
      assert.equal(cancelledEvents.length, 2)
      assert.equal((cancelledEvents[1]?.data as { reason?: string } | undefined)?.reason, `reason ${cancels[0]?.index}`)

      // Different streams: every create is an order of its own.
      const created = new Set<string>()
      for (const answer of of('create')) {
        assert.equal(answer.response.statusCode, 201, answer.response.body)
        created.add(answer.response.json<{ id: string }>().id)
      }
      assert.equal(created.size, 60)
      for (const orderId of created) assert.equal((await readStream(database.db, orderId)).length, 1)

      // One Idempotency-Key, two requests: one order, the second answer a replay of the first.
      for (let k = 0; k < 10; k++) {
        const pair = of('keyed').filter((a) => a.index % 10 === k)
        for (const answer of pair) assert.equal(answer.response.statusCode, 201, answer.response.body)
        const ids = new Set(pair.map((a) => a.response.json<{ id: string }>().id))
        assert.equal(ids.size, 1, `key ${k}: one order`)
        assert.deepEqual(pair.map((a) => a.response.headers['idempotent-replayed'] === 'true').sort(), [false, true])
      }
      const { rows } = await database.db.query<{ n: string }>(
        `SELECT count(DISTINCT stream_id)::text AS n FROM es_events e
          WHERE e.event_type = 'OrderCreated' AND e.data->>'customerId' = $1`,
        [customer],
      )
      assert.equal(Number(rows[0]?.n), 3 + 60 + 10, 'no order was created twice')

      // And they did share: far fewer transactions than requests that wrote.
      const transactions = db.stats.transactions - before.transactions
      assert.ok(transactions < 150, `200 requests took ${transactions} transactions`)
    })

    it('a COMMIT that fails runs every work of the group again alone: each applied once', async () => {
      const customer = uniqueName('group-commit-fails')
      const target = await create(customer)
      const before = { ...db.stats }
      db.failNextGroupCommit()
      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          i % 2 === 0
            ? send('PATCH', `/api/orders/${target.id}`, { notes: `again ${i}` })
            : send('POST', '/api/orders', order(customer)),
        ),
      )
      for (const response of answers) assert.ok([200, 201].includes(response.statusCode), response.body)
      assert.equal(db.stats.failedGroups - before.failedGroups, 1, 'a group’s COMMIT failed')
      assert.equal((await readStream(database.db, target.id)).length, 1 + 20)
      const ids = new Set(answers.filter((r) => r.statusCode === 201).map((r) => r.json<{ id: string }>().id))
      assert.equal(ids.size, 20)
      for (const orderId of ids) assert.equal((await readStream(database.db, orderId)).length, 1)
    })
  })
}

groupCommit('PGlite', pgliteTestDatabase)
groupCommit('PostgreSQL', () => postgresTestDatabase('of_group'))
