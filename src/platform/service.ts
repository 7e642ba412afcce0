import type { CommandTopic, EventTopic } from '../contracts/define.ts'
import type { TopicContract } from '../contracts/registry.ts'
import { AppError } from './errors.ts'
import {
  type BatchCommand,
  type CommandHandler,
  type CommandMetadata,
  type CommandResult,
  createCommandHandler,
  type DomainEvent,
  type StateStore,
  toDomainEvent,
} from './es/command-handler.ts'
import { causedBy } from './es/consumed.ts'
import type { Decider, TypedEvent } from './es/decider.ts'
import { eventMessage } from './es/messages.ts'
import type { ProjectionDefinition } from './es/projections.ts'
import type { ReplaySource } from './es/replay.ts'
import type { TimerChange } from './es/scheduler.ts'
import { encodeAsStored, upcastStored } from './es/upcast-stored.ts'
import type { ModuleContext, ServiceModule, StartedModule } from './module.ts'
import type { PersonalData } from './personal-data/personal-data.ts'
import { type PersonalFields, personalSealer } from './personal-data/sealer.ts'
import type { ModuleSettings, SettingsSlice } from './settings.ts'
import type { SqlExecutor } from './sql/port.ts'
import type { IncomingMessage, Subscription } from './transport/port.ts'
import type { Decoded } from './transport/reliable-consumer.ts'

/**
 * Services declare, the platform runs. A service says what its aggregate is (stream type, decider,
 * state table, the topic its events go out on) and what it takes in: `accept(commandTopic, …)` for
 * the commands sent to it, `react(eventTopic, …)` for the events of others it turns into commands.
 * The platform does the rest, the same way for every service: one consumer per intake with the
 * service's group, decoding at the boundary (poison is dead-lettered with its reason), the inbox
 * (a redelivered message changes nothing), a partition's backlog in one transaction, retries,
 * dead letters, when an intake runs (choreography's reactions), logs, and the topics for the AsyncAPI document.
 *
 * ```ts
 * export const dispatchService = defineService({
 *   name: 'dispatch',
 *   migrations: migrationsBeside(import.meta.url),
 *   aggregate: { streamType: 'dispatch', streamOf, decider: dispatchDecider, state: shipmentsTable, publishes: dispatchEvents },
 *   intake: [
 *     accept(dispatchCommands, { group: 'dispatch-service-commands', toCommand }),
 *     react(orderEvents, { group: 'dispatch-service', when: inChoreography, commandFor: dispatchCommandFor }),
 *   ],
 * })
 * ```
 */

/** What an event-sourced service keeps: one kind of stream, decided by a pure decider. */
export interface AggregateDefinition<Command, Event extends TypedEvent, State> {
  /** Names the kind of stream in the event store and in errors. */
  streamType: string
  /** The stream a command addresses. */
  streamOf(command: Command): string
  decider: Decider<Command, Event, State>
  /** Where the current state of each stream lives (one row per stream). */
  state: StateStore<State>
  /** The topic its events go out on: each event is one message there, keyed as the topic says. */
  publishes: Pick<EventTopic<DomainEvent<Event>>, 'topic' | 'contract' | 'encode' | 'keyOf'> &
    Partial<Pick<EventTopic<DomainEvent<Event>>, 'latestVersion' | 'decode'>>
  /**
   * The personal fields of its events, sealed with their data subject's key before anything stores
   * or publishes them (platform/personal-data): the store, the state table, the outbox, every topic
   * and the read models hold only ciphertext.
   */
  personal?: PersonalFields<State>
}

