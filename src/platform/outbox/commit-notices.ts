import { createHash, randomUUID } from 'node:crypto'
import type { Logger } from '../logger.ts'
import type { SqlDatabase } from '../sql/port.ts'

/**
 * Commits told across processes. In one process, a writer's commit wakes the outbox relay and the
 * projections at once (`createOutboxSignal`). Split across processes, the row a process writes may
 * be another process's to publish (the relay's lease is sharded by key), and that relay would find
 * it only at its next poll: a second per hop, at every hop of a journey whose services run apart.
 * So after its commits a process sends a PostgreSQL notification, and every process of the
 * database listens: a notification wakes its relay and its projections, which look at once.
 *
 * A notification is sent only while this process's relay does not publish every row itself (it
 * holds fewer than all shards: other relays are live), and one at a time: commits that come while
 * one is on its way are told by the next, so a busy process sends about one per round trip, not
 * one per commit. A notification says only that something was written; the relay's select finds
 * what. One lost (the listening connection dropped) costs at most the poll: the listener is opened
 * again, and wakes everything once it is back.
 */

export interface CommitNotices {
  /** The notification channel: one per database and schema (none where the database cannot listen). */
  readonly channel: string | undefined
  /** A transaction of this process committed rows (events, outbox): tell the others if they need it. */
  committed(): void
  stop(): Promise<void>
}

export interface CommitNoticesOptions {
  db: SqlDatabase
  logger: Logger
  /** Whether other processes need telling (this process's relay does not hold every shard). */
  shouldTell: () => boolean
  /** Another process committed: look for its rows now. */
  onCommitElsewhere: () => void
}

/** The channel of a database and schema: the tables are per schema, and so are the notifications. */
async function channelOf(db: SqlDatabase): Promise<string> {
  const { rows } = await db.query<{ schema: string }>("SELECT current_database() || '.' || current_schema() AS schema")
  return `orderflow_commits_${createHash('sha256')
    .update(rows[0]?.schema ?? '')
    .digest('hex')
    .slice(0, 16)}`
}

/** Starts listening (where the database can: PostgreSQL); a no-op where one process is all there is. */
export async function startCommitNotices(options: CommitNoticesOptions): Promise<CommitNotices> {
  const { db, logger } = options
  if (!db.listen) return { channel: undefined, committed: () => {}, stop: async () => {} }
  const channel = await channelOf(db)
  // A notification names its sender: this process's own come back too, and wake nothing.
  const self = randomUUID()
  const heard = (sender: string | undefined) => {
    if (sender !== self) options.onCommitElsewhere()
  }
  const unlisten = await db.listen(channel, heard, (error) =>
    logger.warn(
      { err: error, channel },
      'lost the connection that listens for other processes’ commits; it is opened again (meanwhile the relay finds their rows by polling)',
    ),
  )
  let sending: Promise<void> | undefined
  let again = false
  let stopped = false
  const send = () => {
    sending = db
      .query('SELECT pg_notify($1, $2)', [channel, self])
      .then(
        () => {},
        (error: unknown) =>
          logger.debug({ err: error, channel }, 'could not tell other processes of a commit; their relays will poll'),
      )
      .finally(() => {
        sending = undefined
        if (again && !stopped) {
          again = false
          send()
        }
      })
  }
  return {
    channel,
    committed() {
      if (stopped || !options.shouldTell()) return
      if (sending) {
        again = true
        return
      }
      send()
    },
    async stop() {
      stopped = true
      await sending
      await unlisten()
    },
  }
}
