import type { SqlExecutor } from '../sql/port.ts'

/**
 * The inbox makes a consumer idempotent: a handler records the id of the message it handled in the
 * same transaction as the effects it produced. A redelivered message finds its id already there and
 * changes nothing, so "at least once" on the wire becomes "exactly once in effect". The table is the platform's (`migrations/001.do.baseline.sql`).
 */

/**
 * The statement that records a message (consumer in `$<first>`, message id in `$<first + 1>`),
 * returning a row only when it was not handled before; a step of a larger statement too
 * (`WITH handled AS (${inboxInsert(n)}) …`), so a hop records its message in the same round trip.
 */
export const inboxInsert = (first: number): string =>
  `INSERT INTO inbox (consumer, message_id) VALUES ($${first}, $${first + 1})
   ON CONFLICT (consumer, message_id) DO NOTHING RETURNING 1`

/** Records `messageId` for `consumer`; false when it was already handled (the caller must skip). */
export async function markHandled(tx: SqlExecutor, consumer: string, messageId: string): Promise<boolean> {
  const { rows } = await tx.query(inboxInsert(1), [consumer, messageId])
  return rows.length > 0
}
