import { setTimeout as sleep } from 'node:timers/promises'
import { v7 as uuidv7 } from 'uuid'
import { AppError, isAppError } from '../errors.ts'
import type { EventMetadata, NewEvent, NewStreamEvent, StoredEvent } from '../eventstore/event-store.ts'
import { markHandled } from '../inbox/inbox.ts'
import type { CommittedWrites } from '../outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor, SqlStep } from '../sql/port.ts'
import { isTransactionConflict } from '../sql/unavailable.ts'
import { inSpan, ORDER_ID_ATTRIBUTE, parentContext, traceHeadersOf } from '../tracing.ts'
import type { OutgoingMessage } from '../transport/port.ts'
import { batchHandler } from './command-batch.ts'
import { commandGroups } from './command-group.ts'
import type { Decider, Recorded, TypedEvent } from './decider.ts'
import { decisionRecorder, refusal, staleVersion } from './decision-writes.ts'
import { type TimerChange, writeTimerChanges } from './scheduler.ts'
import { stateTable } from './state-table.ts'

/**
 * The one command handler every event-sourced service uses (emmett's `handleCommand`, plus what a
 * service needs around it). One command is one transaction:
 *
 *   load state → check the expected version → decide → record in the inbox and append (one
 *   statement) → evolve → save the state → put the events' messages in the outbox
 *
 * Round trips are what a command costs: the load (BEGIN travels with it, sql/postgres.ts), the
 * write of everything it decided (decision-writes.ts), and COMMIT.
 *
 * and the outbox relay is woken once it committed. A service supplies its decider, its stream type,
 * where its current state lives and how its events become messages; nothing else.
 *
 * Concurrency: two commands on one stream that read the same version race on the event store's
 * unique (stream, version). The loser is decided again on the new state when its caller gave no
 * expected version (both valid commands apply); with an expected version it is a VERSION_CONFLICT
 * at once (not retryable: the caller decided on a state that is gone).
 *
 * A command with an expected version takes no row lock, so it can deadlock with one that does: it
 * holds the new event's (stream, version) key and waits for the state row, the other holds the row
 * and waits for the key. PostgreSQL aborts one of them (40P01); a serializable conflict (40001) is
 * the same kind of accident. The aborted transaction is run again from the start, a few times with a
 * short random pause, before anyone sees an error: then it either commits or, its expected version
 * gone, answers VERSION_CONFLICT. Only a conflict that outlasts the retries reaches the caller, as
 * a database outage (HTTP 503 with Retry-After, a consumer holding its partition).
 */

export interface CommandMetadata {
  correlationId?: string
  causationId?: string
  traceparent?: string
  tracestate?: string
  /** The version the caller last saw (HTTP If-Match, a command's expectedVersion). */
  expectedVersion?: number
  /** Set by consumers: the message is applied once per consumer, whatever the redeliveries. */
  inbox?: { consumer: string; messageId: string }
}

/** An event as the service sees it once stored: its data plus the envelope. */
export type DomainEvent<Event> = Recorded<Event> & {
  eventId: string
  schemaVersion: number
  correlationId?: string
  causationId?: string
}

/** Where a service keeps the current state of its streams (one row per stream). */
export interface StateStore<State> {
  /**
   * The state and its version (0 for a stream that does not exist yet). With `lock`, the state row
   * is locked until the transaction ends (`FOR UPDATE`), so concurrent commands on one stream queue
   * instead of racing.
   */
  load(tx: SqlExecutor, streamId: string, options?: { lock?: boolean }): Promise<{ state: State; version: number }>
  save(tx: SqlExecutor, streamId: string, state: State, version: number): Promise<void>
  /**
   * The states of several streams in one statement (those without a row are left out), locked in
   * id order with `lock`: what a consumer's batch reads. A store without it handles a batch one
   * command at a time (see `stateTable`, which has it).
   */
  loadMany?(
    tx: SqlExecutor,
    streamIds: readonly string[],
    options?: { lock?: boolean },
  ): Promise<Map<string, { state: State; version: number }>>
  /**
   * A consumer's batch's first statement: records its messages in the consumer's inbox and reads
   * (locked in id order with `lock`) the states of `streamIds`; answers the messages the inbox did
   * not have yet, and the states of the streams that have a row.
   */
  claimMany?(
    tx: SqlExecutor,
    inbox: { consumer: string; messageIds: readonly string[] },
    streamIds: readonly string[],
    options?: { lock?: boolean },
  ): Promise<{ fresh: Set<string>; states: Map<string, { state: State; version: number }> }>
  /** Saves several streams' states in one statement (the last one given per stream). */
  saveMany?(tx: SqlExecutor, rows: readonly { streamId: string; state: State; version: number }[]): Promise<void>
  /**
   * `saveMany` as a step of a larger statement, so that a decision's events, states, messages and
   * timers are written in one round trip (es/decision-writes.ts); a store without it saves apart.
   */
  saveStep?(rows: readonly { streamId: string; state: State; version: number }[]): SqlStep
}

