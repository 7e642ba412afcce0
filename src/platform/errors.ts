/**
 * Errors with stable codes. The HTTP layer maps codes to status in one place (`http/problem.ts`);
 * everything else throws `AppError` with the code that says what went wrong.
 *
 * Each error also says whether trying again can help (`retryable`). Consumers decide between a
 * retry and an immediate dead letter from that flag alone, never from a list of codes: a rejected
 * command stays rejected however often it is retried, an unavailable database may be back in a
 * second.
 */
export const ErrorCodes = {
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  NOT_FOUND: 'NOT_FOUND',
  INVALID_TRANSITION: 'INVALID_TRANSITION',
  /** A change to an order's total after placement: its payment was requested for that total. */
  ORDER_TOTAL_FIXED: 'ORDER_TOTAL_FIXED',
  VERSION_CONFLICT: 'VERSION_CONFLICT',
  IDEMPOTENCY_KEY_REUSED: 'IDEMPOTENCY_KEY_REUSED',
  DATABASE_UNAVAILABLE: 'DATABASE_UNAVAILABLE',
  TRANSPORT_UNAVAILABLE: 'TRANSPORT_UNAVAILABLE',
  /** A third party (the payment gateway) cannot answer now. */
  GATEWAY_UNAVAILABLE: 'GATEWAY_UNAVAILABLE',
  CONFIG_INVALID: 'CONFIG_INVALID',
  POISON_MESSAGE: 'POISON_MESSAGE',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  URI_TOO_LONG: 'URI_TOO_LONG',
  HEADERS_TOO_LARGE: 'HEADERS_TOO_LARGE',
  /** The client did not finish sending its request in time (Node's request or headers timeout): send it again. */
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  /** No credentials, or credentials that do not verify (bad signature, expired, wrong issuer). */
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  /** A known caller whose role does not allow this route. */
  FORBIDDEN: 'FORBIDDEN',
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  /** The process is handling as many requests as it takes (HTTP_MAX_IN_FLIGHT): nothing was done, send it again. */
  OVERLOADED: 'OVERLOADED',
  /** A sealed personal field that does not authenticate (changed, moved), or whose key is lost (never erased). */
  PERSONAL_DATA_UNREADABLE: 'PERSONAL_DATA_UNREADABLE',
  INTERNAL: 'INTERNAL',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

/** Codes whose errors are retryable unless the thrower says otherwise: a dependency that is away. */
const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set([
  'DATABASE_UNAVAILABLE',
  'TRANSPORT_UNAVAILABLE',
  'GATEWAY_UNAVAILABLE',
  'OVERLOADED',
])

export interface FieldError {
  field: string
  message: string
}

export interface AppErrorOptions {
  fields?: FieldError[]
  details?: Record<string, unknown>
  cause?: unknown
  /** Whether the same operation may succeed if tried again; defaults by code (see above). */
  retryable?: boolean
}

export class AppError extends Error {
  readonly code: ErrorCode
  readonly fields: FieldError[]
  readonly details: Record<string, unknown>
  readonly retryable: boolean

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.fields = options.fields ?? []
    this.details = options.details ?? {}
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code)
  }
}

/** A resource that does not exist: `NOT_FOUND`, with the kind of resource and its id in the details. */
export function notFound(resource: string, id: string, message = `${resource} ${id} not found`): AppError {
  return new AppError('NOT_FOUND', message, { details: { resource, id } })
}

export function isAppError(error: unknown, code?: ErrorCode): error is AppError {
  return error instanceof AppError && (code === undefined || error.code === code)
}

/**
 * Whether trying again may help. An `AppError` says so itself (searching its causes, as
 * @platformatic/kafka's `findBy` does); any other error — a dropped connection, a timeout, a bug —
 * is assumed to be transient, so that nothing accepted is dead-lettered for a passing fault.
 */
export function isRetryable(error: unknown): boolean {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 8; depth++) {
    if (current instanceof AppError) return current.retryable
    current = (current as { cause?: unknown }).cause
  }
  return true
}

export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}
