import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { isSealed, type Sealed, sealedSchema } from '../../contracts/personal.ts'
import { AppError } from '../errors.ts'

/**
 * A personal field as it is stored and published: the value, as JSON, encrypted with its data
 * subject's (the customer's) data key under AES-256-GCM, in a versioned envelope that says
 * everything needed to open it again except the key:
 *
 * ```json
 * { "$enc": 1, "sub": "customer-7", "kid": 1, "eid": "0193…", "iv": "…", "ct": "…", "tag": "…" }
 * ```
 *
 * - `$enc`: the envelope's version (1: AES-256-GCM, 96-bit random IV, 128-bit tag, base64url);
 * - `sub`: the data subject, whose key it is; `kid`: which of the subject's keys (they rotate);
 * - `eid`: the event the value was written with.
 *
 * The associated data is the subject, the event id and the field's path: a ciphertext moved to
 * another customer, event or field, or changed in any byte, is refused (`TamperedError`), never
 * opened to garbage. A copy of the value (an order's state, a command that carries it on) keeps the
 * envelope as it is, so it opens wherever it travels, and nowhere once the key is gone.
 */

export const SEALED_VERSION = 1

export { isSealed, type Sealed, sealedSchema }

/** Where a sealed value belongs: its subject, the subject's key version, its event and its field. */
export interface SealedAt {
  subject: string
  keyVersion: number
  eventId: string
  path: string
}

/**
 * A sealed value that does not open with its key: changed, or moved to another subject, event or
 * field. Never retried (it will not authenticate the next time either): a consumer dead-letters it.
 */
export class TamperedError extends AppError {
  constructor(at: { sub: string; eid: string }, path: string) {
    super(
      'PERSONAL_DATA_UNREADABLE',
      `the personal field ${path} of event ${at.eid} (subject ${at.sub}) does not authenticate: it was changed or moved, and is refused`,
      { retryable: false, details: { field: path, eventId: at.eid } },
    )
    this.name = 'TamperedError'
  }
}

const associatedData = (subject: string, eventId: string, path: string) =>
  Buffer.from(JSON.stringify(['orderflow-personal-data', SEALED_VERSION, subject, eventId, path]), 'utf8')

/** Encrypts `value` (any JSON value) with `key` (32 bytes) for the subject, event and field of `at`. */
export function seal(key: Buffer, at: SealedAt, value: unknown): Sealed {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(associatedData(at.subject, at.eventId, at.path))
  const ct = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()])
  return {
    $enc: SEALED_VERSION,
    sub: at.subject,
    kid: at.keyVersion,
    eid: at.eventId,
    iv: iv.toString('base64url'),
    ct: ct.toString('base64url'),
    tag: cipher.getAuthTag().toString('base64url'),
  }
}

/** The value `sealed` holds at `path`, or `TamperedError` when it does not authenticate with `key`. */
export function open(key: Buffer, sealed: Sealed, path: string): unknown {
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64url'))
  decipher.setAAD(associatedData(sealed.sub, sealed.eid, path))
  decipher.setAuthTag(Buffer.from(sealed.tag, 'base64url'))
  let plain: Buffer
  try {
    plain = Buffer.concat([decipher.update(Buffer.from(sealed.ct, 'base64url')), decipher.final()])
  } catch {
    throw new TamperedError(sealed, path)
  }
  return JSON.parse(plain.toString('utf8'))
}
