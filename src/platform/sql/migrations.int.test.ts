import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase } from '../../../test/support/index.ts'
import { MigrationError, runMigrations, versionTable } from './migrations.ts'

/**
 * Versioned migrations on both databases: a later migration changes a database that already has
 * data, each migration runs once even when two processes start together, and an edited migration
 * that was applied already stops start-up instead of drifting.
 */
function migrationSuite(name: string, open: () => Promise<TestDatabase>) {
  describe(`migrations on ${name}`, () => {
    let database: TestDatabase
    let dir: string

    before(async () => {
      database = await open()
      dir = await mkdtemp(join(tmpdir(), 'orderflow-migrations-'))
    })
    after(async () => {
      await database?.cleanup()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it('adds a column to an existing database with data, once, keeping the rows', async () => {
      await writeFile(join(dir, '001.do.baseline.sql'), 'CREATE TABLE gadgets (id text PRIMARY KEY);')
      const first = await runMigrations(database.db, [{ module: 'toy', directory: dir }])
      assert.deepEqual(
        first.map((m) => [m.module, m.version, m.name]),
        [['toy', 1, 'baseline']],
      )
      await database.db.query("INSERT INTO gadgets (id) VALUES ('g-1')")

      // The next release ships a second migration.
      await writeFile(
        join(dir, '002.do.add-colour.sql'),
        "ALTER TABLE gadgets ADD COLUMN colour text NOT NULL DEFAULT 'grey';",
      )
      const second = await runMigrations(database.db, [{ module: 'toy', directory: dir }])
      assert.deepEqual(
        second.map((m) => m.version),
        [2],
      )
      const { rows } = await database.db.query<{ id: string; colour: string }>('SELECT id, colour FROM gadgets')
      assert.deepEqual(rows, [{ id: 'g-1', colour: 'grey' }])

      // Up to date: nothing runs again.
      assert.deepEqual(await runMigrations(database.db, [{ module: 'toy', directory: dir }]), [])
      const versions = await database.db.query<{ version: string }>(
        `SELECT version::text FROM ${versionTable('toy')} WHERE version > 0 ORDER BY version`,
      )
      assert.deepEqual(
        versions.rows.map((r) => r.version),
        ['1', '2'],
      )
    })

    it('refuses a migration that was edited after it was applied, and rolls a failing one back whole', async () => {
      await writeFile(join(dir, '001.do.baseline.sql'), 'CREATE TABLE gadgets (id text PRIMARY KEY, edited int);')
      await assert.rejects(runMigrations(database.db, [{ module: 'toy', directory: dir }]), (error) => {
        assert.ok(error instanceof MigrationError)
        assert.match(error.message, /toy/)
        assert.match(error.message, /md5|checksum/i)
        return true
      })
      await writeFile(join(dir, '001.do.baseline.sql'), 'CREATE TABLE gadgets (id text PRIMARY KEY);')
      await writeFile(
        join(dir, '003.do.broken.sql'),
        'CREATE TABLE half_done (id int); ALTER TABLE no_such_table ADD COLUMN x int;',
      )
      await assert.rejects(runMigrations(database.db, [{ module: 'toy', directory: dir }]), MigrationError)
      const { rows } = await database.db.query<{ exists: string | null }>(
        "SELECT to_regclass('half_done')::text AS exists",
      )
      assert.equal(rows[0]?.exists, null, 'the failed migration left nothing behind')
      await rm(join(dir, '003.do.broken.sql'))
    })
  })
}

migrationSuite('PGlite', pgliteTestDatabase)
migrationSuite('PostgreSQL', () => postgresTestDatabase('of_migrations'))

describe('migrations started by two processes at once on PostgreSQL', () => {
  let database: TestDatabase
  let dir: string
  before(async () => {
    database = await postgresTestDatabase('of_migrations_race')
    dir = await mkdtemp(join(tmpdir(), 'orderflow-migrations-'))
  })
  after(async () => {
    await database?.cleanup()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('applies each migration exactly once', async () => {
    await writeFile(join(dir, '001.do.baseline.sql'), 'CREATE TABLE counters (n int); INSERT INTO counters VALUES (1);')
    const other = database.reopen()
    const [a, b] = await Promise.all([
      runMigrations(database.db, [{ module: 'race', directory: dir }]),
      runMigrations(other, [{ module: 'race', directory: dir }]),
    ])
    assert.equal(a.length + b.length, 1, 'one of the two applied it, the other found it applied')
    const { rows } = await database.db.query<{ n: string }>('SELECT count(*)::text AS n FROM counters')
    assert.equal(rows[0]?.n, '1')
  })
})
