import type { NewStreamEvent } from '../eventstore/event-store.ts'
import { endingSpan, tracer } from '../tracing.ts'
import type { OutgoingMessage } from '../transport/port.ts'
import {
  type BatchCommand,
  type CommandHandler,
  type CommandHandlerOptions,
  type CommandMetadata,
  type CommandResult,
  NotForBatch,
} from './command-handler.ts'
import type { TypedEvent } from './decider.ts'
import type { DecisionRecorder } from './decision-writes.ts'

/** A consumer's batch of commands in one transaction of a fixed number of statements (see `CommandHandler.handleBatch`). */
export function batchHandler<Command, Event extends TypedEvent, State>(
  options: CommandHandlerOptions<Command, Event, State>,
  recorder: DecisionRecorder<Command, Event, State>,
  clock: () => Date,
): CommandHandler<Command, Event, State>['handleBatch'] {
  const { db, decider, stateStore, streamType } = options
  const { record, write, committed } = recorder
  const { loadMany, claimMany, saveStep } = stateStore
  return async (items, batchOptions) => {
    if (!loadMany || !claimMany || !saveStep) {
      throw new NotForBatch(`the ${streamType} state store has no loadMany/claimMany/saveStep`)
    }
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
      // 1. Every message into the inbox at once (those it had already are duplicates), and in the
      // same statement the states of every stream the batch's commands address, and of every stream
      // a mapping that reads state asks for first, locked in id order. A duplicate's stream is
      // locked too: duplicates are few, and the batch's transaction is short.
      const known = items.flatMap((item) => ('command' in item ? [batchOptions.streamOf(item.command)] : []))
      const read = [...known, ...(await streamsRead(items))]
      const { fresh, states } = await claimMany(
        tx,
        { consumer, messageIds: items.map((item) => item.metadata.inbox.messageId) },
        read,
        { lock: true },
      )
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
      for (const id of new Set(read)) if (!states.has(id)) states.set(id, { state: decider.initialState(), version: 0 })

      // 2. The decisions, in order, each on the state the ones before it left.
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
        const before = messages.length
        const { state, version, events } = await record(tx, streamId, current, decision.events, metadata, now, {
          appended,
          messages,
        })
        states.set(streamId, { state, version })
        touched.add(streamId)
        results[index] = { state, version, events, duplicate: false }
        applied.push({ index, command, messages: messages.length - before })
      }

      // 3. Every event, every changed state, every message, the timers: one statement.
      await write(
        tx,
        { appended, messages },
        states,
        touched,
        applied.map(({ index, command, messages: count }) => ({
          result: results[index] as CommandResult<Event, State>,
          command,
          metadata: items[index]?.metadata as CommandMetadata,
          messages: count,
        })),
        options.timers,
      )
      return appended.length > 0
    })
    const outcome = await endingSpan(span, transaction)
    if (outcome) committed()
    return results
  }
}

/** Thrown by a probe's `load`: the mapping's answer is not wanted, only the stream it asked for. */
const PROBED = Symbol('probed')

/**
 * The streams the batch's mappings that read state ask for first, found by running each with a
 * `load` that notes the stream and answers nothing: a journey's event addressing an order that
 * reads the order (to check a capture against its total) costs no statement of its own. A
 * mapping that, given the first state, asks for another stream still reads that one alone.
 */
async function streamsRead<Command, State>(items: readonly BatchCommand<Command, State>[]): Promise<string[]> {
  const streams: string[] = []
  for (const item of items) {
    if ('command' in item) continue
    await item
      .resolve((streamId) => {
        streams.push(streamId)
        return Promise.reject(PROBED)
      })
      .catch(() => {})
  }
  return streams
}
