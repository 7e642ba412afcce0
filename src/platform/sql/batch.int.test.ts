import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase, uniqueName } from '../../../test/support/index.ts'
import { batchScope } from './batch.ts'

/**
 * The group commit once its transaction committed: what runs after the commit (`afterCommit`) can
 * no longer undo or repeat the group's works. A callback that throws was run again, with the whole
 * group, each work alone, after the group had committed: every work after it was applied twice.
 */
function suite(name: string, open: () => Promise<TestDatabase>) {
  describe(`a group commit's after-commit callbacks on ${name}`, () => {
    let database: TestDatabase
    const table = uniqueName('grouped')
    before(async () => {
      database = await open()
      await database.db.exec(`CREATE TABLE ${table} (n integer NOT NULL)`)
    })
    after(async () => database.cleanup())

    it('a callback that throws answers its own work with the error and runs nothing again', async () => {
      const scope = batchScope(database.db, { group: { maxInFlight: 1, maxSize: 64 } })
      const ran: number[] = []
      const work = (n: number) =>
        scope.db.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${table} (n) VALUES ($1)`, [n])
          scope.afterCommit(() => {
            ran.push(n)
            if (n === 3) throw new Error('the callback of 3 failed')
          })
          return n
        })
      // 1 starts alone at once; 2, 3 and 4 arrive while it runs and share the next transaction.
      const answers = await Promise.allSettled([1, 2, 3, 4].map(work))
      assert.deepEqual(
        answers.map((a) => (a.status === 'fulfilled' ? a.value : (a.reason as Error).message)),
        [1, 2, 'the callback of 3 failed', 4],
      )
      const { rows } = await database.db.query<{ n: number }>(`SELECT n FROM ${table} ORDER BY n`)
      assert.deepEqual(
        rows.map((r) => r.n),
        [1, 2, 3, 4],
      )
      assert.deepEqual(ran, [1, 2, 3, 4])
      assert.equal(scope.groups.fallbacks, 0)
    })
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_group_callbacks'))