export interface CommandResult<Event, State> {
  state: State
  version: number
  events: DomainEvent<Event>[]
  /** True when the inbox had seen the message already and nothing was done. */
  duplicate: boolean
  /** The outbox rows of the command's messages, in the order the relay publishes them. */
  outboxIds?: readonly string[]
}

export interface CommandHandlerOptions<Command, Event extends TypedEvent, State> {
  db: SqlDatabase
  /**
   * Woken after a commit that wrote messages, with the stream type of its events: the outbox relay
   * and the projections listen.
   */
  onCommitted: (written: CommittedWrites) => void
  /** Names the kind of stream in the event store and in errors. */
  streamType: string
  decider: Decider<Command, Event, State>
  stateStore: StateStore<State>
  /** The messages an event becomes (topic, key, encoded value, headers). */
  toMessages: (event: DomainEvent<Event>, metadata: EventMetadata) => OutgoingMessage[]
  /**
   * Seals an event's personal fields before it is stored (platform/personal-data), in the command's
   * transaction, given the stream's state before the command: the store, the state, the outbox and
   * so every topic get the sealed event, never the plaintext.
   */
  seal?: (tx: SqlExecutor, event: NewEvent, state: State) => Promise<NewEvent>
  /** The schema version events are written with (default 1). */
  schemaVersion?: (eventType: string) => number
  clock?: () => Date
  newEventId?: () => string
  /** How often a command without an expected version is decided again after losing a race. */
  maxConflictRetries?: number
  /** How often a transaction aborted by a deadlock or a serialization failure is run again (default 4). */
  maxDeadlockRetries?: number
  /**
   * The timers each command sets or removes, decided from its result (with or without events):
   * written in the command's transaction, for a group or a batch in one statement per kind of change.
   */
  timers?(result: CommandResult<Event, State>, command: Command, metadata: CommandMetadata): readonly TimerChange[]
  /**
   * Group commit of commands sent from outside a consumer (HTTP, timers, tools): while
   * `maxInFlight` of them run, the ones that arrive wait, and the next free slot decides up to
   * `maxSize` of them in one transaction of one statement per table (see `handleWith`). Left out:
   * the database's own grouping (`SqlDatabase.grouping`), or none.
   */
  group?: CommandGrouping
}

/** How many commands run at once before the next ones wait and share a transaction. */
export interface CommandGrouping {
  maxInFlight: number
  maxSize: number
}

/**
 * A command of a consumer's batch: known from its message alone, or found (`resolve`) from the
 * states of streams as the batch has left them so far (a mapping that reads state).
 */
export type BatchCommand<Command, State> = {
  metadata: CommandMetadata & { inbox: NonNullable<CommandMetadata['inbox']> }
} & (
  | { command: Command }
  | { resolve(load: (streamId: string) => Promise<State>): Promise<Command | null | undefined> }
)

export interface BatchOptions<Command> {
  /** The stream a command addresses. */
  streamOf(command: Command): string
}

/**
 * Thrown by `handleBatch` for what it leaves to the one-at-a-time path (a refusal, a stale expected
 * version): the batch rolls back, and its consumer handles the messages one at a time.
 */
export class NotForBatch extends Error {
  constructor(reason: string, cause?: unknown) {
    super(`not handled as a batch: ${reason}`, cause === undefined ? undefined : { cause })
    this.name = 'NotForBatch'
  }
}

