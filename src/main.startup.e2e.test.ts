import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort, testDatabaseUrl, waitFor } from '../test/support/index.ts'
import { joinShards } from './platform/outbox/relay-lease.ts'
import { migratePlatform } from './platform/sql/migrations.ts'
import { openPglite } from './platform/sql/pglite.ts'

/**
 * What a user sees when start-up cannot go on because of the configuration: one line that names the
 * variable to change, no stack, exit code 1; and warnings for misspelled variables.
 */

const repoRoot = join(import.meta.dirname, '..')

interface Run {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

function run(env: Record<string, string>): Run {
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, output: () => output, exited }
}

/** Runs to the end and returns the exit code and what it wrote. */
async function failsWith(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const r = run(env)
  const code = await r.exited
  return { code, output: r.output() }
}

function assertOneLine(output: string, pattern: RegExp): void {
  const line = output.split('\n').find((l) => l.startsWith('orderflow cannot start:'))
  assert.ok(line, `no 'orderflow cannot start:' line in:\n${output}`)
  assert.match(line, pattern)
  assert.doesNotMatch(output, /^\s+at /m, `a stack was printed:\n${output}`)
}

describe('start-up failures name what to fix', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orderflow-startup-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('a port in use names PORT', async () => {
    const blocker = createServer()
    const port = await freePort()
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve))
    try {
      const { code, output } = await failsWith({ DATA_DIR: join(dir, 'port'), PORT: String(port) })
      assert.equal(code, 1)
      assertOneLine(output, new RegExp(`PORT ${port} is already in use`))
    } finally {
      blocker.close()
    }
  })

  it('a database that does not exist, a host that does not resolve and a closed port name DATABASE_URL', async () => {
    const missing = new URL(testDatabaseUrl)
    missing.pathname = '/orderflow_no_such_database'
    const unresolvable = new URL(testDatabaseUrl)
    unresolvable.hostname = 'no-such-host.invalid'
    const closed = new URL(testDatabaseUrl)
    closed.port = String(await freePort())
    for (const [url, pattern] of [
      [missing, /DATABASE_URL .*does not exist/],
      [unresolvable, /DATABASE_URL .*does not resolve/],
      [closed, /DATABASE_URL .*nothing accepts connections/],
    ] as const) {
      const { code, output } = await failsWith({ AUTH: 'off', DATABASE_URL: url.toString(), PORT: '0' })
      assert.equal(code, 1, output)
      assertOneLine(output, pattern)
    }
  })

  it('a DATA_DIR another server holds names DATA_DIR and the process; a misspelled variable is named', async () => {
    const dataDir = join(dir, 'locked')
    const port = await freePort()
    const first = run({ DATA_DIR: dataDir, PORT: String(port), SAGA_MOD: 'choreography' })
    try {
      await waitFor(() => first.output().includes('orderflow listening on') || first.child.exitCode !== null, {
        timeoutMs: 60_000,
        message: () => `the first server did not start:\n${first.output()}`,
      })
      assert.match(first.output(), /SAGA_MOD is not a variable orderflow reads .* did you mean SAGA_MODE\?/)
      assert.match(first.output(), /saga mode orchestration/)
      const { code, output } = await failsWith({ DATA_DIR: dataDir, PORT: '0' })
      assert.equal(code, 1)
      assertOneLine(output, new RegExp(`DATA_DIR .* is in use by process ${first.child.pid}`))
    } finally {
      first.child.kill('SIGTERM')
      await first.exited
    }
  })

  it('another shard count than that of the outbox relays running names OUTBOX_RELAY_SHARDS', async () => {
    // A relay with 8 shards is live on the database (as another process on a shared PostgreSQL would be).
    const dataDir = join(dir, 'shards')
    const db = await openPglite(dataDir)
    try {
      await migratePlatform(db)
      await joinShards(db, { holder: 'other-process', shards: 8, leaseMs: 600_000 })
    } finally {
      await db.close()
    }
    const { code, output } = await failsWith({ DATA_DIR: dataDir, PORT: '0', OUTBOX_RELAY_SHARDS: '4' })
    assert.equal(code, 1)
    assertOneLine(output, /OUTBOX_RELAY_SHARDS is 4, but .* use 8 shards: set OUTBOX_RELAY_SHARDS=8/)
  })
})
