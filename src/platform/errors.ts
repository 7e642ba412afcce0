/**
 * Errors with stable codes. The HTTP layer maps codes to status in one place (`http/problem.ts`);
 * everything else throws `AppError` with the code that says what went wrong.
 */
export const ErrorCodes = {
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  NOT_FOUND: 'NOT_FOUND',
  ORDER_NOT_FOUND: 'ORDER_NOT_FOUND',
  INVALID_TRANSITION: 'INVALID_TRANSITION',
  VERSION_CONFLICT: 'VERSION_CONFLICT',
  IDEMPOTENCY_KEY_REUSED: 'IDEMPOTENCY_KEY_REUSED',
  DATABASE_UNAVAILABLE: 'DATABASE_UNAVAILABLE',
  TRANSPORT_UNAVAILABLE: 'TRANSPORT_UNAVAILABLE',
  CONFIG_INVALID: 'CONFIG_INVALID',
  POISON_MESSAGE: 'POISON_MESSAGE',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

export interface FieldError {
  field: string
  message: string
}

export class AppError extends Error {
  readonly code: ErrorCode
  readonly fields: FieldError[]
  readonly details: Record<string, unknown>

  constructor(
    code: ErrorCode,
    message: string,
    options: { fields?: FieldError[]; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.fields = options.fields ?? []
    this.details = options.details ?? {}
  }
}

export function isAppError(error: unknown, code?: ErrorCode): error is AppError {
  return error instanceof AppError && (code === undefined || error.code === code)
}

export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}
