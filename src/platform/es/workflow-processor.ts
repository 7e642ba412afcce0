import { v5 as uuidv5 } from 'uuid'
import type { Logger } from '../logger.ts'
import { type CommittedWrites, outboxRows } from '../outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'
import type { OutgoingMessage } from '../transport/port.ts'
import { type TimerStep, timerStepParams } from './scheduler-batch.ts'
import type { Publish, Send, Workflow, WorkflowOutput } from './workflow.ts'
import { type MessageEnvelope, type MessageRouting, routedMessage } from './workflow-routes.ts'
import { type WorkflowStateTable, workflowStateTable } from './workflow-state-table.ts'

/**
 * Runs any workflow (`workflow.ts`) against storage: a workflow supplies its decisions, and says
 * where its state lives, which instance an input is for, and where each message it sends goes; the
 * processor does the rest. Inputs go one at a time (`handle`: an operator's request, a timer) or a
 * consumer's batch at once (`handleBatch`), both in the same three steps, so a batch costs what one
 * input costs:
 *
 *   1. one statement records every input in the inbox and then locks every instance's row, in id
 *      order: an input handled before is skipped, and inputs for one instance that arrive at once
 *      (several topics, several partitions) are serialised by the lock;
 *   2. the decisions, in order, each on the state the ones before it left (two inputs for one
 *      instance in a batch see each other): decide, then evolve by the input and every output;
 *   3. one statement stores what changed: every instance's row, every message the outputs send or
 *      publish (into the outbox), every timer they set or remove.
 *
 * So a message leaves exactly when the decision that sent it is stored, and a redelivered input
 * changes nothing. A decision whose state comes out unchanged writes nothing at all.
 *
 * Outputs: Send and Publish go through the routing table (`sends`, `publishes`: a route per command
 * type or topic gives the topic and the encoder), keyed as the routing says, with ids that are
 * uuid v5 of a name the same decision gives again (after a crash before commit, the receivers'
 * inboxes drop the repeat). Schedule sets the instance's one durable timer (`scheduler.ts`), whose
 * clock starts when the decision's last message is published (not while it waits in the outbox),
 * or at commit when it sent none; Complete and Park remove it. Ignore writes nothing and logs why.
 *
 * An input may be refused under the row lock (`check`: an operator's request that does not apply to
 * the instance as it is): it throws and nothing of it is written. Only inputs that `starts` accepts
 * create an instance; any other input for an instance without a row changes nothing. In a batch,
 * whatever throws fails the whole batch, which the consumer then hands to `handle` one input at a
 * time (each gets its own answer, retries and dead letter).
 *
 * The callbacks run when the work returns: inside a consumer's batch that is before the batch
 * commits, so a caller inside one defers them (`afterCommit`).
 */

/** An input's inbox entry (who handled which message) and its trace. */
export interface WorkflowInputMetadata {
  consumer: string
  messageId: string
  correlationId?: string
  causationId?: string
  traceparent?: string
}

/** One decision, for naming its messages. */
export interface WorkflowDecision<Input, State, Output> {
  instanceId: string
  input: Input
  /** The state the decision was taken on. */
  state: State
  outputs: readonly Output[]
  /** The instance's version once the decision is stored. */
  version: number
}

export interface WorkflowProcessorOptions<Input, State, Command, Timeout, Event = never> {
  /** For logs and errors. */
  name: string
  db: SqlDatabase
  workflow: Workflow<Input, State, Command, Timeout, Event>
  /** The instance an input is for (an order's id, for its saga); a timeout must name it too. */
  instanceOf(input: Input): string
  /** Whether the input starts an instance; any other input for an instance without a row changes nothing. */
  starts(input: Input): boolean
  /** Refuses an input (throws) for the instance as it is under its row lock, null when it has none. */
  check?(input: Input, current: State | null, instanceId: string): void
  table: WorkflowStateTable<State>
  sends: MessageRouting<Command>
  publishes?: MessageRouting<Event>
  /**
   * Message ids are uuid v5 of `name` in `namespace`. The name must come out the same when the same
   * decision is taken again; by default the row id, the instance's new version and the output's
   * position.
   */
  messageIds: {
    namespace: string
    name?(
      output: Send<Command> | Publish<Event>,
      decision: WorkflowDecision<Input, State, WorkflowOutput<Command, Timeout, Event>>,
      index: number,
    ): string
  }
  /** The kind of the instances' timers; a timer's id is `<kind>:<instance id>` (`timerId`). */
  timerKind: string
  /** Something was written to the outbox (wake the relay); a workflow appends no events. */
  onCommitted(written: CommittedWrites): void
  /** A timer was set, due in `delayMs` at the earliest (wake the timer poller). */
  onScheduled?(delayMs: number): void
  /** An instance completed or parked (metrics, logs), with its state then. */
  onEnded?(state: State, instanceId: string): void
  clock?: () => Date
  logger?: Logger
}

