import { randomBytes } from 'node:crypto'
import { ERASED, type Erased } from '../../contracts/personal.ts'
import { AppError } from '../errors.ts'
import type { SqlExecutor } from '../sql/port.ts'
import type { KeyEncryptionKey } from './kek.ts'
import { isSealed, open, type Sealed, seal } from './sealed.ts'

/**
 * Personal data, encrypted per data subject (the customer), erased by deleting the subject's keys
 * (crypto-shredding). Each subject has data keys (AES-256, random), stored wrapped by the
 * key-encryption key in `personal_data_keys`; the newest seals new fields, older ones open what
 * they sealed. Erasing a subject deletes the wrapped keys: every copy of every field sealed for it
 * (event store, state, read models, outbox, topics, dead letters, backups) is ciphertext nothing
 * can open any more, and reads give `ERASED`.
 *
 * Opened keys are cached (at most `cacheSize`, each for at most `cacheTtlMs`); an erasure removes
 * the subject's keys from this process's cache at once, and another process's copy lives at most
 * `cacheTtlMs`. Sealing always reads the subject's current key in the command's transaction, so a
 * field is never sealed with a key erased meanwhile.
 */

export { ERASED, type Erased }

export interface PersonalDataOptions {
  db: SqlExecutor
  kek: KeyEncryptionKey
  /** Opened keys kept in memory (default 10 000). */
  cacheSize?: number
  /** How long an opened key is kept (default 60 s): the longest another process reads after an erasure. */
  cacheTtlMs?: number
  now?: () => number
}

export interface PersonalData {
  /**
   * A copy of `data` with each of `fields` that holds a value sealed for `subject` and event
   * `eventId`, in the caller's transaction (the subject's first key is created in it). Fields absent
   * or null stay so; a field already sealed (a copy carried on) stays as it is.
   */
  sealFields<T extends Record<string, unknown>>(
    tx: SqlExecutor,
    subject: string,
    eventId: string,
    data: T,
    fields: readonly string[],
  ): Promise<T>
  /** The value a sealed field holds (`ERASED` once its subject was erased); `TamperedError` if changed. */
  open(sealed: Sealed, path: string, tx?: SqlExecutor): Promise<unknown>
  /** A copy of `data` with each of `fields` that is sealed opened (or `ERASED`). */
  openFields<T extends Record<string, unknown>>(data: T, fields: readonly string[], tx?: SqlExecutor): Promise<T>
  /** Deletes every key of `subject` (in the caller's transaction): what it held can never be opened. */
  erase(tx: SqlExecutor, subject: string): Promise<{ keysErased: number; erasedBefore: boolean }>
  /** A new key for `subject` that seals from now on; the older ones still open. Returns its version. */
  rotate(subject: string): Promise<number>
  /** Rewraps every key wrapped by another KEK than the current one (after a KEK rotation). */
  rewrap(onProgress?: (done: number, total: number) => void): Promise<{ rewrapped: number }>
  /** Drops every cached key (tests, and an operator after a manual change). */
  clearCache(): void
}

/** A key that does not exist and was never erased: the database lost it, or the data came from elsewhere. */
export class MissingKeyError extends AppError {
  constructor(subject: string, version: number) {
    super(
      'PERSONAL_DATA_UNREADABLE',
      `no data key ${version} of subject ${subject}, and it was never erased: the personal-data keys are incomplete`,
      { retryable: false, details: { subject, keyVersion: version } },
    )
    this.name = 'MissingKeyError'
  }
}

interface KeyRow {
  version: number
  kek_id: string | null
  wrapped: Uint8Array | null
}