export interface CommandHandler<Command, Event, State> {
  handle(streamId: string, command: Command, metadata?: CommandMetadata): Promise<CommandResult<Event, State>>
  /** Runs `after` in the command's transaction (e.g. to store an idempotent HTTP response). */
  handleWith<T>(
    streamId: string,
    command: Command,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
  ): Promise<{ result: CommandResult<Event, State>; extra: T }>
  /**
   * A consumer batch's commands in one transaction (the batch's), in a fixed number of statements
   * whatever its size: one inbox insert for every message, one locked read of every stream, the
   * decisions in order on the states as the batch leaves them, one append of every event, one save
   * of every stream's state, one outbox insert for every message, one write of the timers they set. One
   * result per item: null where a command resolved to nothing, `duplicate` where the inbox had the
   * message. A refusal, a stale expected version or a lost race throws (`NotForBatch`, a
   * VERSION_CONFLICT): the batch is then handled one message at a time, where each gets its answer.
   * Needs a state store with `loadMany` and `saveMany`.
   */
  handleBatch(
    items: readonly BatchCommand<Command, State>[],
    options: BatchOptions<Command>,
  ): Promise<(CommandResult<Event, State> | null)[]>
  /** Whether `handleBatch` can run (the state store reads and writes many streams at once). */
  readonly batches: boolean
}

/** A stored event as its service's domain event. */
export function toDomainEvent<Event>(stored: StoredEvent): DomainEvent<Event> {
  return {
    ...(stored.data as object),
    eventType: stored.eventType,
    eventId: stored.eventId,
    aggregateId: stored.streamId,
    occurredOn: stored.occurredOn,
    version: stored.version,
    schemaVersion: stored.schemaVersion,
    ...(stored.metadata.correlationId ? { correlationId: stored.metadata.correlationId } : {}),
    ...(stored.metadata.causationId ? { causationId: stored.metadata.causationId } : {}),
  } as unknown as DomainEvent<Event>
}

/** The order a command is about, as a span attribute (the journey's commands all name theirs). */
function orderOf(command: unknown): Record<string, string> {
  const orderId = (command as { orderId?: unknown } | null)?.orderId
  return typeof orderId === 'string' ? { [ORDER_ID_ATTRIBUTE]: orderId } : {}
}

/** Marks a conflict that a fresh decision may resolve (lost race, no expected version given). */
const RACE = Symbol('race')

