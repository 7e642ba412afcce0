import { accept, type Decider, reject } from '../es/decider.ts'
import type { IncomingMessage } from '../transport/port.ts'
import type { Decoded } from '../transport/reliable-consumer.ts'

/**
 * The smallest event-sourced aggregate, for the platform's own tests: a counter that adds amounts,
 * refuses to go below zero, and decides nothing for an amount of zero. Its state lives in a
 * `counters` table (`COUNTERS_TABLE`) of the shape `jsonStateTable` expects.
 */
export type Add = { type: 'Add'; amount: number }
export type Added = { eventType: 'Added'; amount: number }
export type Counter = { total: number }

export const counter: Decider<Add, Added, Counter> = {
  initialState: () => ({ total: 0 }),
  decide: (command, state) =>
    state.total + command.amount < 0
      ? reject('INVALID_TRANSITION', 'a counter never goes below zero')
      : command.amount === 0
        ? { ok: true, events: [] }
        : accept({ eventType: 'Added', amount: command.amount }),
  evolve: (state, event) => ({ total: state.total + event.amount }),
}

export const COUNTERS_TABLE =
  'CREATE TABLE IF NOT EXISTS counters (id text PRIMARY KEY, version integer NOT NULL, state jsonb NOT NULL, updated_at timestamptz NOT NULL)'

/** A message that adds `amount` to `counter`, as the platform's consumer tests send them. */
export interface Job {
  id: string
  counter: string
  amount: number
  expectedVersion?: number
}

/** A job from its message, or why it is poison. */
export function decodeJob(message: IncomingMessage): Decoded<Job> {
  try {
    const job = JSON.parse(message.value) as Partial<Job>
    if (typeof job.id !== 'string' || typeof job.amount !== 'number' || typeof job.counter !== 'string') {
      return { ok: false, reason: 'INVALID_COMMAND', message: 'id, counter and amount are required' }
    }
    return { ok: true, value: job as Job }
  } catch {
    return { ok: false, reason: 'NOT_JSON', message: 'message is not JSON' }
  }
}

/**
 * A consumer's batch of jobs as the counters' commands for a command handler's `handleBatch`: each
 * job's id is its inbox entry in `consumer`, and its `expectedVersion`, if any, goes with it.
 */
export function jobCommands(items: readonly { value: Job }[], consumer: string) {
  return items.map(({ value: job }) => ({
    metadata: {
      inbox: { consumer, messageId: job.id },
      ...(job.expectedVersion !== undefined ? { expectedVersion: job.expectedVersion } : {}),
    },
    command: { type: 'Add', amount: job.amount, counter: job.counter } as Add,
  }))
}

/** The counter (the stream) a job's command adds to: `handleBatch`'s `streamOf` for `jobCommands`. */
export const counterOf = (command: Add): string => (command as Add & { counter: string }).counter
