/**
 * Which database errors are an outage rather than a bad statement or a bad message.
 *
 * A database that cannot be reached, that is shutting down, out of connections, disk or memory, or
 * that chose this transaction as a deadlock victim, fails a statement that would succeed a moment
 * later. Such an error is never the fault of the request or the message that ran into it: HTTP
 * answers 503 with `Retry-After`, a consumer holds its partition and tries again without counting
 * the attempt toward a dead letter, and the command handler runs a deadlocked command again at once.
 *
 * The same statements run on PostgreSQL and on PGlite. PGlite keeps its files through Emscripten's
 * NODEFS: a failed write inside PostgreSQL comes back as the SQLSTATE PostgreSQL gives the errno
 * (ENOSPC → 53100, EIO → 58030, EROFS → 42501 "Read-only file system"); a failed write in PGlite's
 * own JavaScript comes back as Emscripten's `ErrnoError` with its (Emscripten) errno number, and
 * Node's own file system errors carry `code: 'ENOSPC'`. All three are recognised.
 */

export type UnavailableReason =
  /** Network errors, SQLSTATE class 08 (connection exception), a closed pool or PGlite. */
  | 'unreachable'
  /** SQLSTATE 57P01–57P05: the server is shutting down or restarting. */
  | 'shutting-down'
  /** 53300: every connection the server or the role allows is taken. */
  | 'too-many-connections'
  /** 53100, ENOSPC. */
  | 'disk-full'
  /** 53200. */
  | 'out-of-memory'
  /** 53000, 53400 and the rest of class 53; EMFILE / ENFILE (no file descriptors left). */
  | 'insufficient-resources'
  /** 40P01: this transaction was chosen as a deadlock victim. */
  | 'deadlock'
  /** 40001: a concurrent transaction made this one impossible to serialize. */
  | 'serialization-failure'
  /** 55P03: a lock could not be taken (NOWAIT, lock_timeout). */
  | 'lock-not-available'
  /** 58030, EIO. */
  | 'io-error'
  /** EROFS: the data directory's file system went read-only. */
  | 'read-only-file-system'

export interface DatabaseUnavailable {
  unavailable: true
  reason: UnavailableReason
  /**
   * A conflict between transactions (deadlock, serialization failure): nothing is down, and the
   * same work run again at once usually succeeds.
   */
  conflict: boolean
  /** How long a caller should wait before trying again (HTTP `Retry-After`, in whole seconds). */
  retryAfterMs: number
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'])

/** Node's file system codes, and Emscripten's errno numbers for them (PGlite's `FS.ErrnoError`). */
const FILE_SYSTEM_CODES: Record<string, UnavailableReason> = {
  ENOSPC: 'disk-full',
  EIO: 'io-error',
  EROFS: 'read-only-file-system',
  EMFILE: 'insufficient-resources',
  ENFILE: 'insufficient-resources',
}
const EMSCRIPTEN_ERRNO: Record<number, UnavailableReason> = {
  51: 'disk-full',
  29: 'io-error',
  69: 'read-only-file-system',
  33: 'insufficient-resources',
  41: 'insufficient-resources',
}

const SQLSTATE: Record<string, UnavailableReason> = {
  '53100': 'disk-full',
  '53200': 'out-of-memory',
  '53300': 'too-many-connections',
  '40P01': 'deadlock',
  '40001': 'serialization-failure',
  '55P03': 'lock-not-available',
  '58030': 'io-error',
}

const MESSAGES: [RegExp, UnavailableReason][] = [
  [
    /Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED|PGlite is closed|Client has encountered a connection error|Cannot use a pool after calling end/i,
    'unreachable',
  ],
  [/No space left on device|\bENOSPC\b/, 'disk-full'],
  [/Read-only file system|\bEROFS\b/, 'read-only-file-system'],
  [/Input\/output error|\bI\/O error\b|\bEIO\b/, 'io-error'],
]

const CONFLICTS: ReadonlySet<UnavailableReason> = new Set(['deadlock', 'serialization-failure'])

function reasonOf(error: object): UnavailableReason | undefined {
  const e = error as { code?: unknown; errno?: unknown; name?: unknown; message?: unknown }
  const code = typeof e.code === 'string' ? e.code : ''
  if (NETWORK_CODES.has(code)) return 'unreachable'
  const fileSystem = FILE_SYSTEM_CODES[code]
  if (fileSystem) return fileSystem
  if (e.name === 'ErrnoError' && typeof e.errno === 'number') {
    const emscripten = EMSCRIPTEN_ERRNO[e.errno]
    if (emscripten) return emscripten
  }
  if (/^[0-9A-Z]{5}$/.test(code)) {
    const known = SQLSTATE[code]
    if (known) return known
    if (code.startsWith('08')) return 'unreachable'
    if (code.startsWith('57P')) return 'shutting-down'
    if (code.startsWith('53')) return 'insufficient-resources'
  }
  const message = typeof e.message === 'string' ? e.message : ''
  return MESSAGES.find(([pattern]) => pattern.test(message))?.[1]
}

/** What makes `error` (itself, not its causes) an outage, or undefined when it is not one. */
export function classifyDatabaseError(error: unknown): DatabaseUnavailable | undefined {
  if (error === null || typeof error !== 'object') return undefined
  const reason = reasonOf(error)
  if (!reason) return undefined
  const conflict = CONFLICTS.has(reason)
  return {
    unavailable: true,
    reason,
    conflict,
    retryAfterMs: conflict || reason === 'lock-not-available' ? 1_000 : 5_000,
  }
}

/** The first outage in `error` or its chain of causes (a driver error wrapped by the caller). */
export function findDatabaseUnavailable(error: unknown): DatabaseUnavailable | undefined {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 8; depth++) {
    const found = classifyDatabaseError(current)
    if (found) return found
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/** Whether an error means the database cannot serve now (as opposed to a bad statement). */
export function isDatabaseUnavailable(error: unknown): boolean {
  return classifyDatabaseError(error) !== undefined
}

/** A deadlock or serialization failure: the transaction should run again, from the start. */
export function isTransactionConflict(error: unknown): boolean {
  return findDatabaseUnavailable(error)?.conflict === true
}
