import { setTimeout as sleep } from 'node:timers/promises'
import { v7 as uuidv7 } from 'uuid'
import { AppError, isAppError, notFound } from '../errors.ts'
import {
  appendMany,
  appendOnce,
  type EventMetadata,
  type NewEvent,
  type NewStreamEvent,
  type StoredEvent,
} from '../eventstore/event-store.ts'
import { markHandled } from '../inbox/inbox.ts'
import { enqueue } from '../outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'
import { isTransactionConflict } from '../sql/unavailable.ts'
import { endingSpan, inSpan, ORDER_ID_ATTRIBUTE, parentContext, traceHeadersOf, tracer } from '../tracing.ts'
import type { OutgoingMessage } from '../transport/port.ts'
import type { Decider, Recorded, TypedEvent } from './decider.ts'
import { type TimerChange, writeTimerChanges } from './scheduler.ts'
import { stateTable } from './state-table.ts'

/**
 * The one command handler every event-sourced service uses (emmett's `handleCommand`, plus what a
 * service needs around it). One command is one transaction:
 *
 *   load state → check the expected version → decide → record in the inbox and append (one
 *   statement) → evolve → save the state → put the events' messages in the outbox
 *
 * Every statement is a round trip, and round trips are what a command costs: five for a consumed
 * command with its BEGIN and COMMIT.
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
  /** Saves several streams' states in one statement (the last one given per stream). */
  saveMany?(tx: SqlExecutor, rows: readonly { streamId: string; state: State; version: number }[]): Promise<void>
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
  /** Woken after a commit that wrote messages: the outbox relay and the projections listen. */
  onCommitted: () => void
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

export interface BatchOptions<Command, Event, State> {
  /** The stream a command addresses. */
  streamOf(command: Command): string
  /**
   * The timers each command decided (with or without events) sets or removes: written for the
   * whole batch in one statement per kind of change, after its rows.
   */
  timers?(result: CommandResult<Event, State>, command: Command, metadata: CommandMetadata): readonly TimerChange[]
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
    options: BatchOptions<Command, Event, State>,
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

/** What of a command's metadata its events keep. */
const eventMetadataOf = (metadata: CommandMetadata): EventMetadata => ({
  ...(metadata.correlationId ? { correlationId: metadata.correlationId } : {}),
  ...(metadata.causationId ? { causationId: metadata.causationId } : {}),
  ...(metadata.traceparent ? { traceparent: metadata.traceparent } : {}),
  ...(metadata.tracestate ? { tracestate: metadata.tracestate } : {}),
})

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
  const schemaVersion = options.schemaVersion ?? (() => 1)
  const maxConflictRetries = options.maxConflictRetries ?? 10
  const maxDeadlockRetries = options.maxDeadlockRetries ?? 4
  const { seal } = options
  const sealEach = async (tx: SqlExecutor, events: NewEvent[], state: State) => {
    const sealed: NewEvent[] = []
    for (const event of events) sealed.push(seal ? await seal(tx, event, state) : event)
    return sealed
  }
  /** A decided event as the store keeps it: its id, schema version, time and envelope. */
  const newEvent = ({ eventType, ...data }: Event, now: string, metadata: EventMetadata): NewEvent => ({
    eventId: newEventId(),
    eventType,
    schemaVersion: schemaVersion(eventType),
    occurredOn: now,
    data: data as Record<string, unknown>,
    metadata,
  })

