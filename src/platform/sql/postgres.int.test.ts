import assert from 'node:assert/strict'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { testDatabaseUrl, uniqueName } from '../../../test/support/index.ts'
import type { SqlDatabase } from './port.ts'
import { openPostgres, quoteIdentifier } from './postgres.ts'

/**
 * The PostgreSQL adapter's round trips, counted on the wire: a TCP proxy between the pool and the
 * server counts how often the client speaks again after the server answered. What PostgreSQL
 * counts itself (pg_stat_statements, see es/round-trips.int.test.ts) is statements, and BEGIN is
 * one whether or not it waits for its own answer.
 */
interface CountingProxy {
  url: string
  /** Times the client sent something after the server last did (a new round trip). */
  turns(): number
  close(): Promise<void>
}

async function countingProxy(target: URL): Promise<CountingProxy> {
  let turns = 0
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port || 5432), target.hostname)
    sockets.add(client).add(upstream)
    // As PostgreSQL and node-postgres do: a small answer is not held back waiting for an ACK.
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    let clientSpokeLast = false
    client.on('data', (chunk) => {
      if (!clientSpokeLast) turns++
      clientSpokeLast = true
      upstream.write(chunk)
    })
    upstream.on('data', (chunk) => {
      clientSpokeLast = false
      client.write(chunk)
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('close', end).on('error', end)
    upstream.on('close', end).on('error', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('the proxy has no port')
  const url = new URL(target.toString())
  url.hostname = '127.0.0.1'
  url.port = String(address.port)
  return {
    url: url.toString(),
    turns: () => turns,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

describe('PostgreSQL adapter: round trips of a transaction', () => {
  const schema = uniqueName('of_pg_round_trips')
  let admin: SqlDatabase
  let proxy: CountingProxy
  let db: SqlDatabase

  before(async () => {
    admin = openPostgres({ connectionString: testDatabaseUrl, max: 1 })
    await admin.exec(`CREATE SCHEMA ${quoteIdentifier(schema)}`)
    proxy = await countingProxy(new URL(testDatabaseUrl))
    // One connection, so every statement below goes over the one counted socket.
    db = openPostgres({ connectionString: proxy.url, schema, max: 1 })
    await db.exec('CREATE TABLE things (id text PRIMARY KEY, n int NOT NULL)')
  })
  after(async () => {
    await db?.close()
    await proxy?.close()
    await admin?.exec(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`)
    await admin?.close()
  })

  const counted = async <T>(work: () => Promise<T>) => {
    const before = proxy.turns()
    const value = await work()
    return { value, turns: proxy.turns() - before }
  }

  it('sends BEGIN with the first statement: a one-statement transaction is two round trips', async () => {
    const { turns } = await counted(() =>
      db.transaction((tx) => tx.query('INSERT INTO things (id, n) VALUES ($1, $2)', ['a', 1])),
    )
    assert.equal(turns, 2, 'BEGIN + INSERT, then COMMIT')
    const { rows } = await db.query<{ n: number }>('SELECT n FROM things WHERE id = $1', ['a'])
    assert.deepEqual(rows, [{ n: 1 }])
  })

  it('runs the first statement inside the transaction: a work that throws leaves nothing behind', async () => {
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO things (id, n) VALUES ($1, $2)', ['b', 2])
        await tx.query('UPDATE things SET n = n + 1 WHERE id = $1', ['a'])
        throw new Error('changed my mind')
      }),
      /changed my mind/,
    )
    const { rows } = await db.query<{ id: string; n: number }>('SELECT id, n FROM things ORDER BY id')
    assert.deepEqual(rows, [{ id: 'a', n: 1 }])
  })

  it('rolls back a transaction whose first statement fails, and the connection goes on', async () => {
    await assert.rejects(
      db.transaction((tx) => tx.query('INSERT INTO things (id, n) VALUES ($1, $2)', ['a', 9])),
      (error: Error & { code?: string }) => error.code === '23505',
    )
    // The same (only) connection is in no transaction now: a statement outside one commits.
    await db.query('INSERT INTO things (id, n) VALUES ($1, $2)', ['c', 3])
    const { value } = await counted(() =>
      db.transaction(async (tx) => (await tx.query<{ n: number }>('SELECT n FROM things WHERE id = $1', ['c'])).rows),
    )
    assert.deepEqual(value, [{ n: 3 }])
  })

  it('sends nothing for a transaction that runs no statement', async () => {
    const { value, turns } = await counted(() => db.transaction(async () => 'nothing to do'))
    assert.equal(value, 'nothing to do')
    assert.equal(turns, 0)
  })

  it('still begins before a script of several statements (exec)', async () => {
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.exec("INSERT INTO things (id, n) VALUES ('d', 4); INSERT INTO things (id, n) VALUES ('e', 5)")
        throw new Error('roll it back')
      }),
      /roll it back/,
    )
    const { rows } = await db.query<{ id: string }>("SELECT id FROM things WHERE id IN ('d', 'e')")
    assert.deepEqual(rows, [])
  })

  it('keeps statements of concurrent transactions apart (a pool of one runs them one after the other)', async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        db.transaction(async (tx) => {
          await tx.query('INSERT INTO things (id, n) VALUES ($1, $2)', [`p${i}`, i])
          if (i % 2 === 1) throw new Error('odd')
        }),
      ).map((p) => p.catch(() => undefined)),
    )
    const { rows } = await db.query<{ n: number }>("SELECT n FROM things WHERE id LIKE 'p%' ORDER BY n")
    assert.deepEqual(
      rows.map((r) => r.n),
      [0, 2, 4, 6, 8, 10, 12, 14, 16, 18],
    )
  })
})
