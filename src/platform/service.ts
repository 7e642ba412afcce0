import type { CommandTopic, EventTopic } from '../contracts/define.ts'
import type { TopicContract } from '../contracts/registry.ts'
import type { Config } from './config.ts'
import {
  type CommandHandler,
  type CommandMetadata,
  type CommandResult,
  createCommandHandler,
  type DomainEvent,
  type StateStore,
} from './es/command-handler.ts'
import { causedBy } from './es/consumed.ts'
import type { Decider, TypedEvent } from './es/decider.ts'
import { eventMessage } from './es/messages.ts'
import type { ModuleContext, ServiceModule, StartedModule } from './module.ts'
import type { SqlExecutor } from './sql/port.ts'
import type { IncomingMessage } from './transport/port.ts'

/**
 * Services declare, the platform runs. A service says what its aggregate is (stream type, decider,
 * state table, the topic its events go out on) and what it takes in: `accept(commandTopic, …)` for
 * the commands sent to it, `react(eventTopic, …)` for the events of others it turns into commands.
 * The platform does the rest, the same way for every service: one consumer per intake with the
 * service's group, decoding at the boundary (poison is dead-lettered with its reason), the inbox
 * (a redelivered message changes nothing), a partition's backlog in one transaction, retries,
 * dead letters, the saga mode an intake belongs to, logs, and the topics for the AsyncAPI document.
 *
 * ```ts
 * export const dispatchService = defineService({
 *   name: 'dispatch',
 *   migrations: migrationsBeside(import.meta.url),
 *   aggregate: { streamType: 'dispatch', streamOf, decider: dispatchDecider, state: shipmentsTable, publishes: dispatchEvents },
 *   intake: [
 *     accept(dispatchCommands, { group: 'dispatch-service-commands', toCommand }),
 *     react(orderEvents, { group: 'dispatch-service', mode: 'choreography', commandFor: dispatchCommandFor }),
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
  publishes: Pick<EventTopic<DomainEvent<Event>>, 'topic' | 'contract' | 'encode' | 'keyOf'>
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
}

export function createAggregate<Command, Event extends TypedEvent, State>(
  definition: AggregateDefinition<Command, Event, State>,
  context: Pick<ModuleContext, 'db' | 'committed' | 'clock'>,
): Aggregate<Command, Event, State> {
  const { publishes } = definition
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
  })
  return {
    streamType: definition.streamType,
    execute: (command, metadata = {}) => handler.handle(definition.streamOf(command), command, metadata),
    executeWith: (command, metadata, after) =>
      handler.handleWith(definition.streamOf(command), command, metadata, after),
    load: async (streamId) => (await definition.state.load(context.db, streamId)).state,
  }
}

type SagaMode = Config['sagaMode']

/** What turning a message into a command may read besides the message: the process's settings. */
export interface IntakeContext {
  config: Config
}

/** A topic the service consumes, and how each of its messages becomes a command (or nothing). */
export interface Intake<Command> {
  kind: 'accept' | 'react'
  /** The consumer group: the service's own, one per intake. */
  group: string
  topic: Pick<EventTopic<unknown> | CommandTopic<unknown>, 'topic' | 'contract' | 'decode'>
  toCommand(message: unknown, context: IntakeContext): Command | null | undefined
  /** Runs only in this saga mode (choreography reactions); always when left out. */
  mode?: SagaMode
  /** Whether a partition's backlog may run in one transaction (default true): false for a call out. */
  batch: boolean
}

interface IntakeOptions {
  group: string
  mode?: SagaMode
  /** False when carrying a command out calls another system (a gateway): nothing slow may run in a batch. */
  batch?: boolean
}

/** The commands sent to the service on its command topic. */
export function accept<Message, Command>(
  topic: CommandTopic<Message>,
  options: IntakeOptions & { toCommand: (command: Message, context: IntakeContext) => Command | null | undefined },
): Intake<Command> {
  return intake('accept', topic, options, options.toCommand)
}

/** Another service's events, each turned into a command to this service or into nothing. */
export function react<Message, Command>(
  topic: EventTopic<Message>,
  options: IntakeOptions & {
    commandFor: (event: Message, context: IntakeContext) => Command | null | undefined
  },
): Intake<Command> {
  return intake('react', topic, options, options.commandFor)
}