export interface WorkflowResult<State, Output> {
  /** What the workflow decided; empty when the input was a duplicate or changed nothing. */
  outputs: Output[]
  /** The instance's state after the input (null: no instance). */
  state: State | null
  /** The inbox had the input: nothing was done. */
  duplicate: boolean
}

export interface WorkflowProcessor<Input, State, Output> {
  handle(input: Input, metadata: WorkflowInputMetadata): Promise<WorkflowResult<State, Output>>
  /** A consumer batch's inputs in one transaction (the batch's, when called in one), in order; one result each. */
  handleBatch(
    items: readonly { input: Input; metadata: WorkflowInputMetadata }[],
  ): Promise<WorkflowResult<State, Output>[]>
  get(instanceId: string): Promise<State | null>
  /** The id of the instance's timer. */
  timerId(instanceId: string): string
}

export function createWorkflowProcessor<Input, State, Command, Timeout, Event = never>(
  options: WorkflowProcessorOptions<Input, State, Command, Timeout, Event>,
): WorkflowProcessor<Input, State, WorkflowOutput<Command, Timeout, Event>> {
  type Output = WorkflowOutput<Command, Timeout, Event>
  type Result = WorkflowResult<State, Output>
  const { db, workflow, name } = options
  const clock = options.clock ?? (() => new Date())
  const rowIdOf = options.table.rowId ?? ((instanceId: string) => instanceId)
  const timerId = (instanceId: string) => `${options.timerKind}:${instanceId}`
  const sql = workflowStateTable(options.table)
  const nameOf =
    options.messageIds.name ??
    ((_output: Send<Command> | Publish<Event>, decision: { instanceId: string; version: number }, index: number) =>
      `${rowIdOf(decision.instanceId)}/${decision.version}/${index}`)

  const run = async (tx: SqlExecutor, items: readonly { input: Input; metadata: WorkflowInputMetadata }[]) => {
    const now = clock().toISOString()
    const context = { now }
    const instances = items.map(({ input }) => options.instanceOf(input))
    const rowIds = instances.map(rowIdOf)

    // 1. The inbox, then the rows, in one round trip.
    const { rows } = await tx.query<{
      fresh: [string, string][] | null
      id: string | null
      state: State | null
      version: number | null
    }>(sql.claim, [
      items.map(({ metadata }) => metadata.consumer),
      items.map(({ metadata }) => metadata.messageId),
      [...new Set(rowIds)],
    ])
    const fresh = new Set(
      (rows.find((row) => row.fresh !== null)?.fresh ?? []).map(([consumer, messageId]) =>
        inboxKey(consumer, messageId),
      ),
    )
    const stored = new Map<string, { state: State; version: number }>()
    for (const row of rows) {
      if (row.id !== null && row.state !== null && row.version !== null) {
        stored.set(row.id, { state: row.state, version: row.version })
      }
    }

    // 2. The decisions, in order.
    const results: Result[] = []
    const changed = new Set<string>()
    const messages: OutgoingMessage[] = []
    const timers: TimerStep[] = []
    const delays: number[] = []
    const ended: { state: State; instanceId: string }[] = []
    for (const [i, { input, metadata }] of items.entries()) {
      const instanceId = instances[i] as string
      const rowId = rowIds[i] as string
      const current = stored.get(rowId)
      // A second copy of a message in the same batch is a duplicate too: the first takes the entry.
      if (!fresh.delete(inboxKey(metadata.consumer, metadata.messageId))) {
        results.push({ outputs: [], state: current?.state ?? null, duplicate: true })
        continue
      }
      options.check?.(input, current?.state ?? null, instanceId)
      if (!current && !options.starts(input)) {
        results.push({ outputs: [], state: null, duplicate: false })
        continue
      }
      const state = current ? current.state : workflow.initialState()
      const outputs = workflow.decide(input, state, context)
      let next = workflow.evolve(state, input, context)
      for (const output of outputs) next = workflow.evolve(next, output, context)
      for (const output of outputs) {
        if (output.kind === 'Ignore') {
          options.logger?.debug(
            { workflow: name, instanceId, messageId: metadata.messageId, reason: output.reason },
            `${name} ${instanceId} ignored ${metadata.messageId}: ${output.reason}`,
          )
        }
      }
      if (next === state) {
        results.push({ outputs: [], state, duplicate: false })
        continue
      }

      const version = (current?.version ?? 0) + 1
      const decision = { instanceId, input, state, outputs, version }
      const envelope = (output: Send<Command> | Publish<Event>, index: number): MessageEnvelope => ({
        id: uuidv5(nameOf(output, decision, index), options.messageIds.namespace),
        at: now,
        correlationId: metadata.correlationId ?? instanceId,
        causationId: metadata.causationId ?? metadata.messageId,
      })
      const sentBefore = messages.length
      let timeout: { delayMs: number; payload: Timeout } | undefined
      let end = false
      for (const [index, output] of outputs.entries()) {
        switch (output.kind) {
          case 'Send':
            messages.push(routedMessage(options.sends, output.command, envelope(output, index), metadata.traceparent))
            break
          case 'Publish':
            if (!options.publishes) throw new Error(`${name} published, and has no routes for what it publishes`)
            messages.push(routedMessage(options.publishes, output.event, envelope(output, index), metadata.traceparent))
            break
          case 'Schedule':
            // The workflow says when by the app's clock; the timer keeps only the delay, which the
            // database counts from the publish of the decision's messages (scheduler.ts).
            timeout = { delayMs: Math.max(0, Date.parse(output.at) - Date.parse(now)), payload: output.timeout }
            break
          case 'Complete':
          case 'Park':
            timers.push({ cancel: timerId(instanceId) })
            end = true
            break
          case 'Ignore':
            break
          default:
            assertNever(output)
        }
      }
      if (timeout) {
        timers.push({
          schedule: {
            id: timerId(instanceId),
            kind: options.timerKind,
            delayMs: timeout.delayMs,
            payload: timeout.payload,
            // The relay publishes in id order: the last message out means the decision's are all out.
            afterMessage: messages.length > sentBefore ? messages.length : undefined,
          },
        })
        delays.push(timeout.delayMs)
      }
      stored.set(rowId, { state: next, version })
      changed.add(rowId)
      if (end) ended.push({ state: next, instanceId })
      results.push({ outputs, state: next, duplicate: false })
    }

    // 3. Every row, message and timer, in one round trip.
    if (changed.size > 0) {
      await tx.query(sql.write, [
        JSON.stringify(
          [...changed].map((rowId) => {
            const { state, version } = stored.get(rowId) as { state: State; version: number }
            return sql.record(rowId, state, version, now)
          }),
        ),
        ...outboxRows(messages),
        ...timerStepParams(timers),
      ])
    }
    return { results, sent: messages.length > 0, delays, ended }
  }

  const handleAll = async (items: readonly { input: Input; metadata: WorkflowInputMetadata }[]) => {
    if (items.length === 0) return []
    const outcome = await db.transaction((tx) => run(tx, items))
    if (outcome.sent) options.onCommitted({ streamTypes: [] })
    if (outcome.delays.length > 0) options.onScheduled?.(Math.min(...outcome.delays))
    for (const { state, instanceId } of outcome.ended) options.onEnded?.(state, instanceId)
    return outcome.results
  }

  return {
    async handle(input, metadata) {
      const [result] = await handleAll([{ input, metadata }])
      return result as Result
    },
    handleBatch: handleAll,
    async get(instanceId) {
      const { rows } = await db.query<{ state: State }>(sql.get, [rowIdOf(instanceId)])
      return rows[0]?.state ?? null
    },
    timerId,
  }
}

const inboxKey = (consumer: string, messageId: string) => `${consumer}\u0000${messageId}`

function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`)
}
