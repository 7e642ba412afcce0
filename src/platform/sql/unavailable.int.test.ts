import assert from 'node:assert/strict'
import fs, { mkdtempSync, rmSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  follow,
  joined,
  kafkaBrokers,
  postgresTestDatabase,
  type TestDatabase,
  testDatabaseUrl,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { createKafkaTransport } from '../transport/kafka.ts'
import type { Transport } from '../transport/port.ts'
import { deadLetterTopic, startReliableConsumer } from '../transport/reliable-consumer.ts'
import { openPglite } from './pglite.ts'
import type { SqlDatabase } from './port.ts'
import { openPostgres, quoteIdentifier } from './postgres.ts'
import { classifyDatabaseError } from './unavailable.ts'

/**
 * Resource errors as the real databases raise them. PostgreSQL out of connections (53300, from a
 * role whose connection limit is 0) must hold a consumer's partition, not dead-letter its message;
 * PGlite out of disk must come back as an outage the same way.
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

describe('a consumer while PostgreSQL refuses connections (53300)', () => {
  let database: TestDatabase
  let admin: SqlDatabase
  let transport: Transport
  let rolePool: SqlDatabase | undefined
  const role = uniqueName('of_role')

  before(async () => {
    database = await postgresTestDatabase('of_53300')
    admin = openPostgres({ connectionString: testDatabaseUrl, max: 1 })
    // A role of the test's own: its connection limit is the fault, and nobody else is affected.
    await admin.exec(`CREATE ROLE ${quoteIdentifier(role)} LOGIN CONNECTION LIMIT 0`)
    await database.db.exec(`CREATE TABLE jobs (id integer PRIMARY KEY)`)
    const schema = (await database.db.query<{ s: string }>('SELECT current_schema() AS s')).rows[0]?.s ?? ''
    await admin.exec(
      `GRANT USAGE ON SCHEMA ${quoteIdentifier(schema)} TO ${quoteIdentifier(role)};
       GRANT SELECT, INSERT ON ${quoteIdentifier(schema)}.jobs TO ${quoteIdentifier(role)}`,
    )
    const url = new URL(testDatabaseUrl)
    url.username = role
    rolePool = openPostgres({ connectionString: url.toString(), schema, max: 2 })
    transport = await createKafkaTransport({
      brokers: kafkaBrokers(),
      clientId: uniqueName('sqlerr'),
      partitions: 1,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 3,
      retryBackoffMs: 100,
    })
  })
  after(async () => {
    await transport?.close()
    await rolePool?.close()
    await database?.cleanup()
    await admin.exec(`DROP OWNED BY ${quoteIdentifier(role)}; DROP ROLE IF EXISTS ${quoteIdentifier(role)}`)
    await admin.close()
  })

  it('holds the partition past the retry limit and handles the message once connections are allowed again', async () => {
    const topic = uniqueName('jobs')
    const failures: unknown[] = []
    const db = rolePool as SqlDatabase
    const subscription = await startReliableConsumer<{ id: number }>({
      transport,
      groupId: uniqueName('workers'),
      topics: [topic],
      decode: (message) => ({ ok: true, value: JSON.parse(message.value) as { id: number } }),
      retry: { max: 1, backoffMs: 5 },
      maxWaitMs: 50,
      logger,
      handle: async (job) => {
        try {
          await db.transaction((tx) => tx.query('INSERT INTO jobs (id) VALUES ($1) ON CONFLICT DO NOTHING', [job.id]))
        } catch (error) {
          failures.push(error)
          throw error
        }
      },
    })
    const { seen: dlq, sub: dlqReader } = await follow(transport, deadLetterTopic(topic))
    await joined(subscription)
    await transport.publish([{ topic, key: 'k', value: JSON.stringify({ id: 7 }) }])

    // Far more attempts than the retry limit (1) allows a failing message.
    await waitFor(() => failures.length >= 5, { message: () => `${failures.length} failed attempts` })
    assert.equal((failures[0] as { code?: string }).code, '53300', String(failures[0]))
    assert.equal(classifyDatabaseError(failures[0])?.reason, 'too-many-connections')
    assert.equal(subscription.health().state, 'waiting-for-dependency')

    await admin.exec(`ALTER ROLE ${quoteIdentifier(role)} CONNECTION LIMIT -1`)
    await waitFor(async () => (await database.db.query('SELECT 1 FROM jobs WHERE id = 7')).rows.length === 1, {
      message: 'job 7 is stored once connections are allowed again',
    })
    await waitFor(() => subscription.health().state === 'running', { message: 'the consumer runs again' })
    assert.equal(dlq.length, 0, 'nothing was dead-lettered for the exhausted connections')
    await subscription.close()
    await dlqReader.close()
  })
})

describe('PGlite on a full disk', () => {
  let dataDir: string
  let db: SqlDatabase
  const writeSync = fs.writeSync
  let full = false

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'orderflow-enospc-'))
    db = await openPglite(dataDir)
    await db.exec('CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)')
    // The fault is injected under PGlite, where a full disk shows: Node's write fails with ENOSPC
    // (standard output and error are left alone).
    ;(fs as { writeSync: unknown }).writeSync = (...args: Parameters<typeof fs.writeSync>) => {
      if (full && typeof args[0] === 'number' && args[0] > 2) {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
          code: 'ENOSPC',
          errno: -28,
          syscall: 'write',
        })
      }
      return (writeSync as (...a: unknown[]) => number)(...args)
    }
    syncBuiltinESMExports()
  })
  after(async () => {
    ;(fs as { writeSync: unknown }).writeSync = writeSync
    syncBuiltinESMExports()
    await db.close()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('answers a write that needs new space with 53100, classified as disk full, and serves again once there is room', async () => {
    full = true
    const error = await db.query('INSERT INTO notes (body) VALUES ($1)', ['first']).then(
      () => undefined,
      (e: unknown) => e,
    )
    full = false

    assert.equal((error as { code?: string })?.code, '53100', String(error))
    assert.match(String((error as Error).message), /No space left on device/)
    assert.equal(classifyDatabaseError(error)?.reason, 'disk-full')
    await db.query('INSERT INTO notes (body) VALUES ($1)', ['second'])
    assert.deepEqual((await db.query<{ body: string }>('SELECT body FROM notes')).rows, [{ body: 'second' }])
  })
})
