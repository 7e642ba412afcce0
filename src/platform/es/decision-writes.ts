import { AppError, notFound } from '../errors.ts'
import {
  appendStep,
  asVersionConflict,
  type EventMetadata,
  type NewEvent,
  type NewStreamEvent,
} from '../eventstore/event-store.ts'
import { inboxInsert } from '../inbox/inbox.ts'
import { outboxInsert, outboxRows } from '../outbox/outbox.ts'
import type { SqlExecutor, SqlStep } from '../sql/port.ts'
import type { OutgoingMessage } from '../transport/port.ts'
import type { CommandHandlerOptions, CommandMetadata, CommandResult, DomainEvent } from './command-handler.ts'
import type { Rejection, TypedEvent } from './decider.ts'
import type { TimerChange } from './scheduler.ts'
import { type TimerStep, timerStepParams, timerSteps } from './scheduler-batch.ts'

/**
 * What a decision becomes, shared by the command handler's three paths (one command, a consumer's
 * batch, a group of commands): the events as the store keeps them, their messages, and the errors a
 * caller sees for a stale version or a refusal.
 */

/** What of a command's metadata its events keep. */
export const eventMetadataOf = (metadata: CommandMetadata): EventMetadata => ({
  ...(metadata.correlationId ? { correlationId: metadata.correlationId } : {}),
  ...(metadata.causationId ? { causationId: metadata.causationId } : {}),
  ...(metadata.traceparent ? { traceparent: metadata.traceparent } : {}),
  ...(metadata.tracestate ? { tracestate: metadata.tracestate } : {}),
})

/** Why a command's expected version does not hold, or undefined when it does (or none was given). */
export function staleVersion(streamType: string, streamId: string, expected: number | undefined, version: number) {
  if (expected === undefined || expected === version) return undefined
  if (version === 0) return notFound(streamType, streamId)
  return new AppError(
    'VERSION_CONFLICT',
    `${streamType} ${streamId} is at version ${version}, not the expected ${expected}`,
    { details: { currentVersion: version, expectedVersion: expected } },
  )
}

/** A decider's refusal as the error its caller sees. */
export function refusal(streamType: string, streamId: string, error: Rejection) {
  return new AppError(error.code, error.message, {
    ...(error.fields ? { fields: error.fields } : {}),
    details: { [`${streamType}Id`]: streamId },
  })
}

