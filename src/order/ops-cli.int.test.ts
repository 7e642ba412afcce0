import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { v7 as uuidv7 } from 'uuid'
import { uniqueName } from '../../test/support/index.ts'
import { migrateModules } from '../app.ts'
import { CUSTOMER_EVENTS_TOPIC, customerStreamId } from '../contracts/customer/events.ts'
import { REPLAY_HEADER } from '../platform/es/replay.ts'
import { appendToStream } from '../platform/eventstore/event-store.ts'
import { openPglite } from '../platform/sql/pglite.ts'
import { allModules } from '../services.ts'

/**
 * `npm run orderflow -- <command>`: the one operator command line. Replay takes any declared
 * service's stream type and rebuild any projection, run here through the top-level entry point as
 * an operator would, against an embedded database of the test's own.
 */

const cli = resolve(import.meta.dirname, '..', 'cli.ts')

function run(args: string[], dataDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { DATABASE_URL: _, KAFKA_BROKERS: __, TRANSPORT: ___, DATA_DIR: ____, LOG_LEVEL: _____, ...env } = process.env
  const child = spawn(process.execPath, [cli, ...args], {
    env: { ...env, TRANSPORT: 'embedded', DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  return new Promise((done) => child.once('close', (code) => done({ code, stdout, stderr })))
}

describe('npm run orderflow', () => {
  let dataDir: string
  const customerId = uniqueName('erased')

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'orderflow-ops-'))
    const db = await openPglite(dataDir)
    await migrateModules(db, allModules())
    await db.transaction((tx) =>
      appendToStream(tx, { id: customerStreamId(customerId), type: 'customer', expectedVersion: 0 }, [
        {
          eventId: uuidv7(),
          eventType: 'CustomerDataErased',
          schemaVersion: 1,
          occurredOn: new Date().toISOString(),
          data: { customerId, requestedBy: 'ops-alice' },
          metadata: {},
        },
      ]),
    )
    await db.close()
  })
  after(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  it('lists its commands, and refuses an unknown one with exit 2', async () => {
    const help = await run(['help'], dataDir)
    assert.equal(help.code, 0)
    for (const command of ['replay', 'rebuild', 'audit', 'dlq', 'keys', 'schemas', 'topics']) {
      assert.match(help.stdout, new RegExp(`^ {2}${command} `, 'm'))
    }
    const unknown = await run(['frobnicate'], dataDir)
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /unknown command 'frobnicate'/)
  })

  it("replays another service's stream type to its topic, with the replay header", async () => {
    const replayed = await run(['replay', '--stream-type', 'customer', '--all'], dataDir)
    assert.equal(replayed.code, 0, replayed.stderr)
    assert.match(replayed.stderr, /completed: 1\/1 events re-published/)
    const db = await openPglite(dataDir)
    try {
      const { rows } = await db.query<{ value: string; headers: Record<string, string> }>(
        'SELECT value, headers FROM log_messages WHERE topic = $1',
        [CUSTOMER_EVENTS_TOPIC],
      )
      assert.equal(rows.length, 1)
      assert.equal(rows[0]?.headers[REPLAY_HEADER], 'true')
      assert.match(String(rows[0]?.value), new RegExp(customerId))
    } finally {
      await db.close()
    }
    const wrong = await run(['replay', '--stream-type', 'spaceship', '--all'], dataDir)
    assert.equal(wrong.code, 2)
    assert.match(wrong.stderr, /no service keeps streams of type 'spaceship'; choose from .*customer/)
  })

  it('rebuilds a projection by name, and names the projections there are for a wrong one', async () => {
    const rebuilt = await run(['rebuild', '--projection', 'order_read_model'], dataDir)
    assert.equal(rebuilt.code, 0, rebuilt.stderr)
    const wrong = await run(['rebuild', '--projection', 'nope'], dataDir)
    assert.equal(wrong.code, 2)
    assert.match(wrong.stderr, /there is no projection 'nope'; choose from .*order_read_model/)
    const missing = await run(['rebuild'], dataDir)
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /--projection <name>/)
  })
})
