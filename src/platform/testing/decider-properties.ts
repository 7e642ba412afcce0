import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Decider, Recorded, TypedEvent } from '../es/decider.ts'

/**
 * Property checks for any decider: random sequences of commands, applied the way the command
 * handler applies them (decide on the current state, record each event with the next version,
 * evolve), never break what must always hold. Every decider gets two properties for free:
 * - a rejected command emits nothing and leaves the state as it was (it is not even evolved);
 * - versions are contiguous: the state's own `version`, where it has one, is the number of events.
 * and the service adds its own invariants (totals, at most one capture, …).
 */
export function checkDeciderProperties<Command, Event extends TypedEvent, State>(options: {
  decider: Decider<Command, Event, State>
  /** Commands for one stream (they all name the same aggregate). */
  command: fc.Arbitrary<Command>
  aggregateId: string
  /** What must hold after every step; throw (assert) when it does not. */
  invariant?: (state: State, history: readonly Recorded<Event>[]) => void
  maxCommands?: number
  runs?: number
}): void {
  const { decider, aggregateId } = options
  fc.assert(
    fc.property(fc.array(options.command, { minLength: 1, maxLength: options.maxCommands ?? 30 }), (commands) => {
      let state = decider.initialState()
      const history: Recorded<Event>[] = []
      let clock = Date.parse('2026-01-01T00:00:00.000Z')
      for (const command of commands) {
        clock += 60_000
        const now = new Date(clock).toISOString()
        const before = JSON.stringify(state)
        const decision = decider.decide(command, state, { now })
        if (!decision.ok) {
          assert.equal(JSON.stringify(state), before, 'a rejected command changed nothing')
          continue
        }
        for (const event of decision.events) {
          const recorded = { ...event, aggregateId, occurredOn: now, version: history.length + 1 } as Recorded<Event>
          history.push(recorded)
          state = decider.evolve(state, recorded)
        }
        const version = (state as { version?: unknown } | null)?.version
        if (typeof version === 'number') assert.equal(version, history.length, 'the state is at the last event version')
        options.invariant?.(state, history)
      }
    }),
    { numRuns: options.runs ?? 300 },
  )
}
