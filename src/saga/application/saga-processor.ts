import { v5 as uuidv5 } from 'uuid'
import { DELIVERY_COMMANDS_TOPIC, encodeDeliveryCommand } from '../../contracts/delivery/commands.ts'
import { DISPATCH_COMMANDS_TOPIC, encodeDispatchCommand } from '../../contracts/dispatch/commands.ts'
import { HeaderNames } from '../../contracts/envelope.ts'
import { ORDER_COMMANDS_TOPIC } from '../../contracts/order/commands.ts'
import { encodePaymentCommand, PAYMENT_COMMANDS_TOPIC } from '../../contracts/payment/commands.ts'
import { AppError, notFound } from '../../platform/errors.ts'
import { cancelTimer, scheduleTimer } from '../../platform/es/scheduler.ts'
import type { Workflow } from '../../platform/es/workflow.ts'
import { inboxInsert } from '../../platform/inbox/inbox.ts'
import { inInsertionOrder, outboxInsert, outboxRows } from '../../platform/outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor } from '../../platform/sql/port.ts'
import { EVENT_ID_HEADER } from '../../platform/transport/instrumented.ts'
import type { OutgoingMessage } from '../../platform/transport/port.ts'
import {
  type CreateOrderSagaCommand,
  type CreateOrderSagaInput,
  type CreateOrderSagaOutput,
  type CreateOrderSagaState,
  createOrderSagaId,
  operatorRefusal,
  type SagaStepTimedOut,
} from '../domain/create-order-saga.ts'

/**
 * Runs the Create-Order saga (a pure workflow) against storage: one input = one transaction that
 *
 *   marks the input in the inbox → locks the saga's row → decide → evolve (input, then outputs)
 *   → Send: the command into the outbox; Schedule: the durable timer, whose clock starts when the
 *     step's commands are published; Complete/Park: timer removed
 *   → saves the state
 *
 * so a command leaves exactly when the decision that sent it is stored, and a redelivered input is
 * skipped. The row lock serialises inputs for one order that arrive on different topics at once.
 *
 * Command ids are deterministic: uuid v5 of the saga id, the step, the attempt and the command, so
 * a step decided again (after a crash before commit) sends the same command id, and the receivers'
 * inboxes drop the repeat; a re-send after a timeout is a new attempt, with a new id, and the
 * receivers' deciders treat it as the redelivery it is.
 *
 * Operators' inputs (resume, compensate) go the same way, with the request's id in the inbox; one
 * that does not apply to the saga as it is under the lock throws (NOT_FOUND, INVALID_TRANSITION)
 * and changes nothing.
 */

/** The inbox consumer of operators' requests. */
export const SAGA_OPERATOR = 'saga-operator'

export const SAGA_TIMEOUT_TIMER = 'saga-timeout'

/** Fixed namespace for the saga's command ids (uuid v5). */
const COMMAND_ID_NAMESPACE = '5b0c6f38-0c1f-4d5e-9a57-8d8f2f0e6a41'

export type SagaWorkflow = Workflow<
  CreateOrderSagaInput,
  CreateOrderSagaState,
  CreateOrderSagaCommand,
  SagaStepTimedOut
>

export interface SagaProcessorDeps {
  db: SqlDatabase
  workflow: SagaWorkflow
  onCommitted: () => void
  /** A timeout of `delayMs` was committed: wake the timer (it runs from its commands' publish). */
  onScheduled: (delayMs: number) => void
  /** The saga parked or completed (metrics, logs), after commit. */
  onEnded?: (state: CreateOrderSagaState) => void
  clock?: () => Date
}

export interface SagaInputMetadata {
  /** The inbox entry: who handled which message (event id, timer id + attempt). */
  consumer: string
  messageId: string
  correlationId?: string
  causationId?: string
  traceparent?: string
}

export interface SagaProcessor {
  handle(
    input: CreateOrderSagaInput,
    metadata: SagaInputMetadata,
  ): Promise<{ outputs: CreateOrderSagaOutput[]; state: CreateOrderSagaState | null; duplicate: boolean }>
  get(orderId: string): Promise<CreateOrderSagaState | null>
}

