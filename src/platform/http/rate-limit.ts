import fastifyRateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { AppError } from '../errors.ts'

/**
 * Rate limits with @fastify/rate-limit: one per IP, counted before authentication (so floods of bad
 * tokens are limited too), and one per authenticated client, counted after it (so clients behind
 * one proxy do not share a budget). Either limit exceeded is a 429 problem with Retry-After.
 *
 * The counters are in memory, per process: N processes behind a load balancer allow up to N times
 * the limit (a shared store is @fastify/rate-limit's `redis` option, when there is a Redis).
 * Routes with `config: { rateLimit: false }` (health probes) are not counted.
 *
 * The per-address limit is meant for anonymous callers: a request whose token verifies as an
 * operator's or a service's (`trusted`) is not counted by address, only by client. An operator's
 * audit loop or a fulfilment service behind one NAT address is not turned away with the crowd.
 */

export interface RateLimits {
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
  app.register(fastifyRateLimit, { global: false, timeWindow: limits.windowMs, cache: 10_000 })
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
