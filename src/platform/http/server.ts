import { randomUUID } from 'node:crypto'
import fastifySwagger, { type SwaggerTransform } from '@fastify/swagger'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyRequest,
  type FastifySchema,
  type FastifySerializerCompiler,
  LogController,
} from 'fastify'
import { createJsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { findUnsafeText } from '../../contracts/text.ts'
import { AppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { httpTracingPlugin } from '../tracing.ts'
import { type Authenticator, type AuthRequirement, allowEveryone, installAuthSeam } from './auth.ts'
import { problemErrorHandler, problemFor, sendProblem } from './problem.ts'
import { installRateLimits, type RateLimits } from './rate-limit.ts'
import { installShedding } from './shedding.ts'
import { strictDeep } from './strict-body.ts'

export interface HealthCheck {
  name: string
  /**
   * Throws when the process should not take traffic (the check is down). Resolves to a note when
   * it is up but something needs an operator's attention (open dead letters): readiness stays true.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: checks that only throw (`Promise<void>`) fit as they are.
  check(): Promise<void | HealthNote>
}

/** What an up check may add for operators: a warning, and figures behind it. */
export interface HealthNote {
  warning: string
  details?: Record<string, unknown>
}

/** Where the OpenAPI document of every route of the process is served. */
export const OPENAPI_PATH = '/openapi.json'
/** Where the AsyncAPI document of every topic of the process is served. */
export const ASYNCAPI_PATH = '/asyncapi.json'

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
const CHECK_TIMEOUT_MS = 3_000

const liveBody = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['ok'] } },
} as const

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

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
        properties: {
          status: { type: 'string', enum: ['up', 'down'] },
          error: { type: 'string' },
          warning: { type: 'string' },
          details: { type: 'object', additionalProperties: true },
        },
      },
    },
  },
} as const

function bodyRejected(message: string): AppError {
  return new AppError('VALIDATION_FAILED', `the request body ${message}`, { fields: [{ field: '(body)', message }] })
}

// Error responses are the error handler's problems; their schemas are documentation, and checking
// them could only turn a 4xx into a 500 over an extension field. Successful responses are checked
// against (and shaped by) the route's zod schema.
const serializeResponses: FastifySerializerCompiler<z.ZodType> = (route) =>
  /^[45]/.test(String(route.httpStatus)) ? (data) => JSON.stringify(data) : serializerCompiler(route)

/** A route as registered, for checks over every route (documented, declares its auth). */
export interface RegisteredRoute {
  method: string
  url: string
  auth: string | undefined
  /** Left out of the OpenAPI document (the documents themselves). */
  hidden: boolean
}

const routesOf = new WeakMap<FastifyInstance, RegisteredRoute[]>()

/** Every route registered on a server made by `createHttpServer`, HEAD twins included. */
export function registeredRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  return routesOf.get(app) ?? []
}

export interface HttpServerOptions {
  logger: Logger
  metrics: Metrics
  checks: HealthCheck[]
  /** Resolves each route's `config.auth` requirement; everyone is allowed when omitted. */
  authenticate?: Authenticator
  /** Per-IP and per-client request limits; none when omitted. */
  rateLimits?: RateLimits
  /** Fastify's trustProxy: whose X-Forwarded-For gives the client's address (TRUST_PROXY). */
  trustProxy?: boolean | number | string[]
  /** Requests handled at once before new ones are shed with 503 OVERLOADED (HTTP_MAX_IN_FLIGHT); 0 or unset never sheds. */
  maxInFlight?: number
  /** The AsyncAPI document served at `/asyncapi.json`. */
  asyncApi?: () => unknown
}

/**
 * The process's HTTP server: `/health`, `/metrics`, `/openapi.json`, `/asyncapi.json`, JSON bodies
 * only, problem+json errors and the authentication seam. Service modules add their routes with
 * `registerApi`, each in its own encapsulated scope; every route registered after this returns is
 * in the OpenAPI document.
 */
