import { z } from 'zod'
import type { EventTopic } from '../../contracts/define.ts'

/**
 * A stored event of an earlier schema version, read as the newest. The event store keeps an event
 * as its writer decided it (the domain's form: amounts in minor units); the contracts' upcasters
 * map the wire form. So an old event goes the way a consumer would read it off its topic: encoded
 * with its own version's schema, then decoded, which runs the upcasters from its version to the
 * newest and checks the result against the newest schema. The newest version (every event written
 * since) comes back as it is, at no cost.
 *
 * Readers of the store use it: projections (the order read model), replay, the history route. An
 * event that no longer reads (its upcaster fails, the result fails the newest schema) throws: a
 * broken upcaster must stop a rebuild, never skip an event silently.
 */
/**
 * A stored event's wire form in the version it was stored with (not upcast): what a replay that
 * re-publishes events exactly as they were first published sends (`npm run orderflow -- replay
 * --as-stored`), for consumers pinned to that version.
 */
export function encodeAsStored<Event extends { eventType: string; schemaVersion?: number; aggregateId: string }>(
  topic: Pick<EventTopic<unknown>, 'topic' | 'contract'>,
  event: Event,
): Record<string, unknown> {
  const stored = event.schemaVersion ?? 1
  const schema = topic.contract.messages.find((m) => m.eventType === event.eventType)?.versions[stored]
  if (!schema) {
    throw new Error(`${event.eventType} ${event.aggregateId}: ${topic.topic} has no schemaVersion ${stored}`)
  }
  return z.encode(schema as z.ZodType, event as never) as Record<string, unknown>
}

export function upcastStored<Event extends { eventType: string; schemaVersion?: number; aggregateId: string }>(
  topic: Pick<EventTopic<unknown>, 'topic' | 'contract' | 'decode' | 'latestVersion'>,
  event: Event,
): Event {
  const stored = event.schemaVersion ?? 1
  const newest = topic.latestVersion(event.eventType)
  if (stored === newest) return event
  const schema = topic.contract.messages.find((m) => m.eventType === event.eventType)?.versions[stored]
  if (!schema || stored > newest) {
    throw new Error(
      `${event.eventType} ${event.aggregateId} is stored as schemaVersion ${stored}, which ${topic.topic} does not know (newest ${newest})`,
    )
  }
  const wire = z.encode(schema as z.ZodType, event as never)
  const decoded = topic.decode(JSON.stringify(wire))
  if (!decoded.ok) {
    throw new Error(
      `${event.eventType} ${event.aggregateId} (schemaVersion ${stored}) does not read as version ${newest}: ${decoded.reason} ${decoded.message}`,
    )
  }
  return decoded.event as Event
}
