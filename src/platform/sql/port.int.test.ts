import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase } from '../../../test/support/index.ts'

/** Both adapters of the SQL port answer alike: what a caller reads off a result must not depend on the database. */
function portSuite(name: string, open: () => Promise<TestDatabase>) {
  describe(`SQL port on ${name}`, () => {
    let database: TestDatabase
    before(async () => {
      database = await open()
      await database.db.exec('CREATE TABLE counted (id int PRIMARY KEY, note text)')
    })
    after(() => database.cleanup())

    it('rowCount is the rows a SELECT returned and the rows a write touched', async () => {
      const { db } = database
      assert.equal((await db.query('INSERT INTO counted SELECT g, $1 FROM generate_series(1, 4) g', ['a'])).rowCount, 4)
      assert.equal((await db.query('SELECT 1 FROM counted WHERE id > $1', [1])).rowCount, 3)
      assert.equal((await db.query('SELECT 1 FROM counted')).rowCount, 4, 'without parameters too')
      assert.equal((await db.query('SELECT 1 FROM counted WHERE id > $1', [9])).rowCount, 0)
      assert.equal((await db.query('UPDATE counted SET note = $1 WHERE id <= $2', ['b', 2])).rowCount, 2)
      const returned = await db.query('DELETE FROM counted WHERE id = $1 RETURNING id', [4])
      assert.equal(returned.rowCount, 1)
      assert.equal(returned.rows.length, 1)
      await db.transaction(async (tx) => {
        assert.equal((await tx.query('SELECT 1 FROM counted WHERE note = $1', ['b'])).rowCount, 2)
      })
    })
  })
}

portSuite('PGlite', pgliteTestDatabase)
portSuite('PostgreSQL', () => postgresTestDatabase('of_sql_port'))