/** Builds a service's events and messages from its decisions. */
export function decisionRecorder<Command, Event extends TypedEvent, State>(
  options: Pick<
    CommandHandlerOptions<Command, Event, State>,
    'streamType' | 'decider' | 'stateStore' | 'toMessages' | 'seal' | 'newEventId' | 'schemaVersion' | 'onCommitted'
  > & { newEventId: () => string },
) {
  const { streamType, decider, stateStore, seal, newEventId } = options
  const schemaVersion = options.schemaVersion ?? (() => 1)
  /** A decided event as the store keeps it: its id, schema version, time and envelope. */
  const newEvent = ({ eventType, ...data }: Event, now: string, metadata: EventMetadata): NewEvent => ({
    eventId: newEventId(),
    eventType,
    schemaVersion: schemaVersion(eventType),
    occurredOn: now,
    data: data as Record<string, unknown>,
    metadata,
  })

  /**
   * A decision's events on a stream of a group or a batch: appended to `into.appended` (sealed, at
   * the versions after `current`) and their messages to `into.messages`; answers the stream's state
   * and version after them, and the events as the service sees them.
   */
  const record = async (
    tx: SqlExecutor,
    streamId: string,
    current: { state: State; version: number },
    decided: readonly Event[],
    metadata: CommandMetadata,
    now: string,
    into: { appended: NewStreamEvent[]; messages: OutgoingMessage[] },
  ) => {
    const eventMetadata = eventMetadataOf(metadata)
    let { state, version } = current
    const events: DomainEvent<Event>[] = []
    for (const each of decided) {
      version++
      const made = newEvent(each, now, eventMetadata)
      const event: NewStreamEvent = {
        streamId,
        streamType,
        version,
        ...(seal ? await seal(tx, made, current.state) : made),
      }
      const { eventType, data } = event
      into.appended.push(event)
      const domain = {
        ...data,
        eventType,
        eventId: event.eventId,
        aggregateId: streamId,
        occurredOn: now,
        version,
        schemaVersion: event.schemaVersion,
        ...(eventMetadata.correlationId ? { correlationId: eventMetadata.correlationId } : {}),
        ...(eventMetadata.causationId ? { causationId: eventMetadata.causationId } : {}),
      } as unknown as DomainEvent<Event>
      events.push(domain)
      state = decider.evolve(state, domain)
      into.messages.push(...options.toMessages(domain, eventMetadata))
    }
    return { state, version, events }
  }

  /**
   * Writes what decisions produced (one command's, a group's or a batch's) in one statement: every
   * event (`into.appended`), the state of every stream in `touched`, every message (each decided
   * result gets the outbox ids of its own), and the timers `timersOf` decides from each result.
   * With `inbox`, the message is recorded in its consumer's inbox by the same statement, and nothing
   * is written when the inbox had it already: answers false then (a duplicate).
   *
   * A timer whose clock starts with one of these messages names it by position (its outbox id is
   * not known before the statement runs): `timersOf` sees each result's `outboxIds` as positions,
   * which the statement turns into the rows' ids; the results get the real ids once it ran.
   */
  const write = async (
    tx: SqlExecutor,
    into: { appended: readonly NewStreamEvent[]; messages: OutgoingMessage[] },
    states: ReadonlyMap<string, { state: State; version: number }>,
    touched: Iterable<string>,
    decided: readonly {
      result: CommandResult<Event, State>
      command: Command
      metadata: CommandMetadata
      /** How many of `into.messages`, in order, are this result's. */
      messages: number
    }[],
    timersOf: CommandHandlerOptions<Command, Event, State>['timers'],
    inbox?: { consumer: string; messageId: string },
  ): Promise<boolean> => {
    const { saveStep } = stateStore
    if (!saveStep) throw new TypeError(`the ${streamType} state store has no saveStep`)
    const saved = [...touched].map((streamId) => ({
      streamId,
      ...(states.get(streamId) as { state: State; version: number }),
    }))
    let taken = 0
    const timers: TimerStep[] = []
    for (const { result, command, metadata, messages } of decided) {
      result.outboxIds = Array.from({ length: messages }, (_, i) => `${NOT_YET_WRITTEN}${taken + i + 1}`)
      taken += messages
      if (timersOf) timers.push(...timersOf(result, command, metadata).map(asTimerStep))
    }

    const params: unknown[] = []
    const steps: string[] = []
    const when = inbox ? 'EXISTS (SELECT 1 FROM handled)' : 'true'
    if (inbox) {
      steps.push(`handled AS (${inboxInsert(1)})`)
      params.push(inbox.consumer, inbox.messageId)
    }
    const add = (name: string, step: SqlStep) => {
      steps.push(`${name} AS (${step.sql(params.length + 1, when)})`)
      params.push(...step.params)
    }
    if (into.appended.length > 0) add('appended', appendStep(into.appended))
    if (saved.length > 0) add('saved', saveStep(saved))
    steps.push(`sent AS (${outboxInsert(params.length + 1, when)})`)
    params.push(...outboxRows(into.messages))
    if (timers.length > 0) {
      steps.push(timerSteps(params.length + 1, 'sent', when))
      params.push(...timerStepParams(timers))
    }
    let row: { fresh: number; ids: string[] } | undefined
    try {
      ;({
        rows: [row],
      } = await tx.query<{ fresh: number; ids: string[] }>(
        `WITH ${steps.join(', ')}
         SELECT ${inbox ? '(SELECT count(*) FROM handled)::int' : '1'} AS fresh,
                ARRAY(SELECT id::text FROM sent ORDER BY id) AS ids`,
        params,
      ))
    } catch (error) {
      throw asVersionConflict(error)
    }
    if (!row || row.fresh === 0) return false
    taken = 0
    for (const { result, messages } of decided) {
      result.outboxIds = row.ids.slice(taken, taken + messages)
      taken += messages
    }
    return true
  }

  /** Says a commit of this stream type's events, once it committed: wakes the relay and the projections that read them. */
  const committed = () => options.onCommitted({ streamTypes: [streamType] })

  return { newEvent, record, write, committed }
}

export type DecisionRecorder<Command, Event extends TypedEvent, State> = ReturnType<
  typeof decisionRecorder<Command, Event, State>
>

/** How a result's `outboxIds` read while its decision is being written: the position of the message. */
const NOT_YET_WRITTEN = 'message#'

/** A timer change as a step of the decision's statement: a clock that starts with one of its messages names it by position. */
function asTimerStep(change: TimerChange): TimerStep {
  if ('cancel' in change) return change
  const { startsWhenPublished, ...timer } = change.schedule
  if (startsWhenPublished === undefined) return { schedule: timer }
  return startsWhenPublished.startsWith(NOT_YET_WRITTEN)
    ? { schedule: { ...timer, afterMessage: Number(startsWhenPublished.slice(NOT_YET_WRITTEN.length)) } }
    : { schedule: { ...timer, afterOutboxId: startsWhenPublished } }
}
