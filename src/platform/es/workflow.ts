import type { DecideContext } from './decider.ts'

/**
 * A workflow (saga, process manager) as a pure function, in the shape of EventSourcing.NodeJS's
 * hotelManagement sample: it receives messages (events from other services, its own timeouts) and
 * answers with explicit outputs that a processor carries out (`workflow-processor.ts`: one for
 * every workflow). Its state is rebuilt from what it received and what it decided, so `evolve`
 * folds both inputs and outputs. Where a message goes (topic, encoding) is the processor's routing
 * table, not the workflow's concern.
 */

/** Send a command to another service (through the outbox; its topic and key come from the processor's routes). */
export interface Send<Command> {
  kind: 'Send'
  command: Command
}

/**
 * Deliver `timeout` back to this workflow at `at` (ISO-8601 UTC) unless it ended first. An instance
 * has one timer: a later Schedule moves it, Complete and Park remove it.
 */
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

/** Publish an event of the workflow's own (through the outbox) for whoever listens: no one in particular is asked. */
export interface Publish<Event> {
  kind: 'Publish'
  event: Event
}

/**
 * Nothing to do, on purpose: the input is not for this workflow as it is (a stale timeout, an answer
 * to a question no longer asked). The reason goes to the log; an empty answer says the same silently.
 */
export interface Ignore {
  kind: 'Ignore'
  reason: string
}

export type WorkflowOutput<Command, Timeout, Event = never> =
  | Send<Command>
  | Publish<Event>
  | Schedule<Timeout>
  | Complete
  | Park
  | Ignore

export interface Workflow<Input, State, Command, Timeout, Event = never> {
  initialState(): State
  decide(input: Input, state: State, context: DecideContext): WorkflowOutput<Command, Timeout, Event>[]
  /** Folds one input, or one of the workflow's own outputs, into its state. */
  evolve(state: State, message: Input | WorkflowOutput<Command, Timeout, Event>, context: DecideContext): State
}

export const send = <Command>(command: Command): Send<Command> => ({ kind: 'Send', command })
export const publish = <Event>(event: Event): Publish<Event> => ({ kind: 'Publish', event })
export const schedule = <Timeout>(at: string, timeout: Timeout): Schedule<Timeout> => ({
  kind: 'Schedule',
  at,
  timeout,
})
export const complete = (outcome: string): Complete => ({ kind: 'Complete', outcome })
export const park = (reason: string): Park => ({ kind: 'Park', reason })
export const ignore = (reason: string): Ignore => ({ kind: 'Ignore', reason })
