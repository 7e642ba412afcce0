import { PassThrough } from 'node:stream'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { documentRoute, problemResponses } from '../../platform/http/openapi.ts'
import { clientOf } from '../../platform/http/request.ts'
import type { DeadLetterConsole } from '../application/console.ts'

/**
 * The dead-letter console's API, operators only: list (cursor pages) and show, redrive one (to the
 * consumer that failed it, or to its original topic), redrive a selection (a dry run says how many
 * would go; a rate cap; `Accept: application/x-ndjson` streams the progress, and closing the
 * request stops it), discard one with a comment, and the log of every action.
 */

const tags = ['dead letters']

/** Who acts, as a client says it when authentication is off (`npm run orderflow -- dlq` sends user@host). */
export const OPERATOR_HEADER = 'x-orderflow-operator'

/**
 * Who an action is recorded as: the token's subject when authentication is on; otherwise what the
 * client says in OPERATOR_HEADER, marked as unverified, or anonymous.
 */
function actorOf(request: FastifyRequest): string {
  if (request.principal) return clientOf(request)
  const said = request.headers[OPERATOR_HEADER]
  const name = typeof said === 'string' ? said.replace(/[^\w.@:-]/g, '').slice(0, 100) : ''
  return name ? `${name} (unauthenticated)` : 'anonymous'
}
const text = (what: string) =>
  z.string().min(1, `must not be empty`).max(500, 'must be at most 500 characters').describe(what)

const filter = {
  topic: text('Only those consumed from this topic').optional(),
  group: text('Only those of this consumer group').optional(),
  reason: text('Only those with this reason (POISON_MESSAGE, REJECTED, RETRIES_EXHAUSTED, …)').optional(),
  key: text('Only those of this message key (an order id for order topics)').optional(),
}

const listQuery = z.object({
  ...filter,
  state: z.enum(['open', 'redriven', 'discarded', 'all']).default('open').describe('Default open'),
  limit: z.coerce
    .number()
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(500, 'must be at most 500')
    .default(50),
  cursor: z.string().max(200, 'must be at most 200 characters').optional().describe('nextCursor of the previous page'),
})

const idParams = z.object({ id: z.string().regex(/^\d{1,18}$/, 'must be a dead letter id (digits)') })

const summary = z.object({
  id: z.string(),
  topic: z.string(),
  group: z.string(),
  key: z.string(),
  eventId: z.string().nullable(),
  reason: z.string(),
  attempts: z.number(),
  failedAt: z.string(),
  state: z.enum(['open', 'redriven', 'discarded']),
  errorMessage: z.string(),
  parkedMessages: z.number().describe('Messages of its key parked behind it'),
  dlq: z.object({ topic: z.string(), partition: z.number().nullable(), offset: z.string().nullable() }),
})

const detail = summary.extend({
  error: z.object({ message: z.string(), code: z.string().optional(), stack: z.string().optional() }),
  headers: z.record(z.string(), z.string()),
  payload: z.string(),
  payloadTruncated: z.boolean(),
  payloadBytes: z.number(),
  resolvedAt: z.string().nullable(),
  resolvedBy: z.string().nullable(),
  resolution: z.record(z.string(), z.unknown()).nullable(),
  parked: z.array(
    z.object({
      seq: z.string(),
      topic: z.string(),
      partition: z.number(),
      offset: z.string(),
      eventId: z.string().nullable(),
      parkedAt: z.string(),
    }),
  ),
})

const action = z.object({
  id: z.string(),
  at: z.string(),
  actor: z.string(),
  action: z.enum(['redrive', 'discard']),
  target: z.enum(['consumer', 'topic']).nullable(),
  selection: z.record(z.string(), z.unknown()),
  dryRun: z.boolean(),
  matched: z.number(),
  done: z.number(),
  comment: z.string().nullable(),
  status: z.enum(['running', 'completed', 'stopped', 'failed']),
})

const target = z
  .enum(['consumer', 'topic'])
  .default('consumer')
  .describe('consumer: only the consumer group that failed it (default); topic: every group of the original topic')

const redriveBody = z.object({ to: target }).strict().optional()

const bulkBody = z
  .object({
    ...filter,
    ids: z
      .array(z.string().regex(/^\d{1,18}$/, 'must be a dead letter id (digits)'))
      .min(1)
      .max(10_000)
      .optional(),
    to: target,
    dryRun: z.boolean().default(false).describe('Only count what would be redriven'),
    ratePerSecond: z
      .number()
      .positive('must be positive')
      .max(10_000)
      .default(50)
      .describe('At most this many per second'),
  })
  .strict()
  .refine(
    (b) =>
      b.ids !== undefined ||
      b.topic !== undefined ||
      b.group !== undefined ||
      b.reason !== undefined ||
      b.key !== undefined,
    {
      message: 'say what to redrive: ids, or at least one of topic, group, reason, key',
      path: ['ids'],
    },
  )

