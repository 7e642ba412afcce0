import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort, waitFor } from '../test/support/index.ts'
import { openPglite } from './platform/sql/pglite.ts'

/**
 * `npm start` as a process on its embedded default: SIGTERM in the middle of a load drains what
 * was accepted and exits 0 within SHUTDOWN_TIMEOUT_MS; after a restart every accepted order is
 * there and every event of it is on the embedded log.
 */

const SHUTDOWN_TIMEOUT_MS = 8_000

interface Server {
  child: ChildProcess
  url: string
  output: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

async function start(dataDir: string, env: Record<string, string> = {}): Promise<Server> {
  const port = await freePort()
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: join(import.meta.dirname, '..'),
    env: {
      PATH: process.env.PATH ?? '',
      DATA_DIR: dataDir,
      PORT: String(port),
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  const url = `http://127.0.0.1:${port}`
  await waitFor(() => output.includes('orderflow listening on') || child.exitCode !== null, {
    timeoutMs: 60_000,
    message: () => `the server did not start:\n${output}`,
  })
  assert.equal(child.exitCode, null, `the server exited at start:\n${output}`)
  return { child, url, output: () => output, exited }
}

const order = (i: number) =>
  JSON.stringify({ customerId: `c-${i % 7}`, items: [{ productId: `p-${i}`, price: 9.99, quantity: 1 + (i % 3) }] })

describe('npm start, stopped with SIGTERM under load', () => {
  let dataDir: string
  let server: Server | undefined

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'orderflow-main-'))
  })
  after(async () => {
    server?.child.kill('SIGKILL')
    await rm(dataDir, { recursive: true, force: true })
  })

  it('drains, exits 0 within the timeout, and loses no accepted order or event', async () => {
    server = await start(dataDir)
    const running = server
    const accepted: string[] = []
    let refused = 0
    let stop = false
    // Eight clients posting orders until the server no longer answers.
    const clients = Array.from({ length: 8 }, async (_, client) => {
      for (let i = client; !stop; i += 8) {
        try {
          const response = await fetch(`${running.url}/api/orders`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: order(i),
          })
          const body = (await response.json()) as { id?: string }
          if (response.status === 201 && body.id) accepted.push(body.id)
          else refused++
        } catch {
          // Connection refused or reset: the server stopped taking requests.
          return
        }
      }
    })
    await waitFor(() => accepted.length >= 150, {
      timeoutMs: 60_000,
      message: () => `${accepted.length} orders accepted`,
    })
    const signalledAt = Date.now()
    running.child.kill('SIGTERM')
    const exit = await running.exited
    const took = Date.now() - signalledAt
    stop = true
    await Promise.all(clients)
    assert.deepEqual(exit, { code: 0, signal: null }, running.output().slice(-3000))
    assert.ok(took < SHUTDOWN_TIMEOUT_MS, `it took ${took} ms to stop`)
    assert.match(running.output(), /shutting down/)
    assert.equal(refused, 0, 'no request was answered with an error')

    // Restarted, it has every accepted order and publishes whatever was left in the outbox.
    server = await start(dataDir)
    const restarted = server
    for (const id of accepted) {
      const response = await fetch(`${restarted.url}/api/orders/${id}`)
      assert.equal(response.status, 200, `order ${id} was accepted before the SIGTERM`)
    }
    await waitFor(
      async () => {
        const response = await fetch(`${restarted.url}/api/orders?limit=100`)
        return response.ok
      },
      { message: 'the restarted server answers lists' },
    )
    restarted.child.kill('SIGTERM')
    assert.deepEqual((await restarted.exited).code, 0)
    server = undefined

    const db = await openPglite(dataDir)
    try {
      const pending = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox WHERE published_at IS NULL')
      const onLog = await db.query<{ key: string }>(
        "SELECT DISTINCT key FROM log_messages WHERE topic = 'order-events'",
      )
      assert.equal(pending.rows[0]?.n, '0', 'the outbox was drained')
      const published = new Set(onLog.rows.map((r) => r.key))
      const missing = accepted.filter((id) => !published.has(id))
      assert.deepEqual(missing, [], 'every accepted order has its OrderCreated on order-events')
    } finally {
      await db.close()
    }
  })
})

describe('npm start with SHUTDOWN_DRAIN_MS, stopped with SIGTERM', () => {
  let dataDir: string
  let server: Server | undefined

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'orderflow-drain-'))
  })
  after(async () => {
    server?.child.kill('SIGKILL')
    await rm(dataDir, { recursive: true, force: true })
  })

  it('answers 503 on readiness while it still serves requests, then closes and exits 0', async () => {
    server = await start(dataDir, { SHUTDOWN_DRAIN_MS: '3000' })
    const { url } = server
    await waitFor(async () => (await fetch(`${url}/health/ready`)).status === 200, {
      timeoutMs: 30_000,
      message: 'the server becomes ready',
    })
    server.child.kill('SIGTERM')
    const draining = await waitFor(
      async () => {
        const response = await fetch(`${url}/health/ready`)
        return response.status === 503 ? response.json() : null
      },
      { message: 'readiness answers 503 once SIGTERM arrived' },
    )
    assert.equal((draining as { checks: { shutdown: { status: string } } }).checks.shutdown.status, 'down')
    // Still serving while the load balancer takes it out: a request that arrives now is answered.
    const placed = await fetch(`${url}/api/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: order(1),
    })
    assert.equal(placed.status, 201)
    assert.deepEqual((await server.exited).code, 0)
    assert.match(server.output(), /draining for 3000 ms/)
    server = undefined
  })
})
