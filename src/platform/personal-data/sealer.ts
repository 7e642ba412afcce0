import type { NewEvent } from '../eventstore/event-store.ts'
import type { SqlExecutor } from '../sql/port.ts'
import type { PersonalData } from './personal-data.ts'

/** Which fields of which events of an aggregate are personal, and whose (the data subject: the customer). */
export interface PersonalFields<State> {
  /** The personal fields of each event type that has any, by name at the top level of its data. */
  fields: Readonly<Record<string, readonly string[]>>
  /** The data subject of an event's personal fields: from its data, or the stream's state before it. */
  subjectOf(data: Record<string, unknown>, state: State): string
}

/**
 * The command handler's `seal` for an aggregate with personal fields: each event's personal fields
 * sealed with its subject's key, in the command's transaction, before anything stores them. A value
 * that arrives sealed (carried on from another service's event) stays as it is. Without
 * `personalData` (a tool that only reads) an event with personal fields in it is refused: they are
 * never stored in clear.
 */
export function personalSealer<State>(
  streamType: string,
  personal: PersonalFields<State>,
  personalData: PersonalData | undefined,
): (tx: SqlExecutor, event: NewEvent, state: State) => Promise<NewEvent> {
  return async (tx, event, state) => {
    const fields = personal.fields[event.eventType]
    if (!fields || fields.every((f) => event.data[f] === undefined || event.data[f] === null)) return event
    if (!personalData) {
      throw new Error(
        `${event.eventType} carries personal fields and the ${streamType} aggregate has no personalData to seal them`,
      )
    }
    const subject = personal.subjectOf(event.data, state)
    return { ...event, data: await personalData.sealFields(tx, subject, event.eventId, event.data, fields) }
  }
}