  const run = async <T>(
    tx: SqlExecutor,
    streamId: string,
    command: Command,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
  ) => {
    const finish = async (result: CommandResult<Event, State>) => ({ result, extra: await after(tx, result) })
    const { inbox } = metadata
    // A caller without an expected version wants its command applied to whatever the state is:
    // waiting for a concurrent command on the stream is cheaper than losing the race and deciding
    // again. A caller with one wants a conflict reported, so nothing is locked for it.
    const { state, version } = await stateStore.load(tx, streamId, { lock: metadata.expectedVersion === undefined })
    // A consumed message is recorded in its consumer's inbox with the events it caused, in the same
    // statement (see appendOnce). A message that is refused, or decides nothing, may be one handled
    // before: it is recorded on its own then (waiting for a copy still in flight to commit), and a
    // copy seen before changes nothing and refuses nothing; a refusal rolls the record back.
    const duplicate = () => finish({ state, version, events: [], duplicate: true })
    const refuse = async (error: AppError) => {
      if (inbox && !(await markHandled(tx, inbox.consumer, inbox.messageId))) return duplicate()
      throw error
    }
    if (metadata.expectedVersion !== undefined && metadata.expectedVersion !== version) {
      if (version === 0) return refuse(notFound(streamType, streamId))
      return refuse(
        new AppError(
          'VERSION_CONFLICT',
          `${streamType} ${streamId} is at version ${version}, not the expected ${metadata.expectedVersion}`,
          { details: { currentVersion: version, expectedVersion: metadata.expectedVersion } },
        ),
      )
    }
    const now = clock().toISOString()
    const decision = decider.decide(command, state, { now })
    if (!decision.ok) {
      return refuse(
        new AppError(decision.error.code, decision.error.message, {
          ...(decision.error.fields ? { fields: decision.error.fields } : {}),
          details: { [`${streamType}Id`]: streamId },
        }),
      )
    }
    if (decision.events.length === 0) {
      if (inbox && !(await markHandled(tx, inbox.consumer, inbox.messageId))) return duplicate()
      return finish({ state, version, events: [], duplicate: false })
    }

    const eventMetadata = eventMetadataOf(metadata)
    let stored: StoredEvent[]
    try {
      const decided = decision.events.map((event) => newEvent(event, now, eventMetadata))
      const appended = await appendOnce(
        tx,
        { id: streamId, type: streamType, expectedVersion: version },
        seal ? await sealEach(tx, decided, state) : decided,
        inbox,
      )
      if (appended.duplicate) return duplicate()
      stored = appended.stored
    } catch (error) {
      if (isAppError(error, 'VERSION_CONFLICT') && metadata.expectedVersion === undefined) {
        throw Object.assign(error, { [RACE]: true })
      }
      throw error
    }
    const events = stored.map((e) => toDomainEvent<Event>(e))
    let next = state
    for (const event of events) next = decider.evolve(next, event)
    const nextVersion = version + events.length
    await stateStore.save(tx, streamId, next, nextVersion)
    const outboxIds = await enqueue(
      tx,
      events.flatMap((event) => options.toMessages(event, eventMetadata)),
    )
    return finish({ state: next, version: nextVersion, events, duplicate: false, outboxIds })
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
        return transact(streamId, command, traced.traceparent ? { ...metadata, ...traced } : metadata, after)
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
        if (outcome.result.events.length > 0) options.onCommitted()
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

  const { loadMany, saveMany } = stateStore
  const handleBatch: CommandHandler<Command, Event, State>['handleBatch'] = async (items, batchOptions) => {
    if (!loadMany || !saveMany) throw new NotForBatch(`the ${streamType} state store has no loadMany/saveMany`)
    const results: (CommandResult<Event, State> | null)[] = items.map(() => null)
    if (items.length === 0) return results
    const consumer = items[0]?.metadata.inbox.consumer as string
    if (items.some((item) => item.metadata.inbox.consumer !== consumer)) throw new NotForBatch('several consumers')
    // The batch's transaction as a span; each item's messages keep the trace context of the message
    // it came from (its consume span), so every order's trace goes on through the batch.
    const span = tracer.startSpan(`${streamType} command batch`, {
      attributes: { 'orderflow.stream_type': streamType, 'orderflow.batch_size': items.length },
    })
    const transaction = db.transaction(async (tx) => {
      // 1. Every message into the inbox at once: those it had already are duplicates.
      const { rows: inserted } = await tx.query<{ message_id: string }>(
        `INSERT INTO inbox (consumer, message_id) SELECT $1, m FROM unnest($2::text[]) AS m
         ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id`,
        [consumer, items.map((item) => item.metadata.inbox.messageId)],
      )
      const fresh = new Set(inserted.map((row) => row.message_id))
      // 2. The states of every stream the batch's known commands address, locked in id order.
      const known = items.flatMap((item) =>
        'command' in item && fresh.has(item.metadata.inbox.messageId) ? [streamOfItem(item)] : [],
      )
      function streamOfItem(item: BatchCommand<Command, State>) {
        return batchOptions.streamOf((item as { command: Command }).command)
      }
      const states = await loadMany(tx, known, { lock: true })
      const stateOf = async (streamId: string) => {
        let current = states.get(streamId)
        if (!current) {
          // A stream first named by a mapping that read state: read on its own (rare).
          current = (await loadMany(tx, [streamId], { lock: true })).get(streamId) ?? {
            state: decider.initialState(),
            version: 0,
          }
          states.set(streamId, current)
        }
        return current
      }
      for (const id of new Set(known))
        if (!states.has(id)) states.set(id, { state: decider.initialState(), version: 0 })

      // 3. The decisions, in order, each on the state the ones before it left.
      const now = clock().toISOString()
      const appended: NewStreamEvent[] = []
      const messages: OutgoingMessage[] = []
      const applied: { index: number; command: Command; messages: number }[] = []
      const touched = new Set<string>()
      for (const [index, item] of items.entries()) {
        const { metadata } = item
        if (!fresh.delete(metadata.inbox.messageId)) {
          // Handled before: nothing to do, and nothing read (its state is not the batch's to give).
          results[index] = { state: decider.initialState(), version: 0, events: [], duplicate: true }
          continue
        }
        const command = 'command' in item ? item.command : await item.resolve(async (id) => (await stateOf(id)).state)
        if (command === null || command === undefined) continue
        const streamId = batchOptions.streamOf(command)
        const current = await stateOf(streamId)
        if (metadata.expectedVersion !== undefined && metadata.expectedVersion !== current.version) {
          throw new NotForBatch(`${streamType} ${streamId} is not at the expected version`)
        }
        const decision = decider.decide(command, current.state, { now })
        if (!decision.ok) throw new NotForBatch(`${decision.error.code}: ${decision.error.message}`)
        if (decision.events.length === 0) {
          results[index] = { state: current.state, version: current.version, events: [], duplicate: false }
          applied.push({ index, command, messages: 0 })
          continue
        }
        const eventMetadata = eventMetadataOf(metadata)
        let { state, version } = current
        const events: DomainEvent<Event>[] = []
        const before = messages.length
        for (const decided of decision.events) {
          version++
          const made = newEvent(decided, now, eventMetadata)
          const event: NewStreamEvent = {
            streamId,
            streamType,
            version,
            ...(seal ? await seal(tx, made, current.state) : made),
          }
          const { eventType, data } = event
          appended.push(event)
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
          messages.push(...options.toMessages(domain, eventMetadata))
        }
        states.set(streamId, { state, version })
        touched.add(streamId)
        results[index] = { state, version, events, duplicate: false }
        applied.push({ index, command, messages: messages.length - before })
      }

      // 4. Every event, every changed state, every message: one statement each.
      await appendMany(tx, appended)
      await saveMany(
        tx,
        [...touched].map((streamId) => {
          const { state, version } = states.get(streamId) as { state: State; version: number }
          return { streamId, state, version }
        }),
      )
      const outboxIds = await enqueue(tx, messages)
      let next = 0
      const timers: TimerChange[] = []
      for (const { index, command, messages: count } of applied) {
        const result = results[index] as CommandResult<Event, State>
        result.outboxIds = outboxIds.slice(next, next + count)
        next += count
        if (batchOptions.timers) {
          timers.push(...batchOptions.timers(result, command, items[index]?.metadata as CommandMetadata))
        }
      }
      await writeTimerChanges(tx, timers)
      return appended.length > 0
    })
    const outcome = await endingSpan(span, transaction)
    if (outcome) options.onCommitted()
    return results
  }

  return {
    handleWith,
    handleBatch,
    batches: Boolean(loadMany && saveMany),
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
