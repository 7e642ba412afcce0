import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { AppError, type ErrorCode, type FieldError } from '../errors.ts'
import type { Logger } from '../logger.ts'

/** The one place where error codes become HTTP statuses. */
const statusByCode: Record<ErrorCode, number> = {
  VALIDATION_FAILED: 400,
  POISON_MESSAGE: 400,
  NOT_FOUND: 404,
  INVALID_TRANSITION: 409,
  VERSION_CONFLICT: 409,
  IDEMPOTENCY_KEY_REUSED: 422,
  DATABASE_UNAVAILABLE: 503,
  TRANSPORT_UNAVAILABLE: 503,
  GATEWAY_UNAVAILABLE: 503,
  CONFIG_INVALID: 500,
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  409: 'Conflict',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
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
    const errors = fastifyError.validation.map((v) => ({
      field: fieldOf(v.instancePath, (v.params as { missingProperty?: string })?.missingProperty),
      message: v.message ?? 'is invalid',
    }))
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
  const status =
    typeof fastifyError?.statusCode === 'number' && fastifyError.statusCode < 500 ? fastifyError.statusCode : 500
  return {
    type: 'about:blank',
    title: titles[status] ?? 'Error',
    status,
    detail: status < 500 ? (fastifyError?.message ?? 'request failed') : 'internal error',
    code: fastifyError?.code ?? 'INTERNAL',
    ...(instance ? { instance } : {}),
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

export function problemErrorHandler(logger: Logger) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const problem = problemFor(error, request.url)
    if (problem.status >= 500) logger.error({ err: error, url: request.url }, 'request failed')
    return sendProblem(reply, problem)
  }
}
