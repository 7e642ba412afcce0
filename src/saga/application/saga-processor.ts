import { DELIVERY_COMMANDS_TOPIC, deliveryCommands } from '../../contracts/delivery/commands.ts'
import { DISPATCH_COMMANDS_TOPIC, dispatchCommands } from '../../contracts/dispatch/commands.ts'
import { ORDER_COMMANDS_TOPIC } from '../../contracts/order/commands.ts'
import { PAYMENT_COMMANDS_TOPIC, paymentCommands } from '../../contracts/payment/commands.ts'
import { AppError, notFound } from '../../platform/errors.ts'
import type { Workflow } from '../../platform/es/workflow.ts'
import {
  createWorkflowProcessor,
  type WorkflowInputMetadata,
  type WorkflowProcessorOptions,
} from '../../platform/es/workflow-processor.ts'
import type { MessageEnvelope, MessageRoute, MessageRouting } from '../../platform/es/workflow-routes.ts'
import type { WorkflowStateTable } from '../../platform/es/workflow-state-table.ts'
import type { Logger } from '../../platform/logger.ts'
import type { CommittedWrites } from '../../platform/outbox/outbox.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import {
  contextFromHeaders,
  failSpan,
  ORDER_ID_ATTRIBUTE,
  parentContext,
  traceHeadersOf,
  tracer,
  tracingEnabled,
} from '../../platform/tracing.ts'
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
 * The Create-Order saga on the platform's workflow processor (`platform/es/workflow-processor.ts`):
 * what is the saga's own is here, the processor does the rest. An input belongs to its order's saga
 * (one row of `sagas` per order, with the columns operators and the auditor query); only
 * OrderCreated starts one; each command goes to its service's command topic, encoded as that topic
 * says; the step timeouts are timers of kind `saga-timeout`.
 *
 * Command ids are uuid v5 of the saga id, the step, the attempt and the command, so a step decided
 * again (after a crash before commit) sends the same command id, and the receivers' inboxes drop the
 * repeat; a re-send after a timeout is a new attempt, with a new id, and the receivers' deciders
 * treat it as the redelivery it is.
 *
 * Operators' inputs (resume, compensate) go through `handle` with the request's id in the inbox;
 * one that does not apply to the saga as it is under the row lock throws (NOT_FOUND,
 * INVALID_TRANSITION) and changes nothing. The journey's events come a consumer batch at a time
 * (`handleBatch`: the batch's inbox entries and sagas, then its rows, commands and timers, one
 * statement each).
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
  onCommitted: (written?: CommittedWrites) => void
  /** A timeout of `delayMs` was committed: wake the timer (it runs from its commands' publish). */
  onScheduled: (delayMs: number) => void
  /** The saga parked or completed (metrics, logs), after commit. */
  onEnded?: (state: CreateOrderSagaState) => void
  clock?: () => Date
  logger?: Logger
}

/** The inbox entry (who handled which message: event id, timer id + attempt) and the trace. */
export type SagaInputMetadata = WorkflowInputMetadata

type SagaResult = { outputs: CreateOrderSagaOutput[]; state: CreateOrderSagaState | null; duplicate: boolean }