const discardBody = z
  .object({ comment: z.string().trim().min(1, 'say why it is discarded').max(2000, 'must be at most 2000 characters') })
  .strict()

const responses = { 400: problemResponses[400], 404: problemResponses[404], 503: problemResponses[503] }

export function deadLetterRoutes(console: DeadLetterConsole): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    const config = { auth: 'operator' as const, swaggerTransform: documentRoute() }

    app.get(
      '/api/dead-letters',
      {
        schema: {
          summary: 'Dead letters, newest first (cursor pages)',
          operationId: 'listDeadLetters',
          tags,
          querystring: listQuery,
          response: { 200: z.object({ items: z.array(summary), nextCursor: z.string().nullable() }), ...responses },
        },
        config,
      },
      (request) => console.list(request.query),
    )

    app.get(
      '/api/dead-letters/summary',
      {
        schema: {
          summary: 'Open dead letters by topic, group and reason, and the parked keys',
          operationId: 'deadLetterSummary',
          tags,
          response: {
            200: z.object({
              open: z.array(z.object({ topic: z.string(), group: z.string(), reason: z.string(), count: z.number() })),
              parkedKeys: z.array(
                z.object({
                  group: z.string(),
                  key: z.string(),
                  topic: z.string(),
                  deadLetterId: z.string(),
                  messages: z.number(),
                  parkedAt: z.string(),
                }),
              ),
            }),
            503: problemResponses[503],
          },
        },
        config,
      },
      () => console.summary(),
    )

    app.get(
      '/api/dead-letters/actions',
      {
        schema: {
          summary: 'What operators did with dead letters, newest first',
          operationId: 'listDeadLetterActions',
          tags,
          querystring: z.object({
            limit: z.coerce
              .number()
              .int('must be a whole number')
              .min(1, 'must be at least 1')
              .max(500, 'must be at most 500')
              .default(50),
          }),
          response: {
            200: z.object({ items: z.array(action) }),
            400: problemResponses[400],
            503: problemResponses[503],
          },
        },
        config,
      },
      async (request) => ({ items: await console.actions(request.query.limit) }),
    )

    app.get(
      '/api/dead-letters/:id',
      {
        schema: {
          summary: 'One dead letter: payload, headers, error, stack, attempts and the messages parked behind it',
          operationId: 'getDeadLetter',
          tags,
          params: idParams,
          response: { 200: detail, ...responses },
        },
        config,
      },
      (request) => console.get(request.params.id),
    )

    app.post(
      '/api/dead-letters/:id/redrive',
      {
        schema: {
          summary: 'Redrive one dead letter',
          description:
            'Sends the message back on its original topic with its original key and headers: to the consumer group that failed it (default), or to every group of the topic. When its key was parked, the parked messages follow it in order. 409 when it is not open.',
          operationId: 'redriveDeadLetter',
          tags,
          params: idParams,
          body: redriveBody,
          response: { 200: z.object({ action, deadLetter: detail }), 409: problemResponses[409], ...responses },
        },
        config,
      },
      (request) => console.redrive(request.params.id, { to: request.body?.to ?? 'consumer', actor: actorOf(request) }),
    )

    app.post(
      '/api/dead-letters/redrive',
      {
        schema: {
          summary: 'Redrive a selection of open dead letters (ids, or a filter such as a reason)',
          description:
            'Oldest first, at most ratePerSecond. dryRun only counts. With Accept: application/x-ndjson the progress streams as one JSON line per step ({"matched","done"}, then {"action"}); closing the request stops the redrive (status stopped).',
          operationId: 'redriveDeadLetters',
          tags,
          body: bulkBody,
          response: { 200: action, ...responses },
        },
        config,
      },
      async (request, reply) => {
        const actor = actorOf(request)
        if (!(request.headers.accept ?? '').includes('application/x-ndjson')) {
          return console.redriveMany(request.body, { actor })
        }
        const stream = new PassThrough()
        const stop = new AbortController()
        reply.raw.on('close', () => {
          if (!reply.raw.writableFinished) stop.abort()
        })
        const line = (value: unknown) => stream.write(`${JSON.stringify(value)}\n`)
        void console
          .redriveMany(request.body, { actor, signal: stop.signal, onProgress: (progress) => line(progress) })
          .then(
            (done) => line({ action: done }),
            (error: Error) => line({ error: { message: error.message } }),
          )
          .finally(() => stream.end())
        return reply.type('application/x-ndjson').send(stream as never)
      },
    )

    app.post(
      '/api/dead-letters/:id/discard',
      {
        schema: {
          summary: 'Discard one dead letter, saying why',
          description:
            'Closes it without redriving; when its key was parked, the parked messages follow in order. 409 when it is not open.',
          operationId: 'discardDeadLetter',
          tags,
          params: idParams,
          body: discardBody,
          response: { 200: z.object({ action, deadLetter: detail }), 409: problemResponses[409], ...responses },
        },
        config,
      },
      (request) => console.discard(request.params.id, { comment: request.body.comment, actor: actorOf(request) }),
    )
  }
}
