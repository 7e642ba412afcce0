import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { JOURNEY_GROUPS } from '../audit/lag.ts'
import { auditSettings } from '../audit/settings.ts'
import { notFound } from '../platform/errors.ts'
import { documentRoute, problemResponses } from '../platform/http/openapi.ts'
import type { ServiceModule } from '../platform/module.ts'
import { maskSealed } from '../platform/personal-data/personal-data.ts'
import { readJourney } from './journey.ts'
import { type Overview, overviewSource } from './overview.ts'
import { startRateSampler } from './rates.ts'
import { topicsSource } from './topics.ts'

/**
 * The live dashboard at `/dashboard`, served by the process itself: a page of plain ES modules and
 * uPlot (no build step), and the JSON it reads. The overview streams as server-sent events, one
 * snapshot a second; the journey, topics and dead-letter views ask when opened. Everything comes
 * from this process's metrics registry and the tables of its database, so the embedded default
 * needs no Prometheus, and the topics' offsets and groups from the transport (on Kafka, the brokers).
 *
 * The page and its files are public (they hold no data); every `/api/dashboard` route is an
 * operator's, like the other operator routes, and the page says how to sign in with a token.
 */

const here = dirname(new URL(import.meta.url).pathname)
const uplotDist = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist')

/** What `/dashboard/<name>` serves: a fixed list, so no path from a request reaches the file system. */
const ASSETS: Record<string, { file: string; type: string }> = {
  'app.js': { file: join(here, 'public', 'app.js'), type: 'text/javascript' },
  'api.js': { file: join(here, 'public', 'api.js'), type: 'text/javascript' },
  'views.js': { file: join(here, 'public', 'views.js'), type: 'text/javascript' },
  'dead-letters.js': { file: join(here, 'public', 'dead-letters.js'), type: 'text/javascript' },
  'style.css': { file: join(here, 'public', 'style.css'), type: 'text/css' },
  'uplot.js': { file: join(uplotDist, 'uPlot.esm.js'), type: 'text/javascript' },
  'uplot.css': { file: join(uplotDist, 'uPlot.min.css'), type: 'text/css' },
}
const INDEX = join(here, 'public', 'index.html')

const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"

const orderIdParams = z.object({
  id: z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters').describe('The order id'),
})
const overviewQuery = z.object({
  history: z.enum(['true', 'false']).optional().describe('Include the last five minutes of rates'),
})
const assetParams = z.object({ asset: z.string().max(100) })

/** How often the stream sends a snapshot. */
const STREAM_INTERVAL_MS = 1_000

