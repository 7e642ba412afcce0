import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestApp } from '../../../test/support/app.ts'
import { postgresTestDatabase, type TestDatabase } from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import type { Transport } from '../transport/port.ts'

/**
 * Rate limits that hold across processes: two apps on one database (two processes behind a load
 * balancer) count against one budget with RATE_LIMIT_STORE=database, and against one each in
 * memory. Behind a proxy, TRUST_PROXY makes the forwarded address the client's.
 */
describe('rate limits across processes', () => {
  let database: TestDatabase
  let transport: Transport
  const apps: App[] = []
  const start = async (env: Record<string, string>) => {
    const app = await startTestApp({
      db: database.db,
      transport,
      env: { RATE_LIMIT: 'on', RATE_LIMIT_PER_IP: '3', RATE_LIMIT_WINDOW_MS: '60000', ...env },
    })
    apps.push(app)
    return app
  }
  before(async () => {
    database = await postgresTestDatabase('of_ratelimit')
    transport = await createEmbeddedTransport({ db: database.db, partitions: 1 })
  })
  after(async () => {
    for (const app of apps) await app.close()
    await transport?.close()
    await database?.cleanup()
  })

  const statuses = async (targets: App[], headers: Record<string, string> = {}) => {
    const answers: number[] = []
    for (const app of targets) {
      answers.push((await app.http.inject({ method: 'GET', url: '/api/orders?limit=1', headers })).statusCode)
    }
    return answers
  }

  it('counts two processes against one budget with the database store', async () => {
    const [a, b] = [await start({ RATE_LIMIT_STORE: 'database' }), await start({ RATE_LIMIT_STORE: 'database' })]
    const answers = await statuses([a, b, a, b, a] as App[], { 'x-forwarded-for': '203.0.113.9' })
    assert.deepEqual(answers, [200, 200, 200, 429, 429])
    const { rows } = await database.db.query<{ count: number }>('SELECT count FROM rate_limit_counters')
    assert.equal(rows.length, 1, 'one counter for the one address, shared')
    await Promise.all([a, b].map((app) => app?.close()))
  })

  it('counts each process on its own with the memory store', async () => {
    const [a, b] = [await start({ RATE_LIMIT_STORE: 'memory' }), await start({ RATE_LIMIT_STORE: 'memory' })]
    const answers = await statuses([a, b, a, b, a, b, a] as App[])
    assert.deepEqual(answers, [200, 200, 200, 200, 200, 200, 429])
    await Promise.all([a, b].map((app) => app?.close()))
  })

  it('believes X-Forwarded-For only with TRUST_PROXY: each client behind the proxy has its own budget', async () => {
    await database.db.query('DELETE FROM rate_limit_counters')
    const trusting = await start({ RATE_LIMIT_STORE: 'database', TRUST_PROXY: 'true' })
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await statuses([trusting], { 'x-forwarded-for': '198.51.100.1' }), [200])
    }
    assert.deepEqual(await statuses([trusting], { 'x-forwarded-for': '198.51.100.1' }), [429])
    assert.deepEqual(await statuses([trusting], { 'x-forwarded-for': '198.51.100.2' }), [200], 'another client')
  })
})