/** An aggregate at work: commands in, one transaction each (or a share of a consumer's batch). */
export interface Aggregate<Command, Event, State> {
  streamType: string
  execute(command: Command, metadata?: CommandMetadata): Promise<CommandResult<Event, State>>
  /** Runs `after` inside the command's transaction (a timer, an idempotent response). */
  executeWith<T>(
    command: Command,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
  ): Promise<{ result: CommandResult<Event, State>; extra: T }>
  /** The current state of a stream, read without a lock. */
  load(streamId: string): Promise<State>
  /** The current states of several streams in one statement (those without a row left out), without a lock. */
  loadMany(streamIds: readonly string[]): Promise<Map<string, State>>
  /** A consumer batch's commands in its transaction, one statement per table (`handleBatch`). */
  executeBatch(items: readonly BatchCommand<Command, State>[]): Promise<(CommandResult<Event, State> | null)[]>
  /** Whether `executeBatch` can run (the state store reads and writes many streams at once). */
  readonly batches: boolean
}

/**
 * The timers a service sets or removes with every command, whoever sent it (an intake, its routes, a
 * timer): decided from the command's result, written by the platform in the command's transaction
 * (for a consumer's batch, all of the batch's in one statement). The order's journey deadlines, say.
 */
export type Within<Command, Event, State> = (
  result: CommandResult<Event, State>,
  command: Command,
  metadata: CommandMetadata,
) => readonly TimerChange[]

export type { PersonalFields }

export function createAggregate<Command, Event extends TypedEvent, State>(
  definition: AggregateDefinition<Command, Event, State>,
  context: Pick<ModuleContext, 'db' | 'committed' | 'clock'> & {
    newEventId?: () => string
    within?: Within<Command, Event, State>
    /** Needed when the aggregate has personal fields. */
    personalData?: PersonalData
  },
): Aggregate<Command, Event, State> {
  const { publishes, streamOf, personal } = definition
  const { within, personalData } = context
  const seal = personal ? personalSealer(definition.streamType, personal, personalData) : undefined
  const handler: CommandHandler<Command, Event, State> = createCommandHandler({
    db: context.db,
    onCommitted: context.committed,
    streamType: definition.streamType,
    decider: definition.decider,
    stateStore: definition.state,
    toMessages: (event, metadata) => [
      eventMessage({
        topic: publishes.topic,
        key: publishes.keyOf(event),
        body: publishes.encode(event),
        event,
        metadata,
      }),
    ],
    clock: context.clock,
    ...(context.newEventId ? { newEventId: context.newEventId } : {}),
    ...(seal ? { seal } : {}),
    ...(within ? { timers: within } : {}),
    // Writers write the newest version of every type (readers upcast the older ones).
    ...(publishes.latestVersion ? { schemaVersion: (type: string) => publishes.latestVersion?.(type) ?? 1 } : {}),
  })
  const executeWith: Aggregate<Command, Event, State>['executeWith'] = (command, metadata, after) =>
    handler.handleWith(streamOf(command), command, metadata, after)
  return {
    streamType: definition.streamType,
    execute: async (command, metadata = {}) => (await executeWith(command, metadata, async () => undefined)).result,
    executeWith,
    load: async (streamId) => (await definition.state.load(context.db, streamId)).state,
    async loadMany(streamIds) {
      const { loadMany } = definition.state
      const unique = [...new Set(streamIds)]
      if (!loadMany) {
        const states = await Promise.all(
          unique.map(async (id) => [id, (await definition.state.load(context.db, id)).state] as const),
        )
        return new Map(states)
      }
      const rows = await loadMany(context.db, unique)
      return new Map([...rows].map(([id, row]) => [id, row.state]))
    },
    executeBatch: (items) => handler.handleBatch(items, { streamOf }),
    batches: handler.batches,
  }
}

/** What turning a message into a command may read besides the message. */
export interface IntakeContext<State = unknown> {
  /** The settings the service declared. */
  settings: ModuleSettings
  /** The current state of one of the service's streams. */
  load(streamId: string): Promise<State>
}

/**
 * What to do with a message whose command the service refused (a non-retryable error): dead-letter
 * it (the default), skip it as the expected outcome of a race (logged, with why), or retry it as a
 * message that came too early (with the consumer's retries; dead-lettered when they run out).
 */
