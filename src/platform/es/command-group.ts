import type { NewStreamEvent } from '../eventstore/event-store.ts'
import type { SqlExecutor } from '../sql/port.ts'
import type { OutgoingMessage } from '../transport/port.ts'
import type { CommandGrouping, CommandHandlerOptions, CommandMetadata, CommandResult } from './command-handler.ts'
import type { TypedEvent } from './decider.ts'
import { type DecisionRecorder, refusal, staleVersion } from './decision-writes.ts'

/** Runs one command in its own transaction (the command handler's path for one command). */
type Transact<Command, Event, State> = <T>(
  streamId: string,
  command: Command,
  metadata: CommandMetadata,
  after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
) => Promise<{ result: CommandResult<Event, State>; extra: T }>

/**
 * Group commit. A command from outside a consumer runs at once while fewer than `maxInFlight` of
 * them run (idle, it waits for nothing); the ones that arrive meanwhile queue, and the next free
 * slot takes up to `maxSize` of them into one transaction (`decideGroup`): one locked read of every
 * stream, the decisions in arrival order, one append, one state save, one outbox insert and one
 * timer write for the group, then each command's own `after`. A refusal or a stale expected
 * version is that command's answer alone; any failure of the shared transaction runs each command
 * again alone, in arrival order, so what each caller gets is what it would have got alone.
 */
export function commandGroups<Command, Event extends TypedEvent, State>(
  options: CommandHandlerOptions<Command, Event, State>,
  recorder: DecisionRecorder<Command, Event, State>,
  clock: () => Date,
  transact: Transact<Command, Event, State>,
): Transact<Command, Event, State> {
  const { db, decider, stateStore, streamType } = options
  const { record, write, committed } = recorder
  const { loadMany, saveStep } = stateStore
  const grouping = options.group ?? db.grouping
  // No grouping without a store that reads and writes many streams at once, or with groups of one.
  const limits: CommandGrouping | undefined =
    grouping && grouping.maxSize > 1 && loadMany && saveStep ? grouping : undefined
  const waiting: Waiting[] = []
  let running = 0
  interface Waiting {
    streamId: string
    command: Command
    metadata: CommandMetadata
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<unknown>
    resolve: (value: { result: CommandResult<Event, State>; extra: unknown }) => void
    reject: (error: unknown) => void
  }
  const next = () => {
    running--
    while (limits && running < limits.maxInFlight && waiting.length > 0) {
      running++
      void runGroup(waiting.splice(0, limits.maxSize)).finally(next)
    }
  }
  const grouped = <T>(
    streamId: string,
    command: Command,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<Event, State>) => Promise<T>,
  ): Promise<{ result: CommandResult<Event, State>; extra: T }> => {
    // A consumer's message has its own batch path, and its inbox row to keep.
    if (!limits || metadata.inbox) return transact(streamId, command, metadata, after)
    if (running < limits.maxInFlight) {
      running++
      return transact(streamId, command, metadata, after).finally(next)
    }
    return new Promise((resolve, reject) => {
      waiting.push({
        streamId,
        command,
        metadata,
        after,
        resolve: resolve as Waiting['resolve'],
        reject,
      })
    })
  }
  const alone = (item: Waiting) =>
    transact(item.streamId, item.command, item.metadata, item.after).then(item.resolve, item.reject)
  const runGroup = async (group: Waiting[]) => {
    if (group.length === 1) return alone(group[0] as Waiting)
    let outcomes: GroupOutcome[]
    try {
      outcomes = await db.transaction((tx) => decideGroup(tx, group))
    } catch {
      for (const item of group) await alone(item)
      return
    }
    if (outcomes.some((o) => o.ok && o.value.result.events.length > 0)) committed()
    group.forEach((item, i) => {
      const outcome = outcomes[i]
      if (outcome?.ok) item.resolve(outcome.value)
      else item.reject(outcome?.error)
    })
  }
  type GroupOutcome =
    | { ok: true; value: { result: CommandResult<Event, State>; extra: unknown } }
    | { ok: false; error: unknown }
  const decideGroup = async (tx: SqlExecutor, group: readonly Waiting[]): Promise<GroupOutcome[]> => {
    const states = await (loadMany as NonNullable<typeof loadMany>)(tx, [...new Set(group.map((g) => g.streamId))], {
      lock: true,
    })
    const now = clock().toISOString()
    const into = { appended: [] as NewStreamEvent[], messages: [] as OutgoingMessage[] }
    const touched = new Set<string>()
    const decided: { index: number; result: CommandResult<Event, State>; messages: number }[] = []
    const outcomes: GroupOutcome[] = group.map(() => ({ ok: false, error: undefined }))
    for (const [index, { streamId, command, metadata }] of group.entries()) {
      const current = states.get(streamId) ?? { state: decider.initialState(), version: 0 }
      const stale = staleVersion(streamType, streamId, metadata.expectedVersion, current.version)
      if (stale) {
        outcomes[index] = { ok: false, error: stale }
        continue
      }
      const decision = decider.decide(command, current.state, { now })
      if (!decision.ok) {
        outcomes[index] = { ok: false, error: refusal(streamType, streamId, decision.error) }
        continue
      }
      const before = into.messages.length
      const { state, version, events } = await record(tx, streamId, current, decision.events, metadata, now, into)
      states.set(streamId, { state, version })
      if (events.length > 0) touched.add(streamId)
      decided.push({
        index,
        result: { state, version, events, duplicate: false },
        messages: into.messages.length - before,
      })
    }
    await write(
      tx,
      into,
      states,
      touched,
      decided.map(({ index, result, messages }) => {
        const { command, metadata } = group[index] as Waiting
        return { result, command, metadata, messages }
      }),
      options.timers,
    )
    for (const { index, result } of decided) {
      outcomes[index] = { ok: true, value: { result, extra: await (group[index] as Waiting).after(tx, result) } }
    }
    return outcomes
  }

  return grouped
}
