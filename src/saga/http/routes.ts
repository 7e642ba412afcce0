import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { AppError, notFound } from '../../platform/errors.ts'
import { documentRoute, problemResponses } from '../../platform/http/openapi.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import type { SagaProcessor } from '../application/saga-processor.ts'
import { type CreateOrderSagaState, createOrderSagaId } from '../domain/create-order-saga.ts'

/**
 * The saga, as operators look at it: `GET /api/orders/:id/saga` (status, step, attempt, deadlines
 * and history of one order's saga) and `GET /api/sagas?status=PARKED` (the sagas waiting for a
 * person, with their reasons).
 */

const historyEntry = z.object({
  at: z.string(),
  direction: z.enum(['in', 'out']),
  type: z.string(),
  id: z.string().optional(),
  topic: z.string().optional(),
  step: z.string().optional(),
  detail: z.string().optional(),
})

const sagaView = z.object({
  sagaId: z.string(),
  orderId: z.string(),
  status: z.enum(['NOT_STARTED', 'RUNNING', 'COMPENSATING', 'COMPLETED', 'PARKED']),
  step: z.string().nullable().describe('The current step, or the last one once the saga ended'),
  attempt: z.number().int().describe('How many times the current step has been sent'),
  payment: z.string().describe('What the saga knows of the payment'),
  outcome: z.string().nullable().describe('DELIVERED or CANCELLED once completed'),
  compensationReason: z.string().nullable(),
  parkedReason: z.string().nullable(),
  deadlines: z.array(z.object({ step: z.string(), attempt: z.number().int(), at: z.string() })),
  history: z.array(historyEntry),
  startedAt: z.string().nullable(),
  updatedAt: z.string().nullable(),
})

export function toSagaView(orderId: string, state: CreateOrderSagaState): z.output<typeof sagaView> {
  return {
    sagaId: createOrderSagaId(orderId),
    orderId,
    status: state.status,
    step: state.step,
    attempt: state.attempt,
    payment: state.payment,
    outcome: state.outcome,
    compensationReason: state.compensationReason,
    parkedReason: state.parkedReason,
    deadlines: state.deadlines,
    history: state.history,
    startedAt: state.startedAt,
    updatedAt: state.updatedAt,
  }
}

const sagaListQuery = z.object({
  status: z.enum(['RUNNING', 'COMPENSATING', 'COMPLETED', 'PARKED']).default('PARKED'),
  limit: z.coerce
    .number({ error: 'must be a whole number from 1 to 100' })
    .int('must be a whole number from 1 to 100')
    .min(1, 'must be a whole number from 1 to 100')
    .max(100, 'must be a whole number from 1 to 100')
    .default(50),
})

const sagaSummary = z.object({
  orderId: z.string(),
  status: z.string(),
  step: z.string().nullable(),
  attempt: z.number().int(),
  outcome: z.string().nullable(),
  parkedReason: z.string().nullable(),
  updatedAt: z.string(),
})

export function sagaRoutes(deps: {
  processor: SagaProcessor
  db: SqlDatabase
  mode: 'orchestration' | 'choreography'
}): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    const tags = ['sagas']
    const requireOrchestration = () => {
      if (deps.mode === 'choreography') {
        throw new AppError('NOT_FOUND', 'SAGA_MODE is choreography: no Create-Order saga runs', {
          details: { resource: 'saga' },
        })
      }
    }

    app.get(
      '/api/orders/:id/saga',
      {
        schema: {
          summary: "An order's Create-Order saga",
          description:
            'Its status, current step and attempt, pending deadlines and the history of what it received and sent.',
          operationId: 'getOrderSaga',
          tags,
          params: z.object({ id: z.string().min(1).max(200, 'id must be at most 200 characters') }),
          response: {
            200: sagaView,
            400: problemResponses[400],
            404: problemResponses[404],
            503: problemResponses[503],
          },
        },
        config: { auth: 'operator', swaggerTransform: documentRoute() },
      },
      async (request) => {
        requireOrchestration()
        const state = await deps.processor.get(request.params.id)
        if (!state) throw notFound('saga', request.params.id, `no saga for order ${request.params.id}`)
        return toSagaView(request.params.id, state)
      },
    )

    app.get(
      '/api/sagas',
      {
        schema: {
          summary: 'Sagas by status (PARKED by default): what waits for an operator',
          operationId: 'listSagas',
          tags,
          querystring: sagaListQuery,
          response: {
            200: z.object({ sagas: z.array(sagaSummary) }),
            400: problemResponses[400],
            503: problemResponses[503],
          },
        },
        config: { auth: 'operator', swaggerTransform: documentRoute() },
      },
      async (request) => {
        requireOrchestration()
        const { rows } = await deps.db.query<{
          order_id: string
          status: string
          step: string | null
          attempt: number
          outcome: string | null
          parked_reason: string | null
          updated_at: Date | string
        }>(
          `SELECT order_id, status, step, attempt, outcome, parked_reason, updated_at FROM sagas
            WHERE status = $1 ORDER BY updated_at DESC LIMIT $2`,
          [request.query.status, request.query.limit],
        )
        return {
          sagas: rows.map((r) => ({
            orderId: r.order_id,
            status: r.status,
            step: r.step,
            attempt: r.attempt,
            outcome: r.outcome,
            parkedReason: r.parked_reason,
            updatedAt: new Date(r.updated_at).toISOString(),
          })),
        }
      },
    )
  }
}
