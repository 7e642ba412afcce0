import fastifyRateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { AppError } from '../errors.ts'
import type { SqlExecutor } from '../sql/port.ts'

/**
 * Rate limits with @fastify/rate-limit: one per IP, counted before authentication (so floods of bad
 * tokens are limited too), and one per authenticated client, counted after it (so clients behind
 * one proxy do not share a budget). Either limit exceeded is a 429 problem with Retry-After.
 *
 * The counters are in memory, per process (`memory`: N processes behind a load balancer allow up to
 * N times the limit), or in the database every process shares (`database`, the default on
 * PostgreSQL: one upsert per request and limit, on the pool's connections). Behind a load balancer
 * the address is the client's only with TRUST_PROXY set (Fastify's trustProxy), else it is the
 * balancer's and every caller shares one budget.
 * Routes with `config: { rateLimit: false }` (health probes) are not counted.
 *
 * The per-address limit is meant for anonymous callers: a request whose token verifies as an
 * operator's or a service's (`trusted`) is not counted by address, only by client. An operator's
 * audit loop or a fulfilment service behind one NAT address is not turned away with the crowd.
 */

export interface RateLimits {
  /** Counters shared by every process (a database); in memory, per process, when omitted. */
  store?: FastifyRateLimitStoreCtor
  windowMs: number
  /** Requests per window per authenticated client (the token's subject). */
  perClient: number
  /** Requests per window per client IP address, authenticated or not. */
  perIp: number
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>

export interface RateLimitHooks {
  /** Counts per IP; add before the authentication hook. */
  byIp: onRequestAsyncHookHandler
  /** Counts per authenticated client; add after the authentication hook. */
  byClient: onRequestAsyncHookHandler
}

export function installRateLimits(
  app: FastifyInstance,
  limits: RateLimits,
  options: { trusted?: (request: FastifyRequest) => Promise<boolean> } = {},
): RateLimitHooks {
  // Limiters only: the hooks below decide where they run, so `global` stays off.
  app.register(fastifyRateLimit, {
    global: false,
    timeWindow: limits.windowMs,
    cache: 10_000,
    ...(limits.store ? { store: limits.store } : {}),
  })
  let byIp: Limiter | undefined
  let byClient: Limiter | undefined
  // The plugin decorates the server once it has loaded, which is before any request arrives.
  const limiter = (max: number, key: (request: FastifyRequest) => string) =>
    app.createRateLimit({ max, timeWindow: limits.windowMs, keyGenerator: key })

  const count = async (limit: Limiter, request: FastifyRequest, reply: FastifyReply, who: string) => {
    const result = await limit(request)
    if (result.isAllowed || !result.isExceeded) return
    reply.header('retry-after', String(Math.max(1, result.ttlInSeconds)))
    reply.header('x-ratelimit-limit', String(result.max))
    reply.header('x-ratelimit-remaining', '0')
    throw new AppError(
      'TOO_MANY_REQUESTS',
      `too many requests from this ${who}: at most ${result.max} per ${Math.round(result.timeWindow / 1000)} s; retry after ${result.ttlInSeconds} s`,
      { details: { limit: result.max, windowSeconds: Math.round(result.timeWindow / 1000) } },
    )
  }
  const exempt = (request: FastifyRequest) => request.routeOptions.config?.rateLimit === false

  return {
    async byIp(request, reply) {
      if (exempt(request)) return
      if (options.trusted && (await options.trusted(request))) return
      byIp ??= limiter(limits.perIp, (r) => `ip:${r.ip}`)
      await count(byIp, request, reply, 'address')
    },
    async byClient(request, reply) {
      if (exempt(request) || !request.principal) return
      byClient ??= limiter(limits.perClient, (r) => `client:${r.principal?.id}`)
      await count(byClient, request, reply, 'client')
    },
  }
}

/**
 * A @fastify/rate-limit store in the database (`rate_limit_counters`), so that every process of a
 * deployment counts against one budget: one upsert per request and limit, which opens a new
 * window when the last one has passed and says how long the current one has left. One request in a
 * thousand also deletes the rows of windows over a day old. A database that does not answer lets
 * the request through (the limiter's `skipOnError` is not ours to choose per store; the error is
 * passed on and the request is answered 503 by the database's own error path).
 */
export function databaseRateLimitStore(db: SqlExecutor): FastifyRateLimitStoreCtor {
  const store: FastifyRateLimitStore = {
    incr(key, callback, timeWindow) {
      db.query<{ count: number; ttl: number }>(
        `INSERT INTO rate_limit_counters AS c (key, window_start, count) VALUES ($1, clock_timestamp(), 1)
         ON CONFLICT (key) DO UPDATE SET
           count = CASE WHEN c.window_start + $2 * interval '1 millisecond' <= clock_timestamp() THEN 1 ELSE c.count + 1 END,
           window_start = CASE WHEN c.window_start + $2 * interval '1 millisecond' <= clock_timestamp()
                               THEN clock_timestamp() ELSE c.window_start END
         RETURNING count,
           GREATEST(0, $2 - (EXTRACT(EPOCH FROM clock_timestamp() - window_start) * 1000)::bigint)::int AS ttl`,
        [key, timeWindow],
      ).then(
        ({ rows }) => {
          const row = rows[0] ?? { count: 1, ttl: timeWindow }
          if (Math.random() < 0.001) {
            void db
              .query("DELETE FROM rate_limit_counters WHERE window_start < now() - interval '1 day'")
              .catch(() => {})
          }
          callback(null, { current: row.count, ttl: row.ttl })
        },
        (error: Error) => callback(error),
      )
    },
    child() {
      return store
    },
  }
  return class DatabaseRateLimitStore {
    incr = store.incr
    child = store.child
  } as unknown as FastifyRateLimitStoreCtor
}