export type Refusal = { action: 'dead-letter' } | { action: 'skip'; why: string; warn?: boolean } | { action: 'retry' }

/** A topic the service consumes, and how each of its messages becomes a command (or nothing). */
export interface Intake<Command, State = unknown> {
  kind: 'accept' | 'react'
  /** The consumer group: the service's own, one per intake. */
  group: string
  topics: readonly Pick<EventTopic<unknown> | CommandTopic<unknown>, 'topic' | 'contract' | 'decode'>[]
  toCommand(
    message: unknown,
    context: IntakeContext<State>,
  ): Command | null | undefined | Promise<Command | null | undefined>
  /** Given the refusal and the stream's state now, whether it is a dead letter (default), a skip or a retry. */
  whenRefused?(error: AppError, command: Command, state: State): Refusal
  /** At least this many retries (messages that may come early wait through them). */
  minRetries?: number
  /** Runs only when this says so of the service's settings (choreography's reactions); always when left out. */
  when?: (settings: ModuleSettings) => boolean
  /** Whether a partition's backlog may run in one transaction (default true): false for a call out. */
  batch: boolean
  /** Per-key parking (reliable-consumer.ts `parkKeys`); the service's default when left out. */
  parkKeys?: boolean
}

interface IntakeOptions<Command, State> {
  group: string
  /** Whether it runs, from the service's settings (`inChoreography`); always when left out. */
  when?: (settings: ModuleSettings) => boolean
  /** False when carrying a command out calls another system (a gateway): nothing slow may run in a batch. */
  batch?: boolean
  /** What a refused command's message is: a dead letter unless this says otherwise (`Refusal`). */
  whenRefused?: (error: AppError, command: Command, state: State) => Refusal
  /** At least this many retries, for messages that may arrive before what they depend on. */
  minRetries?: number
  /**
   * Whether a dead-lettered message parks its key: the key's later messages wait for an operator's
   * redrive or discard instead of overtaking it (default: the service's `parkKeys`).
   */
  parkKeys?: boolean
}

type Converts<Message, Command, State> = (
  message: Message,
  context: IntakeContext<State>,
) => Command | null | undefined | Promise<Command | null | undefined>

/**
 * The commands sent to the service on its command topic. A command's `expectedVersion` (in its
 * envelope) is checked against the stream, as an HTTP If-Match is.
 */
export function accept<Message, Command, State = unknown>(
  topic: CommandTopic<Message>,
  options: IntakeOptions<Command, State> & { toCommand: Converts<Message, Command, State> },
): Intake<Command, State> {
  return intake('accept', [topic], options, options.toCommand)
}

/**
 * Another service's events, each turned into a command to this service or into nothing. Several
 * topics in one group (`react([paymentEvents, dispatchEvents], …)`) are one consumer.
 */
export function react<Message, Command, State = unknown>(
  topic: EventTopic<Message> | readonly EventTopic<Message>[],
  options: IntakeOptions<Command, State> & { commandFor: Converts<Message, Command, State> },
): Intake<Command, State> {
  return intake('react', Array.isArray(topic) ? topic : [topic as EventTopic<Message>], options, options.commandFor)
}

function intake<Message, Command, State>(
  kind: Intake<Command, State>['kind'],
  topics: readonly (EventTopic<Message> | CommandTopic<Message>)[],
  options: IntakeOptions<Command, State>,
  toCommand: Converts<Message, Command, State>,
): Intake<Command, State> {
  return {
    kind,
    group: options.group,
    topics: topics as Intake<Command, State>['topics'],
    toCommand: toCommand as Intake<Command, State>['toCommand'],
    ...(options.when ? { when: options.when } : {}),
    ...(options.whenRefused ? { whenRefused: options.whenRefused } : {}),
    ...(options.minRetries !== undefined ? { minRetries: options.minRetries } : {}),
    ...(options.parkKeys !== undefined ? { parkKeys: options.parkKeys } : {}),
    batch: options.batch ?? true,
  }
}