const orderIdOf = (input: CreateOrderSagaInput): string =>
  input.eventType === 'SagaStepTimedOut' ||
  input.eventType === 'OperatorResumed' ||
  input.eventType === 'OperatorCompensated'
    ? input.orderId
    : 'orderId' in input && typeof input.orderId === 'string'
      ? input.orderId
      : input.aggregateId

export const sagaTimerId = (orderId: string) => `${SAGA_TIMEOUT_TIMER}:${orderId}`

/**
 * Records the message in the consumer's inbox and loads the saga under its row lock, in one round
 * trip: `fresh` is false when the message was handled before. The inbox comes first (the lateral
 * join runs after its outer side), as it did when they were two statements, so two copies of a
 * message queue on the inbox key and never hold the row lock in opposite orders.
 */
async function claim(tx: SqlExecutor, inbox: { consumer: string; messageId: string }, sagaId: string) {
  const { rows } = await tx.query<{ fresh: boolean; state: CreateOrderSagaState | null; version: number | null }>(
    `WITH handled AS (${inboxInsert(1)})
     SELECT i.fresh, s.state, s.version
       FROM (SELECT count(*) > 0 AS fresh FROM handled) AS i
       LEFT JOIN LATERAL (SELECT state, version FROM sagas WHERE id = $3 FOR UPDATE) AS s ON true`,
    [inbox.consumer, inbox.messageId, sagaId],
  )
  const row = rows[0]
  return {
    fresh: row?.fresh === true,
    saga: row?.state && row.version !== null ? { state: row.state, version: row.version } : null,
  }
}

