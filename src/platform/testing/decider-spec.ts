import assert from 'node:assert/strict'
import type { DecideContext, Decider, Recorded, TypedEvent } from '../es/decider.ts'
import type { Workflow, WorkflowOutput } from '../es/workflow.ts'

/**
 * Given / when / then for pure deciders and workflows (emmett's `DeciderSpecification`), shared by
 * every service's unit tests:
 *
 *   const spec = deciderSpec(accountDecider, { aggregateId: 'account-1' })
 *   spec.given(opened).when(deposit).thenEmits([deposited])
 *   spec.given().when(deposit).thenRejects({ code: 'NOT_FOUND' })
 */

export interface SpecOptions {
  /** The stream the history belongs to (stamped on every given event). */
  aggregateId?: string
  /** The decision's time; given events occurred one minute apart before it. */
  now?: string
}

const DEFAULT_NOW = '2026-01-01T12:00:00.000Z'

function recordAll<Event>(events: Event[], aggregateId: string, now: string): Recorded<Event>[] {
  const end = Date.parse(now)
  return events.map((event, i) => ({
    ...event,
    aggregateId,
    occurredOn: new Date(end - (events.length - i) * 60_000).toISOString(),
    version: i + 1,
  }))
}

export interface RejectionExpectation {
  code: string
  message?: string | RegExp
  /** Field names the rejection must name. */
  fields?: string[]
}

export function deciderSpec<Command, Event extends TypedEvent, State>(
  decider: Decider<Command, Event, State>,
  options: SpecOptions = {},
) {
  const aggregateId = options.aggregateId ?? 'stream-1'
  const context: DecideContext = { now: options.now ?? DEFAULT_NOW }
  return {
    given(...history: Event[]) {
      const state = recordAll(history, aggregateId, context.now).reduce(decider.evolve, decider.initialState())
      return {
        /** The state the history folds into, for assertions on evolve. */
        state,
        when(command: Command) {
          const decision = decider.decide(command, state, context)
          return {
            thenEmits(expected: Event[]) {
              assert.ok(
                decision.ok,
                `expected events, got a rejection: ${JSON.stringify(!decision.ok && decision.error)}`,
              )
              assert.deepEqual(decision.events, expected)
            },
            thenNothingHappened() {
              assert.ok(
                decision.ok,
                `expected no events, got a rejection: ${JSON.stringify(!decision.ok && decision.error)}`,
              )
              assert.deepEqual(decision.events, [])
            },
            thenRejects(expected: RejectionExpectation) {
              assert.ok(
                !decision.ok,
                `expected a rejection, got events: ${JSON.stringify(decision.ok && decision.events)}`,
              )
              assert.equal(decision.error.code, expected.code)
              if (typeof expected.message === 'string') assert.equal(decision.error.message, expected.message)
              else if (expected.message) assert.match(decision.error.message, expected.message)
              if (expected.fields) {
                assert.deepEqual((decision.error.fields ?? []).map((f) => f.field).sort(), [...expected.fields].sort())
              }
            },
          }
        },
      }
    },
  }
}

/**
 * Given inputs (and the outputs they produced, folded as the processor folds them) / when an input
 * arrives / then these outputs go out.
 */
export function workflowSpec<Input, State, Command, Timeout>(
  workflow: Workflow<Input, State, Command, Timeout>,
  options: Pick<SpecOptions, 'now'> = {},
) {
  const context: DecideContext = { now: options.now ?? DEFAULT_NOW }
  /** Folds an input and what the workflow decided on it, as the processor does. */
  const step = (state: State, input: Input): State => {
    const outputs = workflow.decide(input, state, context)
    return outputs.reduce((s, output) => workflow.evolve(s, output, context), workflow.evolve(state, input, context))
  }
  return {
    given(...inputs: Input[]) {
      const state = inputs.reduce(step, workflow.initialState())
      return {
        state,
        when(input: Input, at?: Partial<DecideContext>) {
          const outputs = workflow.decide(input, state, { ...context, ...at })
          return {
            outputs,
            thenOutputs(expected: WorkflowOutput<Command, Timeout>[]) {
              assert.deepEqual(outputs, expected)
            },
            thenNothingHappened() {
              assert.deepEqual(outputs, [])
            },
          }
        },
      }
    },
  }
}