export function createPersonalData(options: PersonalDataOptions): PersonalData {
  const { db, kek } = options
  const cacheSize = options.cacheSize ?? 10_000
  const cacheTtlMs = options.cacheTtlMs ?? 60_000
  const now = options.now ?? Date.now
  /** Map order is use order: the first entry is the least recently used. */
  const cache = new Map<string, { key: Buffer; until: number }>()
  const cacheId = (subject: string, version: number) => `${version}\u0000${subject}`

  const cached = (subject: string, version: number): Buffer | undefined => {
    const id = cacheId(subject, version)
    const entry = cache.get(id)
    if (!entry) return undefined
    cache.delete(id)
    if (entry.until <= now()) return undefined
    cache.set(id, entry)
    return entry.key
  }
  const remember = (subject: string, version: number, key: Buffer) => {
    cache.set(cacheId(subject, version), { key, until: now() + cacheTtlMs })
    while (cache.size > cacheSize) cache.delete(cache.keys().next().value as string)
  }
  const forget = (subject: string) => {
    for (const id of [...cache.keys()]) if (id.slice(id.indexOf('\u0000') + 1) === subject) cache.delete(id)
  }
  const unwrap = async (row: KeyRow) => kek.unwrap(Buffer.from(row.wrapped as Uint8Array), row.kek_id as string)

  /** The subject's newest live key, created (version above every earlier one, erased ones too) if none. */
  const currentKey = async (tx: SqlExecutor, subject: string): Promise<{ version: number; key: Buffer }> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { rows } = await tx.query<KeyRow & { top: number | null }>(
        `SELECT k.version, k.kek_id, k.wrapped, (SELECT max(version) FROM personal_data_keys WHERE subject = $1) AS top
           FROM (SELECT 1) AS one
           LEFT JOIN LATERAL (SELECT version, kek_id, wrapped FROM personal_data_keys
                               WHERE subject = $1 AND wrapped IS NOT NULL ORDER BY version DESC LIMIT 1) AS k ON true`,
        [subject],
      )
      const row = rows[0]
      if (row?.wrapped) {
        const key = cached(subject, row.version) ?? (await unwrap(row))
        remember(subject, row.version, key)
        return { version: row.version, key }
      }
      const key = randomBytes(32)
      const version = (row?.top ?? 0) + 1
      const { kekId, wrapped } = await kek.wrap(key)
      // A concurrent first seal of the subject inserts the same version: the loser reads the winner's.
      const inserted = await tx.query(
        `INSERT INTO personal_data_keys (subject, version, kek_id, wrapped) VALUES ($1, $2, $3, $4)
         ON CONFLICT (subject, version) DO NOTHING`,
        [subject, version, kekId, wrapped],
      )
      if (inserted.rowCount === 1) {
        remember(subject, version, key)
        return { version, key }
      }
    }
    throw new Error(`could not create a data key for subject ${subject}: keys kept being created concurrently`)
  }

  const keyFor = async (subject: string, version: number, tx: SqlExecutor | undefined): Promise<Buffer | null> => {
    const hit = cached(subject, version)
    if (hit) return hit
    const { rows } = await (tx ?? db).query<KeyRow>(
      'SELECT version, kek_id, wrapped FROM personal_data_keys WHERE subject = $1 AND version = $2',
      [subject, version],
    )
    const row = rows[0]
    if (!row) throw new MissingKeyError(subject, version)
    if (!row.wrapped) return null
    const key = await unwrap(row)
    remember(subject, version, key)
    return key
  }

  const openOne = async (sealed: Sealed, path: string, tx?: SqlExecutor) => {
    const key = await keyFor(sealed.sub, sealed.kid, tx)
    return key ? open(key, sealed, path) : ERASED
  }

  return {
    async sealFields(tx, subject, eventId, data, fields) {
      const present = fields.filter((f) => data[f] !== undefined && data[f] !== null && !isSealed(data[f]))
      if (present.length === 0) return data
      const { version, key } = await currentKey(tx, subject)
      const sealed: Record<string, unknown> = { ...data }
      for (const field of present) {
        sealed[field] = seal(key, { subject, keyVersion: version, eventId, path: field }, data[field])
      }
      return sealed as typeof data
    },
    open: openOne,
    async openFields(data, fields, tx) {
      const sealedFields = fields.filter((f) => isSealed(data[f]))
      if (sealedFields.length === 0) return data
      const opened: Record<string, unknown> = { ...data }
      for (const field of sealedFields) opened[field] = await openOne(data[field] as Sealed, field, tx)
      return opened as typeof data
    },
    async erase(tx, subject) {
      const { rows } = await tx.query<{ erased: number; before: number }>(
        `WITH erased AS (
           UPDATE personal_data_keys SET wrapped = NULL, kek_id = NULL, erased_at = now()
            WHERE subject = $1 AND wrapped IS NOT NULL RETURNING version)
         SELECT (SELECT count(*) FROM erased)::int AS erased,
                (SELECT count(*) FROM personal_data_keys WHERE subject = $1 AND wrapped IS NULL)::int AS before`,
        [subject],
      )
      forget(subject)
      const row = rows[0] ?? { erased: 0, before: 0 }
      return { keysErased: row.erased, erasedBefore: row.before > 0 }
    },
    async rotate(subject) {
      const { rows } = await db.query<{ top: number | null }>(
        'SELECT max(version) AS top FROM personal_data_keys WHERE subject = $1',
        [subject],
      )
      const version = (rows[0]?.top ?? 0) + 1
      const key = randomBytes(32)
      const { kekId, wrapped } = await kek.wrap(key)
      await db.query('INSERT INTO personal_data_keys (subject, version, kek_id, wrapped) VALUES ($1, $2, $3, $4)', [
        subject,
        version,
        kekId,
        wrapped,
      ])
      remember(subject, version, key)
      return version
    },
    async rewrap(onProgress) {
      const { rows: counted } = await db.query<{ total: number }>(
        'SELECT count(*)::int AS total FROM personal_data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1',
        [kek.currentId],
      )
      const total = counted[0]?.total ?? 0
      let done = 0
      for (;;) {
        const { rows } = await db.query<KeyRow & { subject: string }>(
          `SELECT subject, version, kek_id, wrapped FROM personal_data_keys
            WHERE wrapped IS NOT NULL AND kek_id <> $1 ORDER BY subject, version LIMIT 500`,
          [kek.currentId],
        )
        if (rows.length === 0) break
        for (const row of rows) {
          const { kekId, wrapped } = await kek.wrap(await unwrap(row))
          // Guarded by the old KEK id and a live key: a key erased meanwhile stays erased.
          await db.query(
            `UPDATE personal_data_keys SET kek_id = $3, wrapped = $4
              WHERE subject = $1 AND version = $2 AND kek_id = $5 AND wrapped IS NOT NULL`,
            [row.subject, row.version, kekId, wrapped, row.kek_id],
          )
          done++
        }
        onProgress?.(done, total)
      }
      return { rewrapped: done }
    },
    clearCache() {
      cache.clear()
    },
  }
}

/** What an operator's view shows for a sealed field: never its value, only whether it can still be read. */
export const SEALED_PLACEHOLDER = '[sealed]'

/**
 * A copy of `value` (any JSON) with every sealed field replaced by a placeholder: `ERASED` when its
 * customer's key was erased, `[sealed]` otherwise. For operator views (the dashboard's journey) that
 * show events as stored: ciphertext means nothing to an operator, and the personal value is not
 * theirs to see.
 */
export async function maskSealed(value: unknown, personal: Pick<PersonalData, 'open'>): Promise<unknown> {
  if (Array.isArray(value)) return Promise.all(value.map((each) => maskSealed(each, personal)))
  if (value === null || typeof value !== 'object') return value
  const masked: Record<string, unknown> = {}
  for (const [key, each] of Object.entries(value)) {
    if (isSealed(each)) {
      const opened = await personal.open(each, key).catch(() => SEALED_PLACEHOLDER)
      masked[key] = opened === ERASED ? ERASED : SEALED_PLACEHOLDER
    } else {
      masked[key] = await maskSealed(each, personal)
    }
  }
  return masked
}
