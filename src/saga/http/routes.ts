import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { v7 as uuidv7 } from 'uuid'
import { z } from 'zod'
import { AppError, notFound } from '../../platform/errors.ts'
import { documentRoute, problemResponses } from '../../platform/http/openapi.ts'
import { clientOf } from '../../platform/http/request.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import { SAGA_OPERATOR, type SagaProcessor } from '../application/saga-processor.ts'
import {
  type CreateOrderSagaState,
  createOrderSagaId,
  type SagaOperatorInput,
  SagaSteps,
} from '../domain/create-order-saga.ts'

/**
 * The saga, as operators look at it: `GET /api/orders/:id/saga` (status, step, attempt, deadlines
 * and history of one order's saga) and `GET /api/sagas?status=PARKED` (the sagas waiting for a
 * person, with their reasons); and as they act on a parked one: `POST /api/orders/:id/saga/resume`
 * (optionally `{ "step": "DISPATCH" }`, the step they expect to retry) and
 * `POST /api/orders/:id/saga/compensate` (optionally `{ "reason": "..." }`). Both are inputs of the
 * saga's workflow (OperatorResumed, OperatorCompensated) with the caller's subject, so the history
 * shows who did what and when; 409 when the saga is not in a state that allows it (the reason says
 * why), 404 when the order has no saga.
 */

const historyEntry = z.object({
  at: z.string(),
  direction: z.enum(['in', 'out']),
  type: z.string(),
  id: z.string().optional(),
  topic: z.string().optional(),
  step: z.string().optional(),
  detail: z.string().optional(),
  by: z.string().optional().describe("The operator's subject, for an operator's input"),
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
  inputParked: z
    .object({ deadLetterId: z.string(), messages: z.number().int(), since: z.string() })
    .nullable()
    .describe(
      "Set when one of the order's events was dead-lettered on its way to the saga: the saga's later events wait parked behind it until the dead letter is redriven or discarded (/api/dead-letters)",
    ),
})

/** A key parked in the saga's consumer group (per-key parking), as the views show it. */
type InputParked = { deadLetterId: string; messages: number; since: string } | null

const PARKED_INPUTS = `
  SELECT k.message_key AS order_id, k.dead_letter_id::text AS dead_letter_id, k.parked_at,
         (SELECT count(*) FROM parked_messages m WHERE m.group_id = k.group_id AND m.message_key = k.message_key)::text AS messages
    FROM parked_keys k WHERE k.group_id = $1 AND k.message_key = ANY($2::text[])`

async function parkedInputs(db: SqlDatabase, group: string, orderIds: string[]): Promise<Map<string, InputParked>> {
  const parked = new Map<string, InputParked>()
  if (orderIds.length === 0) return parked
  const { rows } = await db.query<{
    order_id: string
    dead_letter_id: string
    parked_at: Date | string
    messages: string
  }>(PARKED_INPUTS, [group, orderIds])
  for (const r of rows) {
    parked.set(r.order_id, {
      deadLetterId: r.dead_letter_id,
      messages: Number(r.messages),
      since: new Date(r.parked_at).toISOString(),
    })
  }
  return parked
}

export function toSagaView(
  orderId: string,
  state: CreateOrderSagaState,
  inputParked: InputParked = null,
): z.output<typeof sagaView> {
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
    inputParked,
  }
}

const sagaParams = z.object({ id: z.string().min(1).max(200, 'id must be at most 200 characters') })

const resumeBody = z
  .strictObject({
    step: z
      .enum(SagaSteps)
      .optional()
      .describe('The step to retry; it must be the one the saga waits at (default: that one)'),
  })
  .nullish()

const compensateBody = z
  .strictObject({
    reason: z
      .string()
      .trim()
      .min(1, 'must not be empty')
      .max(500, 'must be at most 500 characters')
      .optional()
      .describe('Why, sent with the refund and the rejection (default: "compensated by operator <subject>")'),
  })
  .nullish()

const sagaListQuery = z.object({
  status: z
    .enum(['RUNNING', 'COMPENSATING', 'COMPLETED', 'PARKED'])
    .optional()
    .describe('Only sagas in this status (PARKED: what waits for an operator); every saga when omitted'),
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
  inputParked: sagaView.shape.inputParked,
})

export function sagaRoutes(deps: {
  processor: SagaProcessor
  db: SqlDatabase
  mode: 'orchestration' | 'choreography'
  /** The saga's consumer group, whose parked keys show as `inputParked`. */
  group: string
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
          params: sagaParams,
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
        const parked = await parkedInputs(deps.db, deps.group, [request.params.id])
        return toSagaView(request.params.id, state, parked.get(request.params.id) ?? null)
      },
    )

    /** Hands an operator's input to the saga; the processor checks it under the saga's lock. */
    const operate = async (input: SagaOperatorInput) => {
      requireOrchestration()
      const { state } = await deps.processor.handle(input, {
        consumer: SAGA_OPERATOR,
        messageId: input.eventId,
        correlationId: input.orderId,
      })
      if (!state) throw notFound('saga', input.orderId, `no saga for order ${input.orderId}`)
      return toSagaView(input.orderId, state)
    }
    const operatorResponses = {
      200: sagaView,
      400: problemResponses[400],
      404: problemResponses[404],
      409: problemResponses[409],
      503: problemResponses[503],
    }

    app.post(
      '/api/orders/:id/saga/resume',
      {
        schema: {
          summary: 'Resume a parked saga',
          description:
            'Forward: the step whose answer is missing is sent again, with its whole retry budget; while cancelling: the next compensation. Recorded in the history with the operator.',
          operationId: 'resumeOrderSaga',
          tags,
          params: sagaParams,
          body: resumeBody,
          response: operatorResponses,
        },
        config: { auth: 'operator', swaggerTransform: documentRoute() },
      },
      (request) =>
        operate({
          eventType: 'OperatorResumed',
          eventId: uuidv7(),
          orderId: request.params.id,
          operator: clientOf(request),
          ...(request.body?.step ? { step: request.body.step } : {}),
        }),
    )

    app.post(
      '/api/orders/:id/saga/compensate',
      {
        schema: {
          summary: 'Compensate a parked saga: refund the payment and cancel the order',
          description:
            'Refused (409) once goods left for an order that is not cancelled. For a cancelled order whose goods left, it closes the saga as CANCELLED. Recorded in the history with the operator.',
          operationId: 'compensateOrderSaga',
          tags,
          params: sagaParams,
          body: compensateBody,
          response: operatorResponses,
        },
        config: { auth: 'operator', swaggerTransform: documentRoute() },
      },
      (request) =>
        operate({
          eventType: 'OperatorCompensated',
          eventId: uuidv7(),
          orderId: request.params.id,
          operator: clientOf(request),
          ...(request.body?.reason ? { reason: request.body.reason } : {}),
        }),
    )

    app.get(
      '/api/sagas',
      {
        schema: {
          summary: 'Sagas, newest first; ?status=PARKED for what waits for an operator',
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
            WHERE $1::text IS NULL OR status = $1 ORDER BY updated_at DESC LIMIT $2`,
          [request.query.status ?? null, request.query.limit],
        )
        const parked = await parkedInputs(
          deps.db,
          deps.group,
          rows.map((r) => r.order_id),
        )
        return {
          sagas: rows.map((r) => ({
            inputParked: parked.get(r.order_id) ?? null,
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
