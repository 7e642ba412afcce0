import { randomUUID } from 'node:crypto'
import fastifySwagger, { type SwaggerTransform } from '@fastify/swagger'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifySchema, LogController } from 'fastify'
import { createJsonSchemaTransform } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { isDatabaseUnavailable } from '../sql/unavailable.ts'
import { problemErrorHandler, problemFor, sendProblem } from './problem.ts'

export interface HealthCheck {
  name: string
  check(): Promise<void>
}

/** Where the OpenAPI document of every route of the process is served. */
export const OPENAPI_PATH = '/openapi.json'

const zodRouteTransform = createJsonSchemaTransform({ skipList: [] })

const isZod = (value: unknown): boolean => value instanceof z.ZodType

function usesZod(schema: FastifySchema | undefined): boolean {
  if (!schema) return false
  const parts = [schema.body, schema.querystring, schema.params, schema.headers]
  const responses = Object.values((schema.response ?? {}) as Record<string, unknown>).flatMap((response) => {
    const content = (response as { content?: Record<string, { schema?: unknown }> } | null)?.content
    return content ? Object.values(content).map((media) => media.schema) : [response]
  })
  return [...parts, ...responses].some(isZod)
}

/**
 * Routes typed with zod are documented through the zod provider (request schemas as their wire
 * input); routes with plain JSON schemas, like the ones below, are documented as they are. A route
 * can bring its own `config.swaggerTransform` instead.
 */
const documentRoute: SwaggerTransform = (input) =>
  usesZod(input.schema)
    ? zodRouteTransform(input as Parameters<typeof zodRouteTransform>[0])
    : { schema: input.schema, url: input.url }

// Plain JSON schemas: these routes serialize with Fastify's defaults, so the schemas must describe
// exactly what the handlers send.
const healthBody = {
  type: 'object',
  required: ['status', 'checks'],
  properties: {
    status: { type: 'string', enum: ['ok', 'degraded'] },
    checks: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['status'],
        properties: { status: { type: 'string', enum: ['up', 'down'] }, error: { type: 'string' } },
      },
    },
  },
} as const

/**
 * The process's HTTP server: `/health`, `/metrics`, `/openapi.json`, problem+json errors. Services
 * add their routes as Fastify plugins, each in its own encapsulated scope; every route registered
 * after this returns is in the OpenAPI document.
 */
export function createHttpServer(deps: { logger: Logger; metrics: Metrics; checks: HealthCheck[] }): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'http' }) as FastifyBaseLogger,
    // Request lines would double the log volume; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    // Request ids double as default correlation ids: they must be unique across restarts and instances.
    genReqId: () => randomUUID(),
  })

  app.setErrorHandler((error, request, reply) => {
    const mapped = isDatabaseUnavailable(error)
      ? new AppError('DATABASE_UNAVAILABLE', 'the database is unavailable; retry later', { cause: error })
      : error
    if (mapped !== error) reply.header('retry-after', '5')
    return problemErrorHandler(deps.logger)(mapped, request, reply)
  })
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problemFor(new AppError('NOT_FOUND', `no route ${request.method} ${request.url}`), request.url)),
  )

  // Swagger collects routes with an onRoute hook, which exists only once the plugin has loaded:
  // the routes below are therefore declared in a plugin registered after it.
  app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'orderflow',
        version: '0.1.0',
        description: 'Event-driven order processing. Errors are application/problem+json (RFC 9457).',
      },
    },
    transform: documentRoute,
  })

  app.register(async (scope) => {
    scope.get(
      '/health',
      {
        schema: {
          summary: 'Liveness and dependency checks',
          tags: ['operations'],
          response: {
            200: { description: 'Every check is up', ...healthBody },
            503: { description: 'At least one check is down', ...healthBody },
          },
        },
      },
      async (_request, reply) => {
        const results = await Promise.all(
          deps.checks.map(async (c) => {
            try {
              await c.check()
              return [c.name, { status: 'up' }] as const
            } catch (error) {
              return [c.name, { status: 'down', error: (error as Error).message }] as const
            }
          }),
        )
        const up = results.every(([, r]) => r.status === 'up')
        return reply
          .status(up ? 200 : 503)
          .send({ status: up ? 'ok' : 'degraded', checks: Object.fromEntries(results) })
      },
    )

    scope.get(
      '/metrics',
      {
        schema: {
          summary: 'Prometheus metrics',
          tags: ['operations'],
          response: {
            200: {
              description: 'Prometheus text exposition format',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
      },
      async (_request, reply) =>
        reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()),
    )

    scope.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger())
  })

  return app
}