function intake<Message, Command>(
  kind: Intake<Command>['kind'],
  topic: EventTopic<Message> | CommandTopic<Message>,
  options: IntakeOptions,
  toCommand: (message: Message, context: IntakeContext) => Command | null | undefined,
): Intake<Command> {
  return {
    kind,
    group: options.group,
    topic: topic as Intake<Command>['topic'],
    toCommand: toCommand as Intake<Command>['toCommand'],
    ...(options.mode ? { mode: options.mode } : {}),
    batch: options.batch ?? true,
  }
}

/** A consumed message's id and correlation, whichever kind of message it is. */
type Cause = { commandId: string; correlationId?: string } | { eventId: string; correlationId?: string }

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
  /**
   * What the service needs built before its aggregate (a gateway client, a timer poller): given to
   * `aggregate` when that is a function, to `execute` and to `start`, and part of the module's handle.
   */
  setup?(context: ModuleContext): Setup | Promise<Setup>
  /** Its aggregate; the state store may need what `setup` built (`state: (setup) => table`). */
  aggregate: Omit<AggregateDefinition<Command, Event, State>, 'state'> & {
    state: StateStore<State> | ((setup: Setup) => StateStore<State>)
  }
  /** What the service consumes; the platform starts one consumer per intake (in its saga mode). */
  intake?: readonly Intake<Command>[]
  /**
   * How a command is carried out when it takes more than the aggregate's transaction (asking a
   * gateway first, a timer in the same transaction). Every intake goes through it.
   */
  execute?(
    aggregate: Aggregate<Command, Event, State>,
    command: Command,
    metadata: CommandMetadata,
    setup: Setup & { context: ModuleContext },
  ): Promise<CommandResult<Event, State>>
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
  /** Carries a command out as every intake does (the service's `execute`, or the aggregate's). */
  execute(command: Command, metadata?: CommandMetadata): Promise<CommandResult<Event, State>>
}

/** A declared service: a module, and what it reads and writes for those who ask (the ACL table). */
export interface DeclaredService<Handle extends object> extends ServiceModule<Handle> {
  /** What it consumes, each with its group and saga mode. */
  intake: readonly Pick<Intake<unknown>, 'group' | 'topic' | 'mode'>[]
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
  for (const each of intake) topics.set(each.topic.topic, each.topic.contract)
  for (const contract of service.topics ?? []) topics.set(contract.topic, contract)

  return {
    name: service.name,
    intake,
    publishes: service.aggregate.publishes.topic,
    ...(service.migrations ? { migrations: service.migrations } : {}),
    topics: [...topics.values()],
    async start(context) {
      const setup = ((await service.setup?.(context)) ?? {}) as Setup
      const { state } = service.aggregate
      const definition = { ...service.aggregate, state: typeof state === 'function' ? state(setup) : state }
      const aggregate = createAggregate(definition, context)
      const execute = (command: Command, metadata: CommandMetadata = {}) =>
        service.execute
          ? service.execute(aggregate, command, metadata, { ...setup, context })
          : aggregate.execute(command, metadata)
      const parts = { ...setup, aggregate, execute }
      const started = (await service.start?.(context, parts)) ?? ({} as StartedModule & Handle)
      try {
        for (const each of intake) {
          if (each.mode && each.mode !== context.config.sagaMode) continue
          await context.consume<Cause>({
            groupId: each.group,
            batch: each.batch,
            topics: [each.topic.topic],
            decode: (message) => decodeIntake(each, message),
            handle: async (message, raw) => {
              const command = each.toCommand(message, context)
              if (command === null || command === undefined) return
              const result = await execute(command, causedBy(raw, each.group, message))
              context.logger.debug(
                {
                  group: each.group,
                  streamType: definition.streamType,
                  duplicate: result.duplicate,
                  events: result.events.map((e) => e.eventType),
                },
                result.duplicate
                  ? `${describe(command)} from ${each.topic.topic} was handled before; skipped`
                  : `applied ${describe(command)} from ${each.topic.topic} to ${definition.streamType}`,
              )
            },
          })
        }
      } catch (error) {
        await started.stop?.()
        throw error
      }
      return { ...started, ...parts }
    },
  }
}

function decodeIntake<Command>(intake: Intake<Command>, message: IncomingMessage) {
  const result = intake.topic.decode(message.value)
  if (!result.ok) return result
  return { ok: true as const, value: ('event' in result ? result.event : result.command) as Cause }
}

const describe = (command: unknown): string => {
  const fields = command as { commandType?: string; orderId?: string }
  return `${fields.commandType ?? 'a command'}${fields.orderId ? ` for order ${fields.orderId}` : ''}`
}
