import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { AppError, type ErrorCode, type FieldError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { findDatabaseUnavailable } from '../sql/unavailable.ts'

/** The one place where error codes become HTTP statuses. */
const statusByCode: Record<ErrorCode, number> = {
  VALIDATION_FAILED: 400,
  POISON_MESSAGE: 400,
  NOT_FOUND: 404,
  INVALID_TRANSITION: 409,
  ORDER_TOTAL_FIXED: 409,
  VERSION_CONFLICT: 409,
  IDEMPOTENCY_KEY_REUSED: 422,
  DATABASE_UNAVAILABLE: 503,
  TRANSPORT_UNAVAILABLE: 503,
  GATEWAY_UNAVAILABLE: 503,
  OVERLOADED: 503,
  CONFIG_INVALID: 500,
  PAYLOAD_TOO_LARGE: 413,
  URI_TOO_LONG: 414,
  HEADERS_TOO_LARGE: 431,
  REQUEST_TIMEOUT: 408,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  TOO_MANY_REQUESTS: 429,
  PERSONAL_DATA_UNREADABLE: 500,
  INTERNAL: 500,
}

/** Fastify's own client errors, as the stable codes of this API. */
const codeByStatus: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  408: 'REQUEST_TIMEOUT',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'VALIDATION_FAILED',
  429: 'TOO_MANY_REQUESTS',
  431: 'HEADERS_TOO_LARGE',
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  431: 'Request Header Fields Too Large',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  instance?: string
  code: string
  errors?: FieldError[]
  [extension: string]: unknown
}

export function problemFor(error: unknown, instance?: string): Problem {
  if (error instanceof AppError) {
    const status = statusByCode[error.code]
    return {
      type: `https://orderflow.dev/problems/${error.code.toLowerCase().replaceAll('_', '-')}`,
      title: titles[status] ?? 'Error',
      status,
      detail: error.message,
      code: error.code,
      ...(instance ? { instance } : {}),
      ...(error.fields.length > 0 ? { errors: error.fields } : {}),
      ...error.details,
    }
  }
  const fastifyError = error as FastifyError
  if (fastifyError?.validation) {
    const errors = fastifyError.validation.flatMap((v) => {
      // A strict body's unknown properties: one error per property, named.
      const unknown = (v.params as { keys?: unknown })?.keys
      if (v.keyword === 'unrecognized_keys' && Array.isArray(unknown)) {
        return unknown.map((key) => ({
          field: fieldOf(`${v.instancePath === '/' ? '' : v.instancePath}/${String(key)}`, undefined),
          message: 'is not a property of this request (unknown properties are refused, not dropped)',
        }))
      }
      return [
        {
          field: fieldOf(v.instancePath, (v.params as { missingProperty?: string })?.missingProperty),
          message: v.message ?? 'is invalid',
        },
      ]
    })
    return {
      type: 'https://orderflow.dev/problems/validation-failed',
      title: 'Bad Request',
      status: 400,
      detail: errors.map((e) => `${e.field}: ${e.message}`).join('; '),
      code: 'VALIDATION_FAILED',
      errors,
      ...(instance ? { instance } : {}),
    }
  }
  // A value PostgreSQL refused as data (SQLSTATE class 22: bad encoding, out of range, bad
  // timestamp) is the request's fault. Input checks should have caught it; this is the backstop, and
  // it never shows the SQLSTATE.
  if (
    typeof (error as { code?: unknown })?.code === 'string' &&
    /^22[0-9A-Z]{3}$/.test(String((error as { code: string }).code))
  ) {
    return {
      type: 'https://orderflow.dev/problems/validation-failed',
      title: 'Bad Request',
      status: 400,
      detail: 'a value in the request cannot be stored; check text, numbers and dates',
      code: 'VALIDATION_FAILED',
      ...(instance ? { instance } : {}),
    }
  }
  const status =
    typeof fastifyError?.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500
      ? fastifyError.statusCode
      : 500
  const code = status < 500 ? (codeByStatus[status] ?? 'VALIDATION_FAILED') : 'INTERNAL'
  return {
    type: `https://orderflow.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title: titles[status] ?? 'Error',
    status,
    detail: status < 500 ? clientMessage(fastifyError) : 'internal error',
    code,
    ...(instance ? { instance } : {}),
  }
}

/** Fastify's message for a client error, without echoing the (possibly huge or binary) URL. */
function clientMessage(error: FastifyError | undefined): string {
  switch (error?.code) {
    case 'FST_ERR_BAD_URL':
      return 'the URL is not valid: a percent-encoded part does not decode to text'
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return 'a path segment is too long'
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'the request body is too large'
    default:
      return (error?.message ?? 'the request is not valid').slice(0, 300)
  }
}

function fieldOf(instancePath: string, missing?: string): string {
  const path = instancePath.replace(/^\//, '').replaceAll('/', '.')
  if (missing) return path ? `${path}.${missing}` : missing
  return path || '(body)'
}

export function sendProblem(reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.status(problem.status).type('application/problem+json').send(problem)
}

/** When no error says how long to wait: what a restarting database or broker usually needs. */
const DEFAULT_RETRY_AFTER_SECONDS = 5

/**
 * A database error that is an outage (see `sql/unavailable.ts`) as `DATABASE_UNAVAILABLE`; any other
 * error as it is. A deadlock or an exhausted resource is nobody's fault in the request: 503 with
 * `Retry-After`, never 500.
 */
export function asAppError(error: unknown): unknown {
  const found = error instanceof AppError ? undefined : findDatabaseUnavailable(error)
  if (!found) return error
  const busy = found.conflict || found.reason === 'lock-not-available'
  return new AppError(
    'DATABASE_UNAVAILABLE',
    busy ? 'the database is busy; retry later' : 'the database is unavailable; retry later',
    { cause: error },
  )
}

/** Seconds to wait before trying again, from the outage in the error's causes if there is one. */
export function retryAfterSeconds(error: unknown): number {
  const found = findDatabaseUnavailable(error)
  return found ? Math.max(1, Math.ceil(found.retryAfterMs / 1000)) : DEFAULT_RETRY_AFTER_SECONDS
}

export function problemErrorHandler(logger: Logger) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const mapped = asAppError(error)
    const problem = problemFor(mapped, request.url)
    // Every 503 says when to come back: a dependency that is away, not a request to give up on.
    if (problem.status === 503) reply.header('retry-after', String(retryAfterSeconds(mapped)))
    if (problem.status >= 500) logger.error({ err: error, url: request.url }, 'request failed')
    return sendProblem(reply, problem)
  }
}