export function dashboardModule(): ServiceModule {
  return {
    name: 'dashboard',
    settings: [auditSettings],
    async start(context) {
      const topics = topicsSource(context.transport, context.db)
      const rates = startRateSampler(context.db, context.metrics)
      const overviews = overviewSource({
        db: context.db,
        topics,
        rates,
        transport: context.transport.kind,
        stuckAfterMs: context.settings.get(auditSettings).stuckAfterMs,
        clock: context.clock,
      })
      const streams = new Set<() => void>()
      const files = new Map<string, Promise<Buffer>>()
      const fileOf = (path: string) => {
        let content = files.get(path)
        if (!content) {
          content = readFile(path)
          files.set(path, content)
          content.catch(() => files.delete(path))
        }
        return content
      }
      // The inbox names the consumer groups as the services do; with a topic prefix, the prefixed
      // names are looked up too.
      const journeyGroups = async () => {
        const known = await topics.read().then(
          (view) => view.groups.map((g) => g.group),
          () => [],
        )
        const names = [...new Set([...JOURNEY_GROUPS, ...known])]
        const prefix = context.platform.topicPrefix
        return prefix ? [...names, ...names.map((n) => `${prefix}${n}`)] : names
      }

      const routes: FastifyPluginAsync = async (plugin) => {
        const app = plugin.withTypeProvider<ZodTypeProvider>()
        // Open streams end first, or the server's close would wait for them.
        app.addHook('preClose', async () => {
          for (const end of [...streams]) end()
        })

        app.get('/dashboard', { schema: { hide: true }, config: { auth: 'public' } }, async (_request, reply) =>
          reply
            .type('text/html; charset=utf-8')
            .header('content-security-policy', CONTENT_SECURITY_POLICY)
            .header('cache-control', 'no-cache')
            .send(await fileOf(INDEX)),
        )
        app.get(
          '/dashboard/:asset',
          { schema: { hide: true, params: assetParams }, config: { auth: 'public' } },
          async (request, reply) => {
            const asset = Object.hasOwn(ASSETS, request.params.asset) ? ASSETS[request.params.asset] : undefined
            if (!asset) throw notFound('dashboard file', request.params.asset, 'no such dashboard file')
            return reply
              .type(`${asset.type}; charset=utf-8`)
              .header('cache-control', 'no-cache')
              .send(await fileOf(asset.file))
          },
        )

        app.get(
          '/api/dashboard/overview',
          {
            schema: {
              summary: 'The dashboard overview: rates, lag, dead letters, outbox, orders and sagas, stuck orders',
              description:
                'One snapshot, built at most once a second: orders/s and events/s (the event store) and messages/s per topic (this process’s metrics), consumer lag per group and partition, open dead letters per topic, group and reason, parked keys, the outbox backlog and the age of its oldest row, orders by status, sagas by step, the auditor’s stuck orders (every 10 s) and the latest orders. `GET /api/dashboard/stream` sends the same as server-sent events.',
              operationId: 'dashboardOverview',
              tags: ['operations'],
              querystring: overviewQuery,
              response: { 200: z.looseObject({ at: z.string() }), 503: problemResponses[503] },
            },
            config: { auth: 'operator', swaggerTransform: documentRoute() },
          },
          async (request) =>
            (await overviews.read({ history: request.query.history === 'true' })) as Overview & Record<string, unknown>,
        )

        app.get(
          '/api/dashboard/stream',
          // Hidden from the OpenAPI document: a stream that does not end is no operation to fuzz.
          { schema: { hide: true }, config: { auth: 'operator' } },
          async (request, reply) => {
            reply.hijack()
            const raw = reply.raw
            raw.writeHead(200, {
              'content-type': 'text/event-stream; charset=utf-8',
              'cache-control': 'no-cache, no-transform',
              connection: 'keep-alive',
              'x-accel-buffering': 'no',
            })
            raw.write(`retry: 2000\n\n`)
            let first = true
            let busy = false
            const send = async () => {
              if (busy || raw.writableEnded) return
              busy = true
              try {
                const overview = await overviews.read({ history: first })
                first = false
                if (!raw.writableEnded) raw.write(`event: overview\ndata: ${JSON.stringify(overview)}\n\n`)
              } catch (error) {
                const message = error instanceof Error ? error.message : String(error)
                if (!raw.writableEnded) raw.write(`event: problem\ndata: ${JSON.stringify({ message })}\n\n`)
              } finally {
                busy = false
              }
            }
            const timer = setInterval(() => void send(), STREAM_INTERVAL_MS)
            const end = () => {
              clearInterval(timer)
              streams.delete(end)
              if (!raw.writableEnded) raw.end()
            }
            streams.add(end)
            request.raw.once('close', end)
            raw.once('close', end)
            void send()
          },
        )

        app.get(
          '/api/dashboard/orders/:id/journey',
          {
            schema: {
              summary: 'One order’s journey on one timeline',
              description:
                'Every event of the order’s streams, each message it became (outbox: published or not, when; partition and offset on the embedded log), which consumer group handled each (inbox), the saga’s state, history and deadlines, pending timers, dead letters and parked messages of its key, the requests that started it and the trace ids. 404 when nothing is known about the id.',
              operationId: 'dashboardJourney',
              tags: ['operations'],
              params: orderIdParams,
              response: {
                200: z.looseObject({ orderId: z.string(), found: z.boolean() }),
                404: problemResponses[404],
              },
            },
            config: { auth: 'operator', swaggerTransform: documentRoute() },
          },
          async (request) => {
            const journey = await readJourney(context.db, request.params.id, await journeyGroups())
            if (!journey.found)
              throw notFound('order', request.params.id, `nothing is known about order ${request.params.id}`)
            // Personal fields show as "[sealed]", or "[erased]" once their customer was erased.
            return (await maskSealed(journey, context.personalData)) as typeof journey & Record<string, unknown>
          },
        )

        app.get(
          '/api/dashboard/topics',
          {
            schema: {
              summary: 'Topics and consumer groups: partitions, offsets, lag, members, dead-letter depth',
              description:
                'Each topic with its partitions’ end offsets, its lag over the groups that read it, the records on its dead-letter topic and its open dead letters and parked keys; each consumer group with its committed offset and lag per partition, and its members where the transport knows them (Kafka). Read at most every 5 s from Kafka, every second from the embedded log.',
              operationId: 'dashboardTopics',
              tags: ['operations'],
              response: { 200: z.looseObject({ transport: z.string() }), 503: problemResponses[503] },
            },
            config: { auth: 'operator', swaggerTransform: documentRoute() },
          },
          async () => (await topics.read()) as Awaited<ReturnType<typeof topics.read>> & Record<string, unknown>,
        )
      }
      return {
        routes,
        async stop() {
          for (const end of [...streams]) end()
          rates.stop()
        },
      }
    },
  }
}
