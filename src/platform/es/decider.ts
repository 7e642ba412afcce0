import type { ErrorCode, FieldError } from '../errors.ts'

/**
 * A pure decider (emmett's shape): `decide` turns a command and the current state into the events
 * that happened, or a rejection; `evolve` folds one recorded event into the state. No I/O, no clock
 * and no randomness: ids come in with the command, time in the context.
 */

/** Why a command was refused; it becomes an `AppError` with this code (never retried). */
export interface Rejection {
  code: ErrorCode
  message: string
  fields?: FieldError[]
}

export type Decision<Event> = { ok: true; events: Event[] } | { ok: false; error: Rejection }

export interface DecideContext {
  /** The time of the decision (ISO-8601 UTC); the events' `occurredOn` is the same instant. */
  now: string
}

/** The envelope fields `evolve` may read from a recorded event. */
export interface RecordedFields {
  aggregateId: string
  occurredOn: string
  version: number
}

export type Recorded<Event> = Event & RecordedFields

/** What every event and command of a decider carries: its discriminator. */
export interface TypedEvent {
  eventType: string
}

export interface Decider<Command, Event extends TypedEvent, State> {
  initialState(): State
  decide(command: Command, state: State, context: DecideContext): Decision<Event>
  evolve(state: State, event: Recorded<Event>): State
}

export const accept = <Event>(...events: Event[]): Decision<Event> => ({ ok: true, events })

export function reject(code: ErrorCode, message: string, fields?: FieldError[]): { ok: false; error: Rejection } {
  return { ok: false, error: fields === undefined ? { code, message } : { code, message, fields } }
}

export function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`)
}
