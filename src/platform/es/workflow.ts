import type { DecideContext } from './decider.ts'

/**
 * A workflow (saga, process manager) as a pure function, in the shape of EventSourcing.NodeJS's
 * hotelManagement sample: it receives messages (events from other services, its own timeouts) and
 * answers with explicit outputs that a small processor carries out. Its state is rebuilt from what
 * it received and what it decided, so `evolve` folds both inputs and outputs.
 */

/** Send a command to another service (through the outbox, to `topic`, keyed by `key`). */
export interface Send<Command> {
  kind: 'Send'
  command: Command
}

/** Deliver `timeout` back to this workflow at `at` (ISO-8601 UTC) unless it completed first. */
export interface Schedule<Timeout> {
  kind: 'Schedule'
  at: string
  timeout: Timeout
}

/** The workflow reached an end state; later inputs are ignored. */
export interface Complete {
  kind: 'Complete'
  outcome: string
}

/**
 * The workflow cannot go on by itself (a compensation failed, retries are spent): it stops, stays
 * visible with its reason and is counted, so that an operator can act. Never silently stuck.
 */
export interface Park {
  kind: 'Park'
  reason: string
}

export type WorkflowOutput<Command, Timeout> = Send<Command> | Schedule<Timeout> | Complete | Park

export interface Workflow<Input, State, Command, Timeout> {
  initialState(): State
  decide(input: Input, state: State, context: DecideContext): WorkflowOutput<Command, Timeout>[]
  /** Folds one input, or one of the workflow's own outputs, into its state. */
  evolve(state: State, message: Input | WorkflowOutput<Command, Timeout>, context: DecideContext): State
}

export const send = <Command>(command: Command): Send<Command> => ({ kind: 'Send', command })
export const schedule = <Timeout>(at: string, timeout: Timeout): Schedule<Timeout> => ({
  kind: 'Schedule',
  at,
  timeout,
})
export const complete = (outcome: string): Complete => ({ kind: 'Complete', outcome })
export const park = (reason: string): Park => ({ kind: 'Park', reason })