export interface SagaProcessor {
  handle(input: CreateOrderSagaInput, metadata: SagaInputMetadata): Promise<SagaResult>
  /** A consumer batch's events, in order, in the batch's transaction; throws to have them handled one at a time. */
  handleBatch(items: readonly { input: CreateOrderSagaInput; metadata: SagaInputMetadata }[]): Promise<SagaResult[]>
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

/** The `sagas` row: the state, and what operators and the auditor query by. */
export const sagaTable: WorkflowStateTable<CreateOrderSagaState> = {
  table: 'sagas',
  rowId: createOrderSagaId,
  columns: {
    order_id: { type: 'text', of: (state) => state.orderId, onUpdate: 'keep' },
    status: { type: 'text', of: (state) => state.status },
    step: { type: 'text', of: (state) => state.step },
    attempt: { type: 'integer', of: (state) => state.attempt },
    outcome: { type: 'text', of: (state) => state.outcome },
    parked_reason: { type: 'text', of: (state) => state.parkedReason },
    next_deadline: { type: 'timestamptz', of: (state) => state.deadlines[0]?.at },
    started_at: { type: 'timestamptz', of: (state) => state.startedAt ?? state.updatedAt, onUpdate: 'keep' },
  },
}

/** The envelope every command topic takes, from what the processor adds. */
const commandEnvelope = (envelope: MessageEnvelope) => ({
  commandId: envelope.id,
  issuedOn: envelope.at,
  correlationId: envelope.correlationId,
  causationId: envelope.causationId,
})

/** A command sent on a declared command topic, with the envelope, encoded as the topic says. */
const onTopic = (topic: { topic: string; encode(message: never): unknown }): MessageRoute<CreateOrderSagaCommand> => ({
  topic: topic.topic,
  encode: (command, envelope) => topic.encode({ ...commandEnvelope(envelope), ...command.message } as never),
})

/** Where the saga's commands go: the topic it names, encoded as that topic says (amounts as decimals). */
export const sagaCommandRoutes: MessageRouting<CreateOrderSagaCommand> = {
  routeOf: (command) => command.topic,
  typeOf: (command) => command.message.commandType,
  keyOf: (command) => command.key,
  routes: {
    [PAYMENT_COMMANDS_TOPIC]: onTopic(paymentCommands),
    [DISPATCH_COMMANDS_TOPIC]: onTopic(dispatchCommands),
    [DELIVERY_COMMANDS_TOPIC]: onTopic(deliveryCommands),
    // The saga's words (ApproveOrder, RejectOrder) are the order service's aliases: sent as they are.
    [ORDER_COMMANDS_TOPIC]: {
      topic: ORDER_COMMANDS_TOPIC,
      encode: (command, envelope) => ({ ...commandEnvelope(envelope), ...command.message }),
    },
  },
}

type SagaOptions = WorkflowProcessorOptions<
  CreateOrderSagaInput,
  CreateOrderSagaState,
  CreateOrderSagaCommand,
  SagaStepTimedOut
>

/** The step and attempt a decision's commands belong to (the step it starts, or the current one), named in their ids. */
const commandIdName: NonNullable<SagaOptions['messageIds']['name']> = (output, decision) => {
  if (output.kind !== 'Send') throw new Error('the Create-Order saga publishes nothing')
  const scheduled = decision.outputs.find((o) => o.kind === 'Schedule')
  const step = scheduled?.kind === 'Schedule' ? scheduled.timeout.step : (decision.state.step ?? 'START')
  const attempt = scheduled?.kind === 'Schedule' ? scheduled.timeout.attempt : decision.state.attempt
  const body = output.command.message
  const detail = body.commandType === 'ChangeOrderStatus' ? body.status : ''
  return `${createOrderSagaId(decision.instanceId)}/${step}/${attempt}/${body.commandType}/${detail}`
}

/** An operator's input applies to a parked saga only; checked under the row lock, so the answer holds. */
const checkOperator: SagaOptions['check'] = (input, saga, orderId) => {
  if (input.eventType !== 'OperatorResumed' && input.eventType !== 'OperatorCompensated') return
  if (!saga) throw notFound('saga', orderId, `no saga for order ${orderId}`)
  const refusal = operatorRefusal(input, saga)
  if (refusal !== null) {
    throw new AppError('INVALID_TRANSITION', refusal, { details: { sagaStatus: saga.status, step: saga.step } })
  }
}

export function createSagaProcessor(deps: SagaProcessorDeps): SagaProcessor {
  const onEnded = deps.onEnded
  const processor = createWorkflowProcessor({
    name: 'create-order-saga',
    db: deps.db,
    workflow: deps.workflow,
    instanceOf: orderIdOf,
    starts: (input) => input.eventType === 'OrderCreated',
    check: checkOperator,
    table: sagaTable,
    sends: sagaCommandRoutes,
    messageIds: { namespace: COMMAND_ID_NAMESPACE, name: commandIdName },
    timerKind: SAGA_TIMEOUT_TIMER,
    onCommitted: deps.onCommitted,
    onScheduled: deps.onScheduled,
    ...(onEnded ? { onEnded: (state: CreateOrderSagaState) => onEnded(state) } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.logger ? { logger: deps.logger } : {}),
  })
  return {
    handle: async (input, metadata) =>
      (
        await traced([{ input, metadata }], ([item]) => processor.handle(item.input, item.metadata).then((r) => [r]))
      )[0] as SagaResult,
    handleBatch: (items) => traced(items, (tracedItems) => processor.handleBatch(tracedItems)),
    get: processor.get,
  }
}

type SagaItem = { input: CreateOrderSagaInput; metadata: SagaInputMetadata }

/**
 * A span per saga step taken (with tracing on): a child of the input's trace (its consume span, a
 * timer's or an operator's request), naming the order, the input and the step and status it left
 * the saga in. The commands the step sends carry the step span's context on.
 */
async function traced(
  items: readonly SagaItem[],
  work: (items: [SagaItem, ...SagaItem[]]) => Promise<SagaResult[]>,
): Promise<SagaResult[]> {
  if (!tracingEnabled()) return work(items as [SagaItem, ...SagaItem[]])
  const spans = items.map(({ input, metadata }) =>
    tracer.startSpan(
      `saga ${input.eventType}`,
      { attributes: { [ORDER_ID_ATTRIBUTE]: orderIdOf(input), 'orderflow.saga.input': input.eventType } },
      metadata.traceparent ? contextFromHeaders({ traceparent: metadata.traceparent }) : parentContext(undefined),
    ),
  )
  const withTrace = items.map((item, i) => {
    const { traceparent } = traceHeadersOf(spans[i])
    return traceparent ? { ...item, metadata: { ...item.metadata, traceparent } } : item
  }) as [SagaItem, ...SagaItem[]]
  try {
    const results = await work(withTrace)
    results.forEach((result, i) => {
      if (result.state) {
        spans[i]?.setAttributes({
          'orderflow.saga.step': result.state.step ?? '',
          'orderflow.saga.status': result.state.status,
          ...(result.state.outcome ? { 'orderflow.saga.outcome': result.state.outcome } : {}),
        })
      }
    })
    return results
  } catch (error) {
    for (const span of spans) failSpan(span, error)
    throw error
  } finally {
    for (const span of spans) span.end()
  }
}
