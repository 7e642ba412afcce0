import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AppError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { problemFor, sendProblem } from './problem.ts'

/**
 * Load shedding. A process that takes more requests than it can answer queues them all: each
 * waits longer than the last, clients time out and send them again, and the queue grows on. Past
 * `maxInFlight` requests being handled at once (HTTP_MAX_IN_FLIGHT), a new request is answered at
 * once with 503 `OVERLOADED` and `Retry-After`, before any work is done for it (authentication, the
 * rate limits' counters, the database): the requests in flight keep their pace, and a client learns
 * in a millisecond what it would otherwise learn from its timeout. Nothing is accepted and then
 * lost: a shed request did nothing, and its retry (with the same Idempotency-Key) is a first try.
 *
 * A request counts from its arrival until its response is sent or its connection closes. Routes
 * with `config: { shed: false }` (the health probes, the metrics scrape) neither count nor are shed:
 * an overloaded process is alive, and its operators must see why it is busy.
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /** False: never shed, and not counted in flight (probes, the metrics scrape). */
    shed?: boolean
  }
}

export interface SheddingOptions {
  /** Requests handled at once before new ones are shed; 0 never sheds. */
  maxInFlight: number
  metrics: Metrics
  logger: Logger
  /** What a shed request's `Retry-After` says (default 1 s). */
  retryAfterSeconds?: number
}

/** One warning per this long at most, with what was shed since the last one. */
const WARN_EVERY_MS = 10_000

export function installShedding(app: FastifyInstance, options: SheddingOptions): void {
  const { maxInFlight, metrics, logger } = options
  const retryAfter = String(options.retryAfterSeconds ?? 1)
  let inFlight = 0
  metrics.httpInFlight.set(0)
  let shedSinceWarning = 0
  let lastWarning = Number.NEGATIVE_INFINITY

  const warn = () => {
    shedSinceWarning++
    const now = performance.now()
    if (now - lastWarning < WARN_EVERY_MS) return
    logger.warn(
      { inFlight, maxInFlight, shed: shedSinceWarning },
      'shedding load: requests are answered 503 OVERLOADED while this many are in flight (HTTP_MAX_IN_FLIGHT)',
    )
    lastWarning = now
    shedSinceWarning = 0
  }

  const counted = (request: FastifyRequest) => request.routeOptions.config.shed !== false

  app.addHook('onRequest', async (request, reply) => {
    if (maxInFlight === 0 || !counted(request)) return
    if (inFlight >= maxInFlight) {
      metrics.httpShed.inc({ route: request.routeOptions.url ?? '(no route)' })
      warn()
      reply.header('retry-after', retryAfter)
      const problem = problemFor(
        new AppError(
          'OVERLOADED',
          `the server is handling ${inFlight} requests, its limit (HTTP_MAX_IN_FLIGHT); nothing was done: send it again after ${retryAfter} s`,
          { details: { inFlight, maxInFlight } },
        ),
        request.url.slice(0, 300),
      )
      return sendProblem(reply, problem)
    }
    inFlight++
    metrics.httpInFlight.set(inFlight)
    // 'close' comes once the response is sent, or when the client went away before it was.
    reply.raw.once('close', () => {
      inFlight--
      metrics.httpInFlight.set(inFlight)
    })
  })
}
