import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { documentRoute, problemResponses } from '../platform/http/openapi.ts'
import type { HealthCheck, HealthNote } from '../platform/http/server.ts'
import type { ServiceModule } from '../platform/module.ts'
import { type AuditReport, formatAuditReport, runAudit } from './audit.ts'
import { type DeadLetterSource, describeDeadLetters, indexedDeadLetters } from './dead-letters.ts'
import type { LagSource } from './lag.ts'
import { auditSettings } from './settings.ts'

/**
 * The invariant auditor in the product: `GET /api/audit` (JSON, or `?format=table` for people) and
 * `npm run orderflow -- audit` (src/audit/cli.ts). See audit.ts for what it checks.
 */

/** How long readiness reuses a dead-letter count: probes come every few seconds. */
const DEAD_LETTER_HEALTH_TTL_MS = 10_000
const DEAD_LETTER_HEALTH_TIMEOUT_MS = 1_500

/**
 * Readiness shows open dead letters (counts per topic, to operators) without turning false: the
 * service still takes and processes orders; the dead letters need a person, not a restart or less
 * traffic. The audit is where they fail a check.
 */
export function deadLetterHealth(source: DeadLetterSource): HealthCheck {
  let last: { at: number; result: Promise<HealthNote | undefined> } | undefined
  const count = async (): Promise<HealthNote | undefined> => {
    let timer: NodeJS.Timeout | undefined
    try {
      const counts = await Promise.race([
        source({ reasons: false }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer in time')), DEAD_LETTER_HEALTH_TIMEOUT_MS)
        }),
      ])
      if (counts.length === 0) return undefined
      const perTopic: Record<string, number> = {}
      for (const c of counts) perTopic[`${c.topic}-dlq`] = (perTopic[`${c.topic}-dlq`] ?? 0) + c.count
      const total = Object.values(perTopic).reduce((a, b) => a + b, 0)
      return {
        warning: `${total} open dead letter(s): ${describeDeadLetters(counts).replaceAll(' *', '')} (GET /api/audit)`,
        details: { deadLetters: perTopic },
      }
    } catch (error) {
      return { warning: `dead letters could not be counted: ${(error as Error).message}` }
    } finally {
      clearTimeout(timer)
    }
  }
  return {
    name: 'dead-letters',
    check() {
      const now = performance.now()
      if (!last || now - last.at > DEAD_LETTER_HEALTH_TTL_MS) last = { at: now, result: count() }
      return last.result
    },
  }
}

const auditQuery = z.object({
  stuckAfterMs: z.coerce
    .number({ error: 'must be a whole number of milliseconds' })
    .int('must be a whole number of milliseconds')
    .min(0, 'must not be negative')
    // A threshold further back than any date the database holds would make the cut-off invalid.
    .max(10 * 365 * 24 * 3600 * 1000, 'must be at most ten years (315360000000 ms)')
    .optional()
    .describe('Orders younger than this are not expected to be finished (default AUDIT_STUCK_AFTER_MS)'),
  format: z.enum(['json', 'table']).default('json'),
})

const auditReportView = z.looseObject({
  ok: z.boolean(),
  checkedAt: z.string(),
  checks: z.array(z.object({ name: z.string(), ok: z.boolean(), summary: z.string() })),
})

export function auditModule(): ServiceModule {
  return {
    name: 'audit',
    settings: [auditSettings],
    async start(context) {
      const lag: LagSource = (groups) => context.transport.groupLag(groups)
      const deadLetters = indexedDeadLetters(context.db)
      const routes: FastifyPluginAsync = async (plugin) => {
        const app = plugin.withTypeProvider<ZodTypeProvider>()
        app.get(
          '/api/audit',
          {
            schema: {
              summary: 'Check the invariants of the order journey',
              description:
                'Every order older than the threshold is DELIVERED or CANCELLED (else listed as stuck with its step and age); no order is captured twice; captured − refunded equals the total of delivered orders; the outbox is drained; consumer lag is 0; no dead letter is open (listed per topic and reason).',
              operationId: 'audit',
              tags: ['operations'],
              querystring: auditQuery,
              response: { 200: auditReportView, 400: problemResponses[400], 503: problemResponses[503] },
            },
            config: { auth: 'operator', swaggerTransform: documentRoute() },
          },
          async (request, reply) => {
            const report = await runAudit(context.db, {
              stuckAfterMs: request.query.stuckAfterMs ?? context.settings.get(auditSettings).stuckAfterMs,
              lag,
              deadLetters,
              now: context.clock(),
            })
            if (request.query.format === 'table') {
              // Plain text for people: past the JSON response schema on purpose.
              return reply
                .type('text/plain; charset=utf-8')
                .serializer((payload: unknown) => String(payload))
                .send(formatAuditReport(report) as never)
            }
            return report as AuditReport & Record<string, unknown>
          },
        )
      }
      return { routes, health: [deadLetterHealth(deadLetters)] }
    },
  }
}