export function createHttpServer(deps: HttpServerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'http' }) as FastifyBaseLogger,
    // Request lines would double the log volume; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    // Request ids double as default correlation ids: they must be unique across restarts and instances.
    genReqId: () => randomUUID(),
    // A hop count as a function: Fastify's types take none.
    trustProxy:
      typeof deps.trustProxy === 'number'
        ? (() => {
            const hops = deps.trustProxy
            return (_address: string, hop: number) => hop < hops
          })()
        : (deps.trustProxy ?? false),
    // While the server drains (SIGTERM), a request that still reaches it on a kept-alive connection
    // is served, with `Connection: close`, rather than answered 503: what a client sent before the
    // server stopped listening is not refused, and every connection closes after its last answer.
    return503OnClosing: false,
    // Ids are checked by the routes' schemas (at most 200 characters, said so); longer is a 414.
    routerOptions: { maxParamLength: 500 },
    // Errors Fastify raises before a route runs (a URL that does not decode, a path segment over
    // the limit) are problems like any other.
    frameworkErrors: (error, request, reply) => sendProblem(reply, problemFor(error, request.url.slice(0, 300))),
    // Errors Node's HTTP server raises before Fastify sees a request: no route runs, so the problem
    // is written to the socket as a raw response. Headers over the limit are a 431; a request not
    // received in time (Node's request and headers timeouts; a busy server that read it late) is a
    // 408, which tells the client to send it again, never a 400 that says its request was wrong; a
    // connection the client reset gets nothing. Anything else the parser refused is a 400.
    clientErrorHandler: (error, socket) => {
      const code = (error as { code?: string }).code
      if (code === 'ECONNRESET' || socket.destroyed) {
        socket.destroy()
        return
      }
      const [status, appCode, detail] =
        code === 'HPE_HEADER_OVERFLOW'
          ? ([431, 'HEADERS_TOO_LARGE', 'the request headers are too large'] as const)
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? ([408, 'REQUEST_TIMEOUT', 'the request was not received in time; send it again'] as const)
            : ([400, 'VALIDATION_FAILED', 'the request is not valid HTTP'] as const)
      const problem = problemFor(new AppError(appCode, detail))
      const body = JSON.stringify(problem)
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${problem.title}\r\n` +
            `content-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        )
      } else {
        socket.destroy(error)
      }
    },
  })

  // With tracing on, a SERVER span per request (a child of the caller's traceparent), registered
  // before every hook and route so that each runs in its context. Probes and scrapes are left out.
  const tracing = httpTracingPlugin({
    instrumentHooks: false,
    ignorePaths: ({ url }) => url.startsWith('/health') || url.startsWith('/metrics'),
    requestHook: (span, request) => span.updateName(`${request.method} ${request.routeOptions.url ?? '(no route)'}`),
    // Route handlers are anonymous functions: named by their route instead.
    lifecycleHook: (span, { hookName, request }) => span.updateName(`${hookName} ${request.routeOptions.url}`),
  })
  if (tracing) app.register(tracing)
  // Rate, errors and duration per route: the route's pattern, never the raw URL (ids would make a
  // series per order).
  app.addHook('onResponse', async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? '(no route)',
      status_class: `${Math.floor(reply.statusCode / 100)}xx`,
    }
    deps.metrics.httpRequests.inc(labels)
    deps.metrics.httpSeconds.observe(labels, reply.elapsedTime / 1000)
  })

  // Before authentication and the rate limits: a shed request costs no work (shedding.ts).
  installShedding(app, { maxInFlight: deps.maxInFlight ?? 0, metrics: deps.metrics, logger: deps.logger })

  // Database outages (unreachable, out of resources, deadlocks) become 503 with Retry-After there.
  app.setErrorHandler(problemErrorHandler(deps.logger))
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problemFor(new AppError('NOT_FOUND', `no route ${request.method} ${request.url}`), request.url)),
  )
  // Per IP before authentication (bad tokens count too), per client after it.
  const authenticate = deps.authenticate ?? allowEveryone
  // Operators and services (a token that verifies with that role) are limited per client only.
  const trusted = async (request: FastifyRequest) => {
    if (!request.headers.authorization) return false
    const principal = await authenticate(request, 'public').catch(() => null)
    return principal?.roles.some((role) => role === 'operator' || role === 'service') === true
  }
  const limits = deps.rateLimits ? installRateLimits(app, deps.rateLimits, { trusted }) : undefined
  if (limits) app.addHook('onRequest', limits.byIp)
  installAuthSeam(app, authenticate)
  if (limits) app.addHook('onRequest', limits.byClient)
  const routes: RegisteredRoute[] = []
  routesOf.set(app, routes)
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      routes.push({ method, url: route.url, auth: route.config?.auth, hidden: route.schema?.hide === true })
    }
  })

  // JSON only, and a body that is not JSON is a 400 naming the body like any other invalid input,
  // rather than Fastify's own errors (415, or text/plain parsed as a string).
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeAllContentTypeParsers()
  const jsonParser = (
    request: FastifyRequest,
    body: string | Buffer,
    done: (error: Error | null, body?: unknown) => void,
  ) =>
    parseJson(request, body as string, (error, value) => {
      if (!error) return done(null, value)
      const code = (error as { code?: string }).code
      done(bodyRejected(code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ? 'must not be empty' : 'is not valid JSON'))
    })
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonParser)
  app.addContentTypeParser(/^application\/[\w.-]+\+json$/, { parseAs: 'string' }, jsonParser)
  app.addContentTypeParser('*', (request, _payload, done) =>
    done(bodyRejected(`must be application/json, not ${request.headers['content-type'] ?? 'unspecified'}`)),
  )
  // Text PostgreSQL cannot store (NUL, unpaired surrogates) is refused before any route sees it,
  // wherever it is: path, query or body.
  app.addHook('preValidation', async (request) => {
    for (const [part, value] of [
      ['path', request.params],
      ['query', request.query],
      ['body', request.body],
    ] as const) {
      const unsafe = findUnsafeText(value)
      if (unsafe) {
        const field = part === 'body' ? unsafe.field : `${part}.${unsafe.field}`
        throw new AppError('VALIDATION_FAILED', `${field} ${unsafe.message}`, {
          fields: [{ field, message: unsafe.message }],
        })
      }
    }
  })
  // Said plainly rather than as zod's "expected object, received null". A route whose body schema
  // accepts nothing (zod's `.nullish()`) may be called without one.
  app.addHook('preValidation', async (request) => {
    const schema = request.routeOptions.schema?.body as { safeParse?: (value: unknown) => { success: boolean } }
    if (
      schema !== undefined &&
      (request.body === undefined || request.body === null) &&
      !schema.safeParse?.(request.body).success
    ) {
      throw bodyRejected('is missing: send a JSON object')
    }
  })

  // Swagger collects routes with an onRoute hook, which exists only once the plugin has loaded:
  // the routes below are therefore declared in a plugin registered after it.
  app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'orderflow',
        version: '0.1.0',
        description: 'Errors are application/problem+json (RFC 9457).',
      },
      components: {
        securitySchemes: {
          [SECURITY_SCHEME]: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description:
              "A JWT from the identity provider (or AUTH=dev's development tokens): sub is the caller, the roles claim holds customer, service or operator. Each operation's x-required-role names the role it needs.",
          },
        },
      },
    },
    transform: documentRoute,
    transformObject: (document) =>
      'openapiObject' in document
        ? documentSecurity(document.openapiObject, routes, limits !== undefined)
        : document.swaggerObject,
  })

  app.register(async (scope) => {
    // Liveness: the process answers. It says nothing about dependencies (a restart would not fix a
    // database outage) and nothing internal.
    for (const path of ['/health', '/health/live']) {
      scope.get(
        path,
        {
          // Probes are never rate-limited: a 429 would read as a dead process.
          config: { auth: 'public', rateLimit: false, shed: false },
          schema: {
            summary: 'Liveness: the process is up and answering',
            tags: ['operations'],
            response: { 200: { description: 'The process answers', ...liveBody } },
          },
        },
        async () => ({ status: 'ok' }),
      )
    }
    scope.get(
      '/health/ready',
      {
        config: { auth: 'public', rateLimit: false, shed: false },
        schema: {
          summary: 'Readiness: the process can serve (its database answers, its consumers have joined)',
          description:
            "Down (503) while the database does not answer, before every consumer has joined, or when a consumer is stalled in a handler. Once started, what the process relies on beyond its database is a warning, not a 503: the broker away (commands are still accepted into the outbox), a consumer waiting for a dependency, the outbox relay behind, open dead letters. With authentication on, why a check is down (its error) and what an up check warns about are shown to operators only: they name hosts and internals. Everyone sees each check's status.",
          tags: ['operations'],
          response: {
            200: { description: 'Every check is up: send traffic', ...healthBody },
            503: { description: 'At least one check is down: the reason is in its error', ...healthBody },
          },
        },
      },
      async (request, reply) => {
        const results = await Promise.all(
          deps.checks.map(async (c) => {
            try {
              const note = await withTimeout(c.check(), CHECK_TIMEOUT_MS, `no answer within ${CHECK_TIMEOUT_MS} ms`)
              return [c.name, { status: 'up', ...(note ?? {}) }] as const
            } catch (error) {
              return [c.name, { status: 'down', error: (error as Error).message }] as const
            }
          }),
        )
        const up = results.every(([, r]) => r.status === 'up')
        const detailed = authenticate === allowEveryone || request.principal?.roles.includes('operator') === true
        const checks = detailed ? results : results.map(([name, r]) => [name, { status: r.status }] as const)
        return reply.status(up ? 200 : 503).send({ status: up ? 'ok' : 'degraded', checks: Object.fromEntries(checks) })
      },
    )

    scope.get(
      '/metrics',
      {
        // Never shed: an overloaded process is when its operators most need to see it.
        config: { auth: 'operator', shed: false },
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

    scope.get(OPENAPI_PATH, { config: { auth: 'public' }, schema: { hide: true } }, async () => app.swagger())
    if (deps.asyncApi) {
      const document = deps.asyncApi
      scope.get(ASYNCAPI_PATH, { config: { auth: 'public' }, schema: { hide: true } }, async () => document())
    }
  })

  return app
}

/** The name of the bearer-token scheme in the OpenAPI document. */
export const SECURITY_SCHEME = 'bearerAuth'

const securityProblem = (description: string) => ({
  description,
  content: {
    'application/problem+json': {
      schema: {
        type: 'object',
        required: ['type', 'title', 'status', 'detail', 'code'],
        properties: {
          type: { type: 'string' },
          title: { type: 'string' },
          status: { type: 'integer' },
          detail: { type: 'string' },
          code: { type: 'string' },
        },
      },
    },
  },
})

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

/**
 * Each operation's requirement in the OpenAPI document, from the same route config the auth hook
 * reads: public operations have no security, the others the bearer scheme, their role in
 * `x-required-role`, and their 401/403 (and 429) problems.
 */
function documentSecurity<Document extends { paths?: Record<string, unknown> }>(
  document: Document,
  routes: readonly RegisteredRoute[],
  rateLimited: boolean,
): Document {
  const authOf = new Map(
    routes.map((route) => [`${route.method.toLowerCase()} ${route.url.replace(/:(\w+)/g, '{$1}')}`, route.auth]),
  )
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const [method, operation] of Object.entries(item as Record<string, Record<string, unknown>>)) {
      if (!HTTP_METHODS.includes(method)) continue
      const auth = (authOf.get(`${method} ${path}`) ?? 'public') as AuthRequirement
      operation.responses ??= {}
      const responses = operation.responses as Record<string, unknown>
      operation['x-required-role'] = auth
      if (auth === 'public') {
        operation.security = []
      } else {
        operation.security = [{ [SECURITY_SCHEME]: [] }]
        responses['401'] ??= securityProblem(
          'No bearer token, or one that does not verify: bad signature, expired, wrong issuer or audience (UNAUTHENTICATED)',
        )
        responses['403'] ??= securityProblem(`The token's roles do not include ${auth} (FORBIDDEN)`)
      }
      if (rateLimited && !path.startsWith('/health')) {
        responses['429'] ??= securityProblem(
          'Too many requests from this client or address; retry after Retry-After seconds',
        )
      }
    }
  }
  return document
}

/**
 * Registers a service's API in a scope of its own, with zod validating requests and shaping
 * responses: the routes declare zod schemas from the contracts and get typed handlers. Bodies are
 * strict (`strictDeep`): an unknown property is a 400 naming it.
 */
export function registerApi(app: FastifyInstance, routes: FastifyPluginAsync): void {
  app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      const body = route.schema?.body
      if (body instanceof z.ZodType) route.schema = { ...route.schema, body: strictDeep(body) }
    })
    scope.setValidatorCompiler(validatorCompiler)
    scope.setSerializerCompiler(serializeResponses)
    await scope.register(routes)
  })
}
