import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase } from '../../../test/support/index.ts'
import { migratePlatform } from '../sql/migrations.ts'
import { KeyFileError, localKeyFile, rotateKeyFile } from './kek.ts'
import { createPersonalData, ERASED, MissingKeyError, type PersonalData } from './personal-data.ts'
import { type Sealed, TamperedError } from './sealed.ts'

const address = { name: 'Grace H', street: '7 Compiler Way', city: 'Arlington', postalCode: '22201', country: 'US' }
const contact = { email: 'grace@example.com' }
const eventId = (n: number) => `0193a0b0-0000-7000-8000-${String(n).padStart(12, '0')}`

for (const kind of ['postgres', 'pglite'] as const) {
  describe(`personal data, per customer keys (${kind})`, () => {
    let database: TestDatabase
    let dir: string
    let keyFile: string
    let personal: PersonalData
    let now = 1_000_000
    before(async () => {
      database = kind === 'postgres' ? await postgresTestDatabase('of_pd') : await pgliteTestDatabase()
      await migratePlatform(database.db)
      dir = mkdtempSync(join(tmpdir(), 'of-kek-'))
      keyFile = join(dir, 'keys', 'personal-data.key')
      personal = createPersonalData({
        db: database.db,
        kek: localKeyFile(keyFile, { create: true }),
        cacheSize: 2,
        cacheTtlMs: 60_000,
        now: () => now,
      })
    })
    after(async () => {
      await database?.cleanup()
      rmSync(dir, { recursive: true, force: true })
    })

    const sealFor = (customer: string, n: number) =>
      database.db.transaction((tx) =>
        personal.sealFields(
          tx,
          customer,
          eventId(n),
          { deliveryAddress: address, contact, notes: 'x' } as Record<string, unknown>,
          ['deliveryAddress', 'contact'],
        ),
      )

    it('creates the key file at first start, readable by its owner only', () => {
      const mode = statSync(keyFile).mode & 0o777
      assert.equal(mode, 0o600)
      assert.match(readFileSync(keyFile, 'utf8'), /"format": "orderflow-kek-1"/)
    })

    it('seals the personal fields only, and stores the customer key wrapped, never in clear', async () => {
      const sealed = await sealFor('c-1', 1)
      assert.equal(sealed.notes, 'x')
      assert.equal((sealed.deliveryAddress as Sealed).sub, 'c-1')
      assert.equal((sealed.deliveryAddress as Sealed).kid, 1)
      assert.deepEqual(await personal.openFields(sealed, ['deliveryAddress', 'contact']), {
        deliveryAddress: address,
        contact,
        notes: 'x',
      })
      const { rows } = await database.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM personal_data_keys WHERE subject = 'c-1' AND wrapped IS NOT NULL",
      )
      assert.equal(rows[0]?.n, 1)
    })

    it('opens with keys read back from the database (cold cache) and refuses a tampered value', async () => {
      const sealed = await sealFor('c-2', 2)
      personal.clearCache()
      assert.deepEqual(await personal.open(sealed.deliveryAddress as Sealed, 'deliveryAddress'), address)
      const moved = { ...(sealed.contact as Sealed), eid: eventId(99) }
      await assert.rejects(personal.open(moved, 'contact'), TamperedError)
    })

    it('rotates a customer key: new fields use the new one, old ones still open', async () => {
      const old = await sealFor('c-3', 3)
      assert.equal(await personal.rotate('c-3'), 2)
      const fresh = await sealFor('c-3', 4)
      assert.equal((fresh.deliveryAddress as Sealed).kid, 2)
      personal.clearCache()
      assert.deepEqual(await personal.open(old.deliveryAddress as Sealed, 'deliveryAddress'), address)
      assert.deepEqual(await personal.open(fresh.deliveryAddress as Sealed, 'deliveryAddress'), address)
    })

    it('erases a customer: every version reads as ERASED at once, a new order gets a new key', async () => {
      const first = await sealFor('c-4', 5)
      await personal.rotate('c-4')
      const second = await sealFor('c-4', 6)
      // Warm the cache: an erasure must not leave opened keys behind.
      await personal.open(second.contact as Sealed, 'contact')
      const erased = await database.db.transaction((tx) => personal.erase(tx, 'c-4'))
      assert.deepEqual(erased, { keysErased: 2, erasedBefore: false })
      assert.equal(await personal.open(first.deliveryAddress as Sealed, 'deliveryAddress'), ERASED)
      assert.equal(await personal.open(second.contact as Sealed, 'contact'), ERASED)
      assert.deepEqual(await personal.openFields(second, ['deliveryAddress', 'contact']), {
        deliveryAddress: ERASED,
        contact: ERASED,
        notes: 'x',
      })
      const { rows } = await database.db.query<{ wrapped: unknown }>(
        "SELECT wrapped FROM personal_data_keys WHERE subject = 'c-4'",
      )
      assert.deepEqual(
        rows.map((r) => r.wrapped),
        [null, null],
        'the wrapped keys are gone, not only marked',
      )
      const again = await database.db.transaction((tx) => personal.erase(tx, 'c-4'))
      assert.deepEqual(again, { keysErased: 0, erasedBefore: true })
      const later = await sealFor('c-4', 7)
      assert.equal((later.deliveryAddress as Sealed).kid, 3, 'a version is never used twice')
      assert.deepEqual(await personal.open(later.deliveryAddress as Sealed, 'deliveryAddress'), address)
    })

    it('says a key is missing, rather than erased, when it never existed', async () => {
      const sealed = await sealFor('c-5', 8)
      await assert.rejects(
        personal.open({ ...(sealed.deliveryAddress as Sealed), kid: 9 }, 'deliveryAddress'),
        MissingKeyError,
      )
    })

    it('keeps at most the bound of opened keys, each for at most its time', async () => {
      const sealed = await Promise.all([sealFor('c-6', 9), sealFor('c-7', 10), sealFor('c-8', 11)])
      personal.clearCache()
      let reads = 0
      const counting = createPersonalData({
        db: {
          ...database.db,
          query: (async (text: string, params?: unknown[]) => {
            if (/FROM personal_data_keys WHERE subject = \$1 AND version = \$2/.test(text)) reads++
            return database.db.query(text, params)
          }) as typeof database.db.query,
        },
        kek: localKeyFile(keyFile, { create: false }),
        cacheSize: 2,
        cacheTtlMs: 1_000,
        now: () => now,
      })
      // One after the other: the cache keeps the two most recently opened, so the order must be known.
      for (const each of sealed) await counting.open(each.deliveryAddress as Sealed, 'deliveryAddress')
      assert.equal(reads, 3)
      await counting.open(sealed[2]?.deliveryAddress as Sealed, 'deliveryAddress')
      assert.equal(reads, 3, 'the most recent key is cached')
      await counting.open(sealed[0]?.deliveryAddress as Sealed, 'deliveryAddress')
      assert.equal(reads, 4, 'the oldest was evicted: two keys at most')
      now += 1_001
      await counting.open(sealed[0]?.deliveryAddress as Sealed, 'deliveryAddress')
      assert.equal(reads, 5, 'an expired key is read again')
    })

    it('rotates the key-encryption key and rewraps every data key, without touching a sealed field', async () => {
      const sealed = await sealFor('c-9', 12)
      const { previous, current } = rotateKeyFile(keyFile)
      assert.notEqual(previous, current)
      const rotated = createPersonalData({ db: database.db, kek: localKeyFile(keyFile, { create: false }) })
      const progress: number[] = []
      const { rewrapped } = await rotated.rewrap((done) => progress.push(done))
      assert.ok(rewrapped >= 1)
      assert.equal(progress.at(-1), rewrapped)
      const { rows } = await database.db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM personal_data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1',
        [current],
      )
      assert.equal(rows[0]?.n, 0)
      assert.deepEqual(await rotated.open(sealed.deliveryAddress as Sealed, 'deliveryAddress'), address)
      // A process started before the rotation reads the file again for the KEK it does not know.
      personal.clearCache()
      assert.deepEqual(await personal.open(sealed.deliveryAddress as Sealed, 'deliveryAddress'), address)
    })
  })
}

describe('the key file', () => {
  it('is refused, with what to do, when missing and not to be created, or not a key file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'of-kek-'))
    try {
      assert.throws(() => localKeyFile(join(dir, 'none.key'), { create: false }), KeyFileError)
      assert.throws(() => localKeyFile(join(dir, 'none.key'), { create: false }), /PERSONAL_DATA_KEY_FILE/)
      const bad = join(dir, 'bad.key')
      localKeyFile(bad, { create: true })
      rmSync(bad)
      writeFileSync(bad, '{"format":"something else"}')
      assert.throws(() => localKeyFile(bad, { create: true }), /is not an orderflow key file/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