export function createCommandHandler<Command, Event extends TypedEvent, State>(
  options: CommandHandlerOptions<Command, Event, State>,
): CommandHandler<Command, Event, State> {
  const { db, decider, stateStore, streamType } = options
  const clock = options.clock ?? (() => new Date())
  const newEventId = options.newEventId ?? (() => uuidv7())
  const maxConflictRetries = options.maxConflictRetries ?? 10
  const maxDeadlockRetries = options.maxDeadlockRetries ?? 4
  const recorder = decisionRecorder({ ...options, newEventId })
  const { record, write, committed } = recorder

  const run = async <T>(
    tx: SqlExecutor,
    streamId: string,
    command: Command,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
  ) => {
    const finish = async (result: CommandResult<Event, State>) => {
      if (options.timers) await writeTimerChanges(tx, options.timers(result, command, metadata))
      return { result, extra: await after(tx, result) }
    }
    const { inbox } = metadata
    // A caller without an expected version wants its command applied to whatever the state is:
    // waiting for a concurrent command on the stream is cheaper than losing the race and deciding
    // again. A caller with one wants a conflict reported, so nothing is locked for it.
    const { state, version } = await stateStore.load(tx, streamId, { lock: metadata.expectedVersion === undefined })
    // A consumed message is recorded in its consumer's inbox with the events it caused, in the same
    // statement (see decision-writes.ts). A message that is refused, or decides nothing, may be one handled
    // before: it is recorded on its own then (waiting for a copy still in flight to commit), and a
    // copy seen before changes nothing and refuses nothing; a refusal rolls the record back.
    const duplicate = () => finish({ state, version, events: [], duplicate: true })
    const refuse = async (error: AppError) => {
      if (inbox && !(await markHandled(tx, inbox.consumer, inbox.messageId))) return duplicate()
      throw error
    }
    const stale = staleVersion(streamType, streamId, metadata.expectedVersion, version)
    if (stale) return refuse(stale)
    const now = clock().toISOString()
    const decision = decider.decide(command, state, { now })
    if (!decision.ok) return refuse(refusal(streamType, streamId, decision.error))
    if (decision.events.length === 0) {
      if (inbox && !(await markHandled(tx, inbox.consumer, inbox.messageId))) return duplicate()
      return finish({ state, version, events: [], duplicate: false })
    }

    // Its events, state, messages and timers, and its inbox record, in one statement (see
    // decision-writes.ts): with the load, BEGIN and COMMIT, four statements and three round trips.
    const into = { appended: [] as NewStreamEvent[], messages: [] as OutgoingMessage[] }
    const next = await record(tx, streamId, { state, version }, decision.events, metadata, now, into)
    const result: CommandResult<Event, State> = { ...next, duplicate: false }
    let written: boolean
    try {
      written = await write(
        tx,
        into,
        new Map([[streamId, next]]),
        [streamId],
        [{ result, command, metadata, messages: into.messages.length }],
        options.timers,
        inbox,
      )
    } catch (error) {
      if (!isAppError(error, 'VERSION_CONFLICT')) throw error
      const conflict = new AppError(
        'VERSION_CONFLICT',
        `${streamType} ${streamId} was changed concurrently: expected version ${version}`,
        { details: { streamId, expectedVersion: version }, cause: error },
      )
      // Two creators of a new stream, or a writer with an expected version that did not lock.
      throw metadata.expectedVersion === undefined ? Object.assign(conflict, { [RACE]: true }) : conflict
    }
    if (!written) return duplicate()
    return { result, extra: await after(tx, result) }
  }

  /**
   * The command's transaction as a span, a child of the trace its metadata carries (a consumed
   * message's, a timer's) or else of the active one (the HTTP request). The events and messages it
   * writes carry the command span's context on: the outbox rows, and so the relay's publishes, are
   * its children.
   */
  const handleWith = <T>(
    streamId: string,
    command: Command,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
  ) =>
    inSpan(
      `${streamType} command`,
      {
        parent: parentContext(
          metadata.traceparent
            ? { traceparent: metadata.traceparent, ...(metadata.tracestate ? { tracestate: metadata.tracestate } : {}) }
            : undefined,
        ),
        attributes: { 'orderflow.stream_type': streamType, 'orderflow.stream_id': streamId, ...orderOf(command) },
      },
      (span) => {
        const traced = traceHeadersOf(span)
        return grouped(streamId, command, traced.traceparent ? { ...metadata, ...traced } : metadata, after)
      },
    )

  const transact = async <T>(
    streamId: string,
    command: Command,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
  ) => {
    let deadlocks = 0
    for (let attempt = 0; ; attempt++) {
      try {
        const outcome = await db.transaction((tx) => run(tx, streamId, command, metadata, after))
        if (outcome.result.events.length > 0) committed()
        return outcome
      } catch (error) {
        if ((error as { [RACE]?: boolean })[RACE] && attempt < maxConflictRetries) {
          // Two creators of a new stream (no row to lock yet): the loser decides again on the winner's state.
          await sleep(Math.random() * 5 * (attempt + 1))
          continue
        }
        if (deadlocks < maxDeadlockRetries && isTransactionConflict(error)) {
          // Jittered, so that the two victims of a deadlock do not meet again at once.
          deadlocks++
          await sleep(5 * 2 ** deadlocks * (0.5 + Math.random()))
          continue
        }
        throw error
      }
    }
  }

  const handleBatch = batchHandler(options, recorder, clock)
  const grouped = commandGroups(options, recorder, clock, transact)
  const { loadMany, claimMany, saveStep } = stateStore

  return {
    handleWith,
    handleBatch,
    batches: Boolean(loadMany && claimMany && saveStep),
    async handle(streamId, command, metadata = {}) {
      const { result } = await handleWith(streamId, command, metadata, async () => undefined)
      return result
    },
  }
}

/** A state store over a table with `id`, `version`, a jsonb `state` and `updated_at` (see `stateTable`). */
export function jsonStateTable<State>(table: string, initialState: () => State): Required<StateStore<State>> {
  return stateTable({ table, initialState })
}