/** A consumed message's id and correlation, whichever kind of message it is. */
type Cause =
  | { commandId: string; correlationId?: string; expectedVersion?: number }
  | { eventId: string; correlationId?: string }

export interface ServiceDefinition<
  Command,
  Event extends TypedEvent,
  State,
  Setup extends object,
  Handle extends object,
> {
  /** What `SERVICES` names, and the prefix of the service's logs. */
  name: string
  migrations?: URL
  /** The settings slices it reads (`context.settings.get(slice)`); see ServiceModule. */
  settings?: readonly SettingsSlice<unknown>[]
  /**
   * What the service needs built before its aggregate (a gateway client, a timer poller): given to
   * `aggregate` when that is a function, to `execute` and to `start`, and part of the module's handle.
   */
  setup?(context: ModuleContext): Setup | Promise<Setup>
  /** Its aggregate; the state store may need what `setup` built (`state: (setup) => table`). */
  aggregate: Omit<AggregateDefinition<Command, Event, State>, 'state'> & {
    state: StateStore<State> | ((setup: Setup) => StateStore<State>)
  }
  /** What the service consumes; the platform starts one consumer per intake (those whose `when` holds). */
  intake?: readonly Intake<Command, NoInfer<State>>[]
  /**
   * Per-key parking for every intake that does not say otherwise (default false): on where the
   * messages of one stream must be handled in order, as an aggregate's are.
   */
  parkKeys?: boolean
  /** Its projections, run by the process's one projection runner. */
  projections?: readonly ProjectionDefinition[]
  /**
   * Work a command needs done before its transaction, outside it (asking a payment gateway): given
   * the command and the current state of any stream (`load`, read without a lock), returns the
   * command as the transaction carries it out. The decider decides it again on the locked state, so
   * what changed in between (a race with another instance) is decided right. Every intake goes
   * through it: one command before its transaction; a consumer's batch with every command's
   * preparation at once, on the batch's states read in one statement, before the batch's one
   * transaction. A mapping that reads state reads it there too, before the transaction.
   */
  prepare?(
    command: Command,
    setup: Setup & { context: ModuleContext; load(streamId: string): Promise<State> },
  ): Promise<Command>
  /** Told of each command's result once it is committed (a metric, a log line), whoever sent it. */
  observe?(result: CommandResult<Event, State>, command: Command, setup: Setup & { context: ModuleContext }): void
  /**
   * The timers it sets or removes with every command, whoever sent the command (an intake, its
   * routes, a timer), written in the command's transaction: the order's journey deadlines, say.
   */
  within?(setup: Setup & { context: ModuleContext }): Within<Command, Event, State> | undefined
  /** Topics the service uses besides those of its aggregate and intake, for the AsyncAPI document. */
  topics?: readonly TopicContract[]
  /** Anything else it runs (routes, health checks), once the aggregate exists and before the intake starts. */
  start?(
    context: ModuleContext,
    service: ServiceParts<Command, Event, State> & Setup,
  ): Promise<StartedModule & Handle> | (StartedModule & Handle)
}

export interface ServiceParts<Command, Event, State> {
  aggregate: Aggregate<Command, Event, State>
  /** Each running intake's consumer, by group (once started). */
  subscriptions?: ReadonlyMap<string, Subscription>
  /** Carries a command out as every intake does (`prepare`, the aggregate's transaction, `observe`). */
  execute(command: Command, metadata?: CommandMetadata): Promise<CommandResult<Event, State>>
  /**
   * Carries several out as a consumer's batch is (`prepare` for all, one transaction, `observe`):
   * each needs an inbox entry. Throws what the aggregate's `executeBatch` throws (`NotForBatch`, a
   * conflict) for the caller to go one at a time.
   */
  executeBatch(items: readonly BatchCommand<Command, State>[]): Promise<(CommandResult<Event, State> | null)[]>
}