export function createSagaProcessor(deps: SagaProcessorDeps): SagaProcessor {
  const { db, workflow } = deps
  const clock = deps.clock ?? (() => new Date())

  const commandMessage = (
    command: CreateOrderSagaCommand,
    ids: { sagaId: string; step: string; attempt: number },
    metadata: SagaInputMetadata,
    now: string,
  ): OutgoingMessage => {
    const body = command.message
    const detail = body.commandType === 'ChangeOrderStatus' ? body.status : ''
    const commandId = uuidv5(
      `${ids.sagaId}/${ids.step}/${ids.attempt}/${body.commandType}/${detail}`,
      COMMAND_ID_NAMESPACE,
    )
    const envelope = {
      commandId,
      issuedOn: now,
      correlationId: metadata.correlationId ?? body.orderId,
      causationId: metadata.causationId ?? metadata.messageId,
    }
    let value: unknown
    switch (command.topic) {
      case PAYMENT_COMMANDS_TOPIC:
        value = encodePaymentCommand({ ...envelope, ...command.message } as Parameters<typeof encodePaymentCommand>[0])
        break
      case DISPATCH_COMMANDS_TOPIC:
        value = encodeDispatchCommand({ ...envelope, ...command.message } as Parameters<
          typeof encodeDispatchCommand
        >[0])
        break
      case DELIVERY_COMMANDS_TOPIC:
        value = encodeDeliveryCommand({ ...envelope, ...command.message } as Parameters<
          typeof encodeDeliveryCommand
        >[0])
        break
      case ORDER_COMMANDS_TOPIC:
        value = { ...envelope, ...command.message }
        break
      default:
        return assertNever(command)
    }
    return {
      topic: command.topic,
      key: command.key,
      value: JSON.stringify(value),
      headers: {
        [EVENT_ID_HEADER]: commandId,
        [HeaderNames.eventType]: body.commandType,
        [HeaderNames.contentType]: 'application/json',
        ...(metadata.traceparent ? { [HeaderNames.traceparent]: metadata.traceparent } : {}),
      },
    }
  }

  const run = async (tx: SqlExecutor, input: CreateOrderSagaInput, metadata: SagaInputMetadata) => {
    const nothing = (state: CreateOrderSagaState | null, duplicate: boolean) => ({
      outputs: [] as CreateOrderSagaOutput[],
      state,
      duplicate,
      delayMs: undefined as number | undefined,
      ended: false,
    })
    const orderId = orderIdOf(input)
    const sagaId = createOrderSagaId(orderId)
    const { fresh, saga: row } = await claim(tx, { consumer: metadata.consumer, messageId: metadata.messageId }, sagaId)
    if (!fresh) return nothing(row?.state ?? null, true)
    if (input.eventType === 'OperatorResumed' || input.eventType === 'OperatorCompensated') {
      // Checked under the row lock, so the answer holds for the state the decision is made on.
      if (!row) throw notFound('saga', orderId, `no saga for order ${orderId}`)
      const refusal = operatorRefusal(input, row.state)
      if (refusal !== null) {
        throw new AppError('INVALID_TRANSITION', refusal, {
          details: { sagaStatus: row.state.status, step: row.state.step },
        })
      }
    }
    // Only OrderCreated starts a saga; anything else for an order without one has nothing to move.
    if (!row && input.eventType !== 'OrderCreated') return nothing(null, false)
    const state = row?.state ?? workflow.initialState()
    const now = clock().toISOString()
    const context = { now }
    const outputs = workflow.decide(input, state, context)
    let next = workflow.evolve(state, input, context)
    for (const output of outputs) next = workflow.evolve(next, output, context)
    if (next === state) return nothing(state, false)

    // The step and attempt the commands belong to: the step this decision starts, or the current one.
    const scheduled = outputs.find((o) => o.kind === 'Schedule')
    const ids = {
      sagaId,
      step: scheduled?.kind === 'Schedule' ? scheduled.timeout.step : (state.step ?? 'START'),
      attempt: scheduled?.kind === 'Schedule' ? scheduled.timeout.attempt : state.attempt,
    }
    const messages: OutgoingMessage[] = []
    let timeout: { delayMs: number; payload: SagaStepTimedOut } | undefined
    let ended = false
    for (const output of outputs) {
      switch (output.kind) {
        case 'Send':
          messages.push(commandMessage(output.command, ids, metadata, now))
          break
        case 'Schedule':
          // The workflow says when from the app's clock; the timer keeps only the delay, which
          // the database counts from the publish of the step's commands (platform/es/scheduler.ts).
          timeout = { delayMs: Math.max(0, Date.parse(output.at) - Date.parse(now)), payload: output.timeout }
          break
        case 'Complete':
        case 'Park':
          await cancelTimer(tx, sagaTimerId(orderId))
          ended = true
          break
        default:
          assertNever(output)
      }
    }
    const version = (row?.version ?? 0) + 1
    // The saga's row and its commands' outbox rows in one statement (one round trip).
    const { rows: outboxRowIds } = await tx.query<{ id: string }>(
      `WITH saga AS (
         INSERT INTO sagas (id, order_id, status, step, attempt, outcome, parked_reason, next_deadline, version, state, started_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, step = EXCLUDED.step, attempt = EXCLUDED.attempt,
           outcome = EXCLUDED.outcome, parked_reason = EXCLUDED.parked_reason, next_deadline = EXCLUDED.next_deadline,
           version = EXCLUDED.version, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
         RETURNING 1
       ), rows AS (${outboxInsert(13)})
       SELECT id::text AS id FROM rows`,
      [
        sagaId,
        orderId,
        next.status,
        next.step,
        next.attempt,
        next.outcome,
        next.parkedReason,
        next.deadlines[0]?.at ?? null,
        version,
        JSON.stringify(next),
        next.startedAt ?? now,
        now,
        ...outboxRows(messages),
      ],
    )
    const outboxIds = inInsertionOrder(outboxRowIds)
    if (timeout) {
      await scheduleTimer(tx, {
        id: sagaTimerId(orderId),
        kind: SAGA_TIMEOUT_TIMER,
        delayMs: timeout.delayMs,
        payload: timeout.payload,
        // The relay publishes in id order: the last command out means the whole step is out.
        startsWhenPublished: outboxIds.at(-1),
      })
    }
    return { outputs, state: next, duplicate: false, delayMs: timeout?.delayMs, ended }
  }

  return {
    async handle(input, metadata) {
      const result = await db.transaction((tx) => run(tx, input, metadata))
      if (result.outputs.some((o) => o.kind === 'Send')) deps.onCommitted()
      if (result.delayMs !== undefined) deps.onScheduled(result.delayMs)
      if (result.ended && result.state) deps.onEnded?.(result.state)
      return { outputs: result.outputs, state: result.state, duplicate: result.duplicate }
    },
    async get(orderId) {
      const { rows } = await db.query<{ state: CreateOrderSagaState }>('SELECT state FROM sagas WHERE id = $1', [
        createOrderSagaId(orderId),
      ])
      return rows[0]?.state ?? null
    },
  }
}

function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`)
}
