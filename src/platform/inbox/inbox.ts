import type { SqlExecutor } from '../sql/port.ts'

/**
 * The inbox makes a consumer idempotent: a handler records the id of the message it handled in the
 * same transaction as the effects it produced. A redelivered message finds its id already there and
 * changes nothing, so "at least once" on the wire becomes "exactly once in effect". The table is the platform's (`migrations/001.do.baseline.sql`).
 */

/** Records `messageId` for `consumer`; false when it was already handled (the caller must skip). */
export async function markHandled(tx: SqlExecutor, consumer: string, messageId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    'INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT (consumer, message_id) DO NOTHING',
    [consumer, messageId],
  )
  return rowCount > 0
}
