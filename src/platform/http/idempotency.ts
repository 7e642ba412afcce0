import { createHash } from 'node:crypto'
import { AppError } from '../errors.ts'
import type { SqlExecutor } from '../sql/port.ts'

/**
 * `Idempotency-Key` for HTTP requests that create something: the first response is stored under
 * the key in the same transaction as what the request wrote, so a client that retries after a
 * timeout gets that response back instead of creating a second resource. Keys are scoped per service and per
 * client, so two clients (or two services) using the same key never see each other's responses;
 * they are pruned after `IDEMPOTENCY_KEY_TTL_MS` (24 h by default) by the housekeeping.
 */

/** Whose key it is: the service that answers and the client that asked. */
export interface IdempotencyScope {
  scope: string
  client: string
  key: string
}

export interface StoredResponse {
  status: number
  headers: Record<string, string>
  body: unknown
}

/** Stores `response` under `key` inside the caller's transaction. */
export type Remember = (tx: SqlExecutor, response: StoredResponse) => Promise<void>

/**
 * Answers a request once per key. `execute` does the work and must call `remember` inside its
 * transaction; a retry with the same key and request gets the stored response (`replayed`), the
 * same key with another request is IDEMPOTENCY_KEY_REUSED.
 *
 * Two requests racing with one key both pass the first lookup; the database lets only one of them
 * insert the key, so the other's transaction is rolled back (what it created never existed) and it
 * answers with the winner's response.
 */
export async function respondOnce(
  db: SqlExecutor,
  request: IdempotencyScope & { hash: string },
  execute: (remember: Remember) => Promise<StoredResponse>,
): Promise<{ response: StoredResponse; replayed: boolean }> {
  const earlier = await find(db, request)
  if (earlier) return { response: replay(request, earlier), replayed: true }
  try {
    const response = await execute(async (tx, response) => {
      // ON CONFLICT waits for a concurrent insert of the same key to commit or roll back, so
      // "nothing inserted" means another request owns the key.
      const { rows } = await tx.query(
        `INSERT INTO idempotency_keys (scope, client, key, request_hash, status, headers, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (scope, client, key) DO NOTHING RETURNING key`,
        [
          request.scope,
          request.client,
          request.key,
          request.hash,
          response.status,
          JSON.stringify(response.headers),
          JSON.stringify(response.body),
        ],
      )
      if (rows.length === 0) throw new KeyTaken(request.key)
    })
    return { response, replayed: false }
  } catch (error) {
    if (!(error instanceof KeyTaken)) throw error
    const winner = await find(db, request)
    if (!winner) throw new Error(`idempotency key ${request.key} was taken but has no stored response`)
    return { response: replay(request, winner), replayed: true }
  }
}

/**
 * The hash a retry must match: the request as the handler understood it (after decoding, so
 * `45.99` and `"45.99"` are the same request), with object keys sorted so that their order does
 * not matter.
 */
export function requestHash(request: unknown): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex')
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

interface StoredRow {
  request_hash: string
  status: number
  headers: Record<string, string>
  body: unknown
}

async function find(db: SqlExecutor, scope: IdempotencyScope): Promise<StoredRow | undefined> {
  const { rows } = await db.query<StoredRow>(
    'SELECT request_hash, status, headers, body FROM idempotency_keys WHERE scope = $1 AND client = $2 AND key = $3',
    [scope.scope, scope.client, scope.key],
  )
  return rows[0]
}

function replay(request: { key: string; hash: string }, stored: StoredRow): StoredResponse {
  if (stored.request_hash !== request.hash) {
    throw new AppError(
      'IDEMPOTENCY_KEY_REUSED',
      `Idempotency-Key '${request.key}' was already used for a different request; use a new key for a new request`,
      { details: { idempotencyKey: request.key } },
    )
  }
  return { status: stored.status, headers: stored.headers, body: stored.body }
}

/** Thrown inside the transaction to roll it back when another request owns the key. */
class KeyTaken extends Error {
  constructor(key: string) {
    super(`idempotency key ${key} is taken`)
    this.name = 'KeyTaken'
  }
}
