import { lastTimerChanges, TIMER_MOVED, type TimerToSchedule, timerRecord } from './scheduler.ts'

/**
 * Durable timers (`scheduler.ts`) set and removed as steps of the statement that stores what
 * decided them, so that they cost no round trip of their own: the workflow processor writes a
 * batch's rows, outbox messages and timers in one statement. `writeTimerChanges` writes timer
 * changes in statements of their own, after the outbox rows, whose ids it is given; here a timer
 * whose clock starts with a publish names its outbox row by position among those the same
 * statement inserts, since their ids are not known before it runs.
 */

/** A timer set (or moved) or removed, as `TimerChange` says, its outbox row named by position. */
export type TimerStep =
  | {
      schedule: Omit<TimerToSchedule, 'startsWhenPublished'> & {
        /** The position (from 1) of an outbox row among those the statement inserts: the clock starts once it is published. */
        afterMessage?: number | undefined
        /** An outbox row written before the statement: the clock starts once it is published. */
        afterOutboxId?: string | undefined
      }
    }
  | { cancel: string }

/**
 * The parameters of `timerSteps`: the ids to remove, and the timers to set as one jsonb array. For
 * a timer changed more than once, the last change is the one that holds, as if written in order
 * (a statement may not touch one row twice).
 */
export function timerStepParams(changes: readonly TimerStep[]): [string[], string] {
  const { cancelled, scheduled } = lastTimerChanges(changes)
  return [
    cancelled,
    JSON.stringify(
      scheduled.map((timer) =>
        timerRecord(timer, { after_message: timer.afterMessage ?? null, after_outbox_id: timer.afterOutboxId ?? null }),
      ),
    ),
  ]
}

/**
 * Steps of a larger statement (`WITH …, sent AS (${outboxInsert(n)}), ${timerSteps(m, 'sent')}
 * SELECT …`): removes the timers whose ids are in `$<first>` and sets (or moves) those of
 * `$<first + 1>`, as `timerStepParams` gives them. `sent` names the statement's outbox step (it
 * returns its rows' ids, which grow in insertion order), which `afterMessage` counts in. As
 * `scheduleTimer` writes a timer: due in whole milliseconds by the database's clock, unarmed
 * (due_at NULL) until its outbox row is published, and a timer moved is unclaimed and its failures
 * forgotten. Only when `when` holds (see `SqlStep`).
 */
export const timerSteps = (first: number, sent: string, when = 'true'): string =>
  `cancelled_timers AS (
     DELETE FROM scheduled_timers WHERE id = ANY($${first}::text[]) AND ${when}
   ), sent_in_order AS (
     SELECT id, row_number() OVER (ORDER BY id) AS n FROM ${sent}
   ), scheduled_timers_set AS (
     INSERT INTO scheduled_timers (id, kind, due_at, delay_ms, starts_after_outbox_id, payload)
     SELECT t.id, t.kind,
            CASE WHEN coalesce(o.id, t.after_outbox_id) IS NULL
                 THEN date_trunc('milliseconds', now() + t.delay_ms * interval '1 millisecond') END,
            t.delay_ms, coalesce(o.id, t.after_outbox_id), coalesce(t.payload, 'null'::jsonb)
       FROM jsonb_to_recordset($${first + 1}::jsonb)
            AS t(id text, kind text, delay_ms bigint, after_message bigint, after_outbox_id bigint, payload jsonb)
       LEFT JOIN sent_in_order AS o ON o.n = t.after_message
      WHERE ${when}
     ${TIMER_MOVED}
     RETURNING 1
   )`