/** A declared service: a module, and what it reads and writes for those who ask (the ACL table). */
export interface DeclaredService<Handle extends object> extends ServiceModule<Handle> {
  /** What it consumes, each with its group and when it runs. */
  intake: readonly Pick<Intake<unknown>, 'group' | 'topics' | 'when'>[]
  /** The topic its events go out on. */
  publishes: string
}

/** The service as a module the platform runs (`buildApp`, `SERVICES`). */
export function defineService<
  Command,
  Event extends TypedEvent,
  State,
  Setup extends object = object,
  Handle extends object = object,
>(
  service: ServiceDefinition<Command, Event, State, Setup, Handle>,
): DeclaredService<ServiceParts<Command, Event, State> & Setup & Handle> {
  const intake = service.intake ?? []
  const topics = new Map<string, TopicContract>()
  topics.set(service.aggregate.publishes.topic, service.aggregate.publishes.contract)
  for (const each of intake) for (const topic of each.topics) topics.set(topic.topic, topic.contract)
  for (const contract of service.topics ?? []) topics.set(contract.topic, contract)

  return {
    name: service.name,
    intake,
    publishes: service.aggregate.publishes.topic,
    replay: replaySourcesOf(service.aggregate.streamType, service.aggregate.publishes),
    ...(service.migrations ? { migrations: service.migrations } : {}),
    ...(service.settings ? { settings: service.settings } : {}),
    ...(service.projections ? { projections: service.projections } : {}),
    topics: [...topics.values()],
    async start(context) {
      const setup = ((await service.setup?.(context)) ?? {}) as Setup
      const { state } = service.aggregate
      const definition = { ...service.aggregate, state: typeof state === 'function' ? state(setup) : state }
      const within = service.within?.({ ...setup, context })
      const aggregate = createAggregate(definition, { ...context, ...(within ? { within } : {}) })
      const { prepare, observe } = service
      const hooks = { ...setup, context }
      const execute = async (command: Command, metadata: CommandMetadata = {}) => {
        const ready = prepare ? await prepare(command, { ...hooks, load: aggregate.load }) : command
        const result = await aggregate.execute(ready, metadata)
        observe?.(result, ready, hooks)
        return result
      }
      /**
       * A batch's commands prepared at once (`prepare`), outside its transaction: the states of the
       * streams they address are read in one statement, when a preparation first asks for one.
       */
      const prepareBatch = async (
        commands: readonly BatchCommand<Command, State>[],
      ): Promise<readonly BatchCommand<Command, State>[]> => {
        if (!prepare) return commands
        const addressed = new Set(
          commands.flatMap((item) => ('command' in item ? [definition.streamOf(item.command)] : [])),
        )
        let states: Promise<Map<string, State>> | undefined
        const load = async (streamId: string): Promise<State> => {
          if (!addressed.has(streamId)) return aggregate.load(streamId)
          states ??= aggregate.loadMany([...addressed])
          const known = await states
          return known.has(streamId) ? (known.get(streamId) as State) : definition.decider.initialState()
        }
        const resolved: BatchCommand<Command, State>[] = []
        for (const item of commands) {
          if ('command' in item) {
            resolved.push(item)
            continue
          }
          const command = await item.resolve(load)
          resolved.push(
            command === null || command === undefined
              ? { metadata: item.metadata, resolve: async () => null }
              : { metadata: item.metadata, command },
          )
        }
        return Promise.all(
          resolved.map(async (item) =>
            'command' in item
              ? { metadata: item.metadata, command: await prepare(item.command, { ...hooks, load }) }
              : item,
          ),
        )
      }
      /** Prepared commands in one transaction (the aggregate's batch), each result observed. */
      const commitBatch = async (prepared: readonly BatchCommand<Command, State>[]) => {
        const results = await aggregate.executeBatch(prepared)
        if (observe) {
          results.forEach((result, i) => {
            const item = prepared[i]
            if (result && item && 'command' in item) observe(result, item.command, hooks)
          })
        }
        return results
      }
      const executeBatch = async (items: readonly BatchCommand<Command, State>[]) =>
        commitBatch(await prepareBatch(items))
      const parts = { ...setup, aggregate, execute, executeBatch }
      const started = (await service.start?.(context, parts)) ?? ({} as StartedModule & Handle)
      const intakeContext: IntakeContext<State> = { settings: context.settings, load: aggregate.load }
      /** A mapping that reads a stream is left for the batch to run once it knows the batch's states. */
      const withoutState: IntakeContext<State> = {
        settings: context.settings,
        load: () => Promise.reject(new NeedsState()),
      }
      const subscriptions = new Map<string, Subscription>()
      try {
        for (const each of intake) {
          if (each.when && !each.when(context.settings)) continue
          const decoders = new Map(each.topics.map((topic) => [topic.topic, topic.decode]))
          /** A refusal's answer: only a domain's non-retryable refusal may be anything but a dead letter. */
          const refused = async (error: unknown, command: Command): Promise<Refusal> => {
            if (!each.whenRefused || !(error instanceof AppError) || error.retryable) return { action: 'dead-letter' }
            return each.whenRefused(error, command, await aggregate.load(definition.streamOf(command)))
          }
          /** A batch's messages as commands: known from each message alone, or found as the batch goes. */
          const commandsOf = async (items: readonly { value: Cause; message: IncomingMessage }[]) => {
            const commands: BatchCommand<Command, State>[] = []
            for (const { value: message, message: raw } of items) {
              const metadata = causedBy(raw, each.group, message) as BatchCommand<Command, State>['metadata']
              if ('expectedVersion' in message && message.expectedVersion !== undefined) {
                metadata.expectedVersion = message.expectedVersion
              }
              let command: Command | null | undefined
              try {
                command = await each.toCommand(message, withoutState)
              } catch (error) {
                if (!(error instanceof NeedsState)) throw error
                commands.push({
                  metadata,
                  resolve: (load) => Promise.resolve(each.toCommand(message, { settings: context.settings, load })),
                })
                continue
              }
              if (command !== null && command !== undefined) commands.push({ metadata, command })
            }
            return commands
          }
          const subscription = await context.consume<Cause>({
            groupId: each.group,
            batch: each.batch,
            parkKeys: each.parkKeys ?? service.parkKeys ?? false,
            topics: [...decoders.keys()],
            ...(each.minRetries === undefined
              ? {}
              : { retry: { max: Math.max(context.retry.max, each.minRetries), backoffMs: context.retry.backoffMs } }),
            decode: (message) => decodeIntake(decoders, message),
            // A partition's backlog in one statement per table: the commands of the messages, known
            // from each message alone, or (a mapping that reads a stream) found as the batch goes.
            ...(each.batch && aggregate.batches
              ? {
                  // A service that prepares its commands (a call out) does so before the batch's
                  // transaction, which the consumer opens only after this.
                  ...(prepare
                    ? {
                        prepareBatch: async (items: readonly { value: Cause; message: IncomingMessage }[]) =>
                          prepareBatch(await commandsOf(items)),
                      }
                    : {}),
                  handleBatch: async (
                    items: readonly { value: Cause; message: IncomingMessage }[],
                    prepared?: unknown,
                  ) => {
                    const results = await commitBatch(
                      (prepared as readonly BatchCommand<Command, State>[] | undefined) ?? (await commandsOf(items)),
                    )
                    if (context.logger.isLevelEnabled('debug')) {
                      context.logger.debug(
                        {
                          group: each.group,
                          streamType: definition.streamType,
                          messages: items.length,
                          applied: results.filter((r) => r && !r.duplicate).length,
                          duplicates: results.filter((r) => r?.duplicate).length,
                        },
                        `applied a batch of ${items.length} to ${definition.streamType}`,
                      )
                    }
                  },
                }
              : {}),
            handle: async (message, raw) => {
              const command = await each.toCommand(message, intakeContext)
              if (command === null || command === undefined) return
              const metadata = causedBy(raw, each.group, message)
              if ('expectedVersion' in message && message.expectedVersion !== undefined) {
                metadata.expectedVersion = message.expectedVersion
              }
              const logged = { group: each.group, topic: raw.topic, streamType: definition.streamType }
              let result: CommandResult<Event, State>
              try {
                result = await execute(command, metadata)
              } catch (error) {
                const refusal = await refused(error, command)
                if (refusal.action === 'dead-letter') throw error
                if (refusal.action === 'retry') {
                  throw new AppError((error as AppError).code, `${(error as Error).message}; retrying`, {
                    retryable: true,
                    cause: error,
                  })
                }
                context.logger[refusal.warn ? 'warn' : 'info'](
                  { ...logged, ...metadata.inbox },
                  `${describe(command)} from ${raw.topic} skipped: ${refusal.why}`,
                )
                return
              }
              context.logger.debug(
                { ...logged, duplicate: result.duplicate, events: result.events.map((e) => e.eventType) },
                result.duplicate
                  ? `${describe(command)} from ${raw.topic} was handled before; skipped`
                  : `applied ${describe(command)} from ${raw.topic} to ${definition.streamType}`,
              )
            },
          })
          subscriptions.set(each.group, subscription)
        }
      } catch (error) {
        await started.stop?.()
        throw error
      }
      return { ...started, ...parts, subscriptions }
    },
  }
}

