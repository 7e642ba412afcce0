import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { z } from 'zod'

/**
 * The key-encryption key (KEK) port: data keys are stored only wrapped by it, so the database, its
 * backups and anything copied from it hold no key that opens personal data on its own. A KEK has an
 * id, written beside every key it wrapped, so that the KEK can rotate: a new one wraps new keys and
 * `rewrap` moves the old ones over, and no event is rewritten.
 *
 * Adapters: `localKeyFile` (the embedded default: a file created at first start) here; a KMS (AWS
 * KMS, Vault transit, an HSM) is one more adapter with the same three calls.
 */
export interface KeyEncryptionKey {
  /** The id of the KEK that wraps new keys. */
  readonly currentId: string
  wrap(dataKey: Buffer): Promise<{ kekId: string; wrapped: Buffer }>
  /** Unwraps a key wrapped by KEK `kekId` (the current one or an older one this KEK still holds). */
  unwrap(wrapped: Buffer, kekId: string): Promise<Buffer>
}

const keyFileSchema = z.object({
  format: z.literal('orderflow-kek-1'),
  current: z.string().min(1),
  keys: z
    .array(
      z.object({
        id: z.string().min(1),
        key: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'key must be 32 bytes in base64url'),
        createdAt: z.string(),
      }),
    )
    .min(1),
})

type KeyFile = z.infer<typeof keyFileSchema>

/** A key file that cannot be used: start-up stops with what to fix. */
export class KeyFileError extends Error {
  constructor(path: string, problem: string) {
    super(
      `the personal-data key file ${path} ${problem}. It holds the key-encryption key that every customer's data key is wrapped with: restore it from where you keep its copy, or point PERSONAL_DATA_KEY_FILE at it. Without it no personal field can be read`,
    )
    this.name = 'KeyFileError'
  }
}

const AAD = (kekId: string) => Buffer.from(`orderflow-kek:${kekId}`, 'utf8')

function aesWrap(kek: Buffer, kekId: string, dataKey: Buffer): Buffer {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', kek, iv)
  cipher.setAAD(AAD(kekId))
  const ct = Buffer.concat([cipher.update(dataKey), cipher.final()])
  return Buffer.concat([iv, cipher.getAuthTag(), ct])
}

function aesUnwrap(kek: Buffer, kekId: string, wrapped: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(0, 12))
  decipher.setAAD(AAD(kekId))
  decipher.setAuthTag(wrapped.subarray(12, 28))
  try {
    return Buffer.concat([decipher.update(wrapped.subarray(28)), decipher.final()])
  } catch {
    throw new Error(`a data key does not unwrap with KEK ${kekId}: the key file is not the one it was wrapped with`)
  }
}

function newKeyEntry(now: Date) {
  return {
    id: `kek-${now.toISOString().replaceAll(/[-:.]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`,
    key: randomBytes(32).toString('base64url'),
    createdAt: now.toISOString(),
  }
}

function writeKeyFile(path: string, file: KeyFile): void {
  mkdirSync(dirname(path), { recursive: true })
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 })
  renameSync(temporary, path)
}

function readKeyFile(path: string): KeyFile | null {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new KeyFileError(path, `cannot be read (${(error as Error).message})`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new KeyFileError(path, 'is not JSON')
  }
  const parsed = keyFileSchema.safeParse(json)
  if (!parsed.success) throw new KeyFileError(path, `is not an orderflow key file (${parsed.error.issues[0]?.message})`)
  if (!parsed.data.keys.some((k) => k.id === parsed.data.current)) {
    throw new KeyFileError(path, `names a current key ${parsed.data.current} it does not hold`)
  }
  return parsed.data
}

/**
 * The KEK in a local file (mode 0600), created with a random key at first start when `create` is
 * set (the embedded default), and refused when missing otherwise: a production process must not
 * make itself a new KEK that cannot open what the others wrote.
 */
export function localKeyFile(path: string, options: { create: boolean; clock?: () => Date }): KeyEncryptionKey {
  const clock = options.clock ?? (() => new Date())
  let file = readKeyFile(path)
  if (!file) {
    if (!options.create) throw new KeyFileError(path, 'does not exist')
    const entry = newKeyEntry(clock())
    file = { format: 'orderflow-kek-1', current: entry.id, keys: [entry] }
    try {
      // `wx`: two processes starting together on one new file: the second reads the first's.
      mkdirSync(dirname(path), { recursive: true })
      writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      file = readKeyFile(path) as KeyFile
    }
  }
  let held = file
  const keyOf = (kekId: string): Buffer => {
    let entry = held.keys.find((k) => k.id === kekId)
    if (!entry) {
      // Another process rotated the KEK (`npm run orderflow -- keys rotate-kek`) and rewrapped keys
      // with the new one: read the file again rather than fail until this process restarts.
      held = readKeyFile(path) ?? held
      entry = held.keys.find((k) => k.id === kekId)
    }
    if (!entry) throw new KeyFileError(path, `does not hold KEK ${kekId}, which wrapped stored keys`)
    return Buffer.from(entry.key, 'base64url')
  }
  return {
    get currentId() {
      return held.current
    },
    async wrap(dataKey) {
      const kekId = held.current
      return { kekId, wrapped: aesWrap(keyOf(kekId), kekId, dataKey) }
    },
    async unwrap(wrapped, kekId) {
      return aesUnwrap(keyOf(kekId), kekId, wrapped)
    },
  }
}

/**
 * Adds a new KEK to the key file and makes it the current one; the older ones stay, to unwrap the
 * keys still wrapped by them until they are rewrapped (`rewrapKeys`). Returns the new id.
 */
export function rotateKeyFile(
  path: string,
  clock: () => Date = () => new Date(),
): { previous: string; current: string } {
  const file = readKeyFile(path)
  if (!file) throw new KeyFileError(path, 'does not exist')
  const entry = newKeyEntry(clock())
  writeKeyFile(path, { ...file, current: entry.id, keys: [...file.keys, entry] })
  return { previous: file.current, current: entry.id }
}
