import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { openPglite } from './pglite.ts'
import type { SqlDatabase } from './port.ts'

/**
 * On PGlite a statement with parameters is parsed once and run as a named prepared statement after
 * that (sql/pglite.ts). These tests hold it to what `query` did: the same values in and out, the
 * same errors, transactions that still roll back, and a statement that still works after the table
 * under it changed.
 */
describe('PGlite prepared statements', () => {
  let db: SqlDatabase
  before(async () => {
    db = await openPglite()
    await db.exec(`CREATE TABLE kinds (id bigint PRIMARY KEY, doc jsonb, tags text[], at timestamptz, raw bytea,
      ok boolean, amount numeric(12,2), note text)`)
  })
  after(() => db.close())

  const prepared = async (text: string) =>
    (
      await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1', [
        text,
      ])
    ).rows[0]?.n ?? 0

  it('parses a statement once and runs it prepared after that', async () => {
    const text = 'SELECT $1::int + 1 AS next'
    assert.equal((await db.query<{ next: number }>(text, [1])).rows[0]?.next, 2)
    assert.equal((await db.query<{ next: number }>(text, [41])).rows[0]?.next, 42)
    assert.equal(await prepared(text), 1, 'one named statement for the text, not one per call')
    await db.transaction(async (tx) => {
      assert.equal((await tx.query<{ next: number }>(text, [9])).rows[0]?.next, 10)
    })
    assert.equal(await prepared(text), 1, 'a transaction uses the same statement')
  })

  it('sends and returns values as query does: 64-bit integers as strings, JSON, arrays, times, bytes, nulls', async () => {
    const at = new Date('2026-12-07T10:11:12.345Z')
    const insert = await db.query(
      'INSERT INTO kinds (id, doc, tags, at, raw, ok, amount, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      [
        '9007199254740993',
        { nested: { list: [1, 'two'] }, quote: "it's" },
        ['a', 'b,c', 'd"e'],
        at,
        new Uint8Array([0, 1, 255]),
        true,
        '12.50',
        null,
      ],
    )
    assert.equal(insert.rowCount, 1)
    const text = 'SELECT id, doc, tags, at, raw, ok, amount, note FROM kinds WHERE id = $1'
    const { rows } = await db.query<Record<string, unknown>>(text, ['9007199254740993'])
    const literal = await db.query<Record<string, unknown>>(
      'SELECT id, doc, tags, at, raw, ok, amount, note FROM kinds WHERE id = 9007199254740993',
    )
    assert.deepEqual(rows, literal.rows, 'prepared and unprepared reads agree')
    const row = rows[0] ?? {}
    assert.equal(row.id, '9007199254740993')
    assert.deepEqual(row.doc, { nested: { list: [1, 'two'] }, quote: "it's" })
    assert.deepEqual(row.tags, ['a', 'b,c', 'd"e'])
    assert.equal((row.at as Date).toISOString(), at.toISOString())
    assert.deepEqual([...(row.raw as Uint8Array)], [0, 1, 255])
    assert.equal(row.ok, true)
    assert.equal(row.amount, '12.50')
    assert.equal(row.note, null)
    assert.equal(await prepared(text), 1)
  })

  it('counts the rows a write touched', async () => {
    await db.query('INSERT INTO kinds (id, note) SELECT g, $1 FROM generate_series(1, 5) g', ['n'])
    const updated = await db.query('UPDATE kinds SET note = $1 WHERE id <= $2', ['m', 3])
    assert.equal(updated.rowCount, 3)
    const none = await db.query('UPDATE kinds SET note = $1 WHERE id < $2', ['m', 0])
    assert.equal(none.rowCount, 0)
  })

  it('fails with the error code, rolls a transaction back, and leaves the database usable', async () => {
    const insert = 'INSERT INTO kinds (id, note) VALUES ($1, $2)'
    await db.query(insert, [100, 'first'])
    await assert.rejects(db.query(insert, [100, 'again']), (error: { code?: string }) => error.code === '23505')
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query(insert, [101, 'inside'])
        await tx.query(insert, [100, 'duplicate'])
      }),
      (error: { code?: string }) => error.code === '23505',
    )
    const { rows } = await db.query<{ id: string }>('SELECT id FROM kinds WHERE id = ANY($1::bigint[]) ORDER BY id', [
      [100, 101],
    ])
    assert.deepEqual(
      rows.map((r) => r.id),
      ['100'],
      'the transaction rolled back its first insert',
    )
    await db.query(insert, [101, 'later'])
    assert.equal((await db.query('SELECT 1 FROM kinds WHERE id = $1', [101])).rowCount, 1)
  })

  it('prepares a statement again after the table under it changed', async () => {
    await db.exec('CREATE TABLE changing (id int PRIMARY KEY, a text)')
    await db.query('INSERT INTO changing (id, a) VALUES ($1, $2)', [1, 'x'])
    const text = 'SELECT * FROM changing WHERE id = $1'
    assert.deepEqual((await db.query(text, [1])).rows, [{ id: 1, a: 'x' }])
    await db.exec(`ALTER TABLE changing ADD COLUMN b text DEFAULT 'y'`)
    assert.deepEqual((await db.query(text, [1])).rows, [{ id: 1, a: 'x', b: 'y' }])
    await db.exec('ALTER TABLE changing DROP COLUMN a')
    // Inside a transaction the stale statement fails it (its caller runs it again); the statement is prepared anew.
    await assert.rejects(
      db.transaction((tx) => tx.query(text, [1])),
      (error: { code?: string }) => error.code === '0A000',
    )
    assert.deepEqual((await db.query(text, [1])).rows, [{ id: 1, b: 'y' }])
  })
})