/** A mapping asked for a stream's state while a batch was being read: it runs in the batch's order. */
class NeedsState extends Error {
  constructor() {
    super('the mapping reads state')
    this.name = 'NeedsState'
  }
}

function decodeIntake(
  decoders: ReadonlyMap<string, Intake<unknown>['topics'][number]['decode']>,
  message: IncomingMessage,
): Decoded<Cause> {
  const decode = decoders.get(message.topic)
  if (!decode) return { ok: false, reason: 'UNKNOWN_TOPIC', message: `nothing here reads ${message.topic}` }
  const result = decode(message.value)
  if (!result.ok) return result
  return { ok: true, value: ('event' in result ? result.event : result.command) as Cause }
}

const describe = (command: unknown): string => {
  const fields = command as { commandType?: string; orderId?: string }
  return `${fields.commandType ?? 'a command'}${fields.orderId ? ` for order ${fields.orderId}` : ''}`
}

/**
 * The replay sources of an aggregate: its stored events as the messages the outbox relay published
 * for them (same topic, key and headers), as the newest version of each type (through the
 * upcasters), or each in the version it was stored with.
 */
export function replaySourcesOf(
  streamType: string,
  publishes: AggregateDefinition<unknown, TypedEvent, unknown>['publishes'],
): { newest: ReplaySource; asStored: ReplaySource } {
  type Stored = DomainEvent<TypedEvent>
  const source = (body: (event: Stored) => unknown, read: (event: Stored) => Stored): ReplaySource => ({
    streamType,
    topics: [publishes.topic],
    toMessages: (stored) => {
      const event = read(toDomainEvent<TypedEvent>(stored))
      return [
        eventMessage({
          topic: publishes.topic,
          key: publishes.keyOf(event),
          body: body(event),
          event,
          metadata: stored.metadata,
        }),
      ]
    },
  })
  const { latestVersion, decode } = publishes
  const upcasting = (event: Stored): Stored =>
    latestVersion && decode
      ? upcastStored({ topic: publishes.topic, contract: publishes.contract, latestVersion, decode }, event)
      : event
  return {
    newest: source((event) => publishes.encode(event), upcasting),
    asStored: source(
      (event) => encodeAsStored(publishes, event),
      (event) => event,
    ),
  }
}
