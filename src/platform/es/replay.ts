import { v7 as uuidv7 } from 'uuid'
import { AppError } from '../errors.ts'
import {
  countAfter,
  type ReadAllOptions,
  readAll,
  readStream,
  START_POSITION,
  type StoredEvent,
  type StorePosition,
} from '../eventstore/event-store.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'
import type { OutgoingMessage, Transport } from '../transport/port.ts'

/**
 * Event replay: re-publishes a service's stored events to its topics for a consumer that lost data.
 *
 * - Replayed messages are the messages the outbox relay published (the source's `toMessages`) plus the
 *   headers `replay: true` and `replay-job: <job id>`, so consumers can tell; their inboxes dedupe
 *   by event id anyway.
 * - Replay publishes through the transport directly: writing to the outbox or the event store would
 *   make a replay look like new history.
 * - A job covers the events that existed when it was created (up to the store's head at that
 *   moment); events appended later reach consumers through the outbox as usual.
 * - After each batch the job records the last published position, so an interrupted replay resumes
 *   where it stopped. A crash between a publish and that record re-publishes one batch: replay is
 *   at-least-once, like everything else on the transport.
 */

export const REPLAY_HEADER = 'replay'
export const REPLAY_JOB_HEADER = 'replay-job'

/** Which service's events a replay reads, and the messages they become. */
export interface ReplaySource {
  /** The event store's stream type of the service. */
  streamType: string
  /** The topics its events go to (created first, in case a consumer's topic was deleted). */
  topics: readonly string[]
  /** The messages the outbox relay published for a stored event. */
  toMessages(event: StoredEvent): OutgoingMessage[]
}

/** Which events to replay: exactly one selector. */
export type ReplaySelection =
  | { kind: 'stream'; streamId: string }
  /** Events that occurred in [from, to); without `to`, up to the store's head. */
  | { kind: 'time'; from: string; to?: string }
  /** Events stored after the event at this global position, in the store's commit order. */
  | { kind: 'after-position'; globalPosition: string }
  | { kind: 'all' }

/** What a job stores: the selection plus where it ends, fixed when the job was created. */
export type ReplayFilter = ReplaySelection & {
  /** The last event the job covers: a version for one stream, a store position otherwise. */
  end: { version: number } | { position: StorePosition | null }
}

export type ReplayStatus = 'pending' | 'running' | 'interrupted' | 'failed' | 'completed'

export interface ReplayJob {
  id: string
  filter: ReplayFilter
  /** Last published: a store position, or for one stream `transactionId` null and the version. */
  position: { transactionId: string | null; globalPosition: string }
  done: number
  total: number
  status: ReplayStatus
  startedAt: string
  updatedAt: string
}

export interface ReplayProgress {
  jobId: string
  status: ReplayStatus
  done: number
  total: number
  /** The last published event's global position (its version when replaying one stream). */
  position: string
}

export interface ReplayOptions {
  /** Events per publish; the job's position is recorded after each batch. Default 500. */
  batchSize?: number
  /** Stops after the current batch; the job is left `interrupted` and can be resumed. */
  signal?: AbortSignal
  onProgress?: (progress: ReplayProgress) => void
  /**
   * How long to wait for a transaction that hides events the job covers (readers only see rows
   * below the oldest running transaction) before failing. Default 30 s.
   */
  stallTimeoutMs?: number
}

interface JobRow {
  id: string
  filter: ReplayFilter
  position_tx: string | null
  position: string
  done: number
  total: number
  status: ReplayStatus
  started_at: Date | string
  updated_at: Date | string
}

const jobColumns = 'id, filter, position_tx::text, position::text, done, total, status, started_at, updated_at'

function toJob(row: JobRow): ReplayJob {
  return {
    id: row.id,
    filter: row.filter,
    position: { transactionId: row.position_tx, globalPosition: row.position },
    done: row.done,
    total: row.total,
    status: row.status,
    startedAt: new Date(row.started_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  }
}

export async function getReplayJob(db: SqlExecutor, jobId: string): Promise<ReplayJob | null> {
  const { rows } = await db.query<JobRow>(`SELECT ${jobColumns} FROM replay_jobs WHERE id = $1`, [jobId])
  const row = rows[0]
  return row ? toJob(row) : null
}

const storeFilter = (
  source: ReplaySource,
  filter: ReplaySelection,
): Pick<ReadAllOptions, 'streamType' | 'from' | 'to'> => ({
  streamType: source.streamType,
  ...(filter.kind === 'time' ? { from: filter.from, ...(filter.to ? { to: filter.to } : {}) } : {}),
})

const compare = (a: StorePosition, b: StorePosition): number => {
  const byTransaction = BigInt(a.transactionId) - BigInt(b.transactionId)
  if (byTransaction !== 0n) return byTransaction < 0n ? -1 : 1
  const byPosition = BigInt(a.globalPosition) - BigInt(b.globalPosition)
  return byPosition === 0n ? 0 : byPosition < 0n ? -1 : 1
}

const positionOf = (event: StoredEvent): StorePosition => ({
  transactionId: event.transactionId,
  globalPosition: event.globalPosition,
})

/** Where a replay "after global position N" starts: N's place in the store's commit order. */
async function startPosition(db: SqlExecutor, selection: ReplaySelection): Promise<StorePosition> {
  if (selection.kind !== 'after-position' || BigInt(selection.globalPosition) === 0n) return START_POSITION
  const { rows } = await db.query<{ transaction_id: string }>(
    'SELECT transaction_id::text FROM es_events WHERE global_position = $1',
    [selection.globalPosition],
  )
  const row = rows[0]
  if (!row) {
    throw new AppError('NOT_FOUND', `no event is stored at global position ${selection.globalPosition}`, {
      details: { globalPosition: selection.globalPosition },
    })
  }
  return { transactionId: row.transaction_id, globalPosition: selection.globalPosition }
}

/**
 * Creates a replay job for `selection` without publishing anything. Throws NOT_FOUND for a
 * stream with no events, since replaying it could only be a typo.
 */
export async function createReplayJob(
  db: SqlDatabase,
  source: ReplaySource,
  selection: ReplaySelection,
): Promise<ReplayJob> {
  let filter: ReplayFilter
  let total: number
  let start: ReplayJob['position']
  if (selection.kind === 'stream') {
    const stream = (await readStream(db, selection.streamId)).filter((e) => e.streamType === source.streamType)
    if (stream.length === 0) {
      throw new AppError('NOT_FOUND', `${source.streamType} ${selection.streamId} has no events: nothing to replay`, {
        details: { resource: source.streamType, id: selection.streamId },
      })
    }
    total = stream.length
    filter = { ...selection, end: { version: stream.at(-1)?.version ?? 0 } }
    start = { transactionId: null, globalPosition: '0' }
  } else {
    const from = await startPosition(db, selection)
    const { rows } = await db.query<{ transaction_id: string; global_position: string }>(
      // Qualified: a bare name in ORDER BY would sort by the text output column of that name.
      `SELECT e.transaction_id::text, e.global_position::text FROM es_events e WHERE e.stream_type = $1
        ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1`,
      [source.streamType],
    )
    const head = rows[0] ? { transactionId: rows[0].transaction_id, globalPosition: rows[0].global_position } : null
    const end = head && compare(head, from) > 0 ? head : null
    total = end
      ? (await countAfter(db, from, storeFilter(source, selection))) -
        (await countAfter(db, end, storeFilter(source, selection)))
      : 0
    filter = { ...selection, end: { position: end } }
    start = from
  }
  const { rows } = await db.query<JobRow>(
    `INSERT INTO replay_jobs (id, filter, position_tx, position, total, status, stream_type)
     VALUES ($1, $2, $3::text::xid8, $4, $5, 'pending', $6) RETURNING ${jobColumns}`,
    [uuidv7(), JSON.stringify(filter), start.transactionId, start.globalPosition, total, source.streamType],
  )
  const row = rows[0]
  if (!row) throw new Error('replay_jobs insert returned no row')
  return toJob(row)
}

/**
 * The message the outbox relay published for `event`, marked as a replay and with the job that
 * sent it (to tell one replay from another when tracing a consumer).
 */
export function toReplayMessages(source: ReplaySource, event: StoredEvent, jobId: string): OutgoingMessage[] {
  return source.toMessages(event).map((message) => ({
    ...message,
    headers: { ...message.headers, [REPLAY_HEADER]: 'true', [REPLAY_JOB_HEADER]: jobId },
  }))
}

interface Batch {
  events: StoredEvent[]
  /** True once the batch reaches the job's end. */
  last: boolean
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

async function nextStreamBatch(
  db: SqlExecutor,
  source: ReplaySource,
  job: ReplayJob,
  limit: number,
  endVersion: number,
): Promise<Batch> {
  if (job.filter.kind !== 'stream') throw new Error('not a replay of one stream')
  const after = Number(job.position.globalPosition)
  const events = (await readStream(db, job.filter.streamId))
    .filter((e) => e.streamType === source.streamType && e.version > after && e.version <= endVersion)
    .slice(0, limit)
  return { events, last: events.length === 0 || events.at(-1)?.version === endVersion }
}

async function nextStoreBatch(
  db: SqlExecutor,
  source: ReplaySource,
  job: ReplayJob,
  limit: number,
  end: StorePosition | null,
  options: ReplayOptions,
): Promise<Batch> {
  const after: StorePosition = {
    transactionId: job.position.transactionId ?? '0',
    globalPosition: job.position.globalPosition,
  }
  if (!end || compare(after, end) >= 0) return { events: [], last: true }
  const filter = storeFilter(source, job.filter)
  const stalledSince = performance.now()
  for (;;) {
    const read = await readAll(db, { after, limit, ...filter })
    const events = read.filter((e) => compare(positionOf(e), end) <= 0)
    if (events.length > 0) {
      const lastRead = events.at(-1)
      return {
        events,
        last: events.length < read.length || (lastRead ? compare(positionOf(lastRead), end) === 0 : true),
      }
    }
    if (read.length > 0) return { events: [], last: true }
    // Nothing readable, yet the job may still cover events: a transaction older than them is
    // running, and readers wait for it so as not to skip a row that commits late.
    const remaining = (await countAfter(db, after, filter)) - (await countAfter(db, end, filter))
    if (remaining <= 0) return { events: [], last: true }
    if (options.signal?.aborted) return { events: [], last: false }
    if (performance.now() - stalledSince > (options.stallTimeoutMs ?? 30_000)) {
      throw new Error(
        `${remaining} events of the replay are held back by a database transaction that has been running for over ${Math.round((options.stallTimeoutMs ?? 30_000) / 1000)} s; end it and resume the replay`,
      )
    }
    await pause(100, options.signal)
  }
}

async function save(db: SqlExecutor, job: ReplayJob): Promise<void> {
  await db.query(
    `UPDATE replay_jobs SET position_tx = $2::text::xid8, position = $3, done = $4, total = $5, status = $6,
       updated_at = now() WHERE id = $1`,
    [job.id, job.position.transactionId, job.position.globalPosition, job.done, job.total, job.status],
  )
}

/**
 * Runs (or resumes) a replay job until it has published every event it covers, or until `signal`
 * aborts — then it stops after the current batch and the job can be resumed from there. Nothing
 * stops two processes from running one job at once (both would publish everything): resume a job
 * once its last run has ended.
 */
export async function runReplayJob(
  deps: { db: SqlDatabase; transport: Transport; source: ReplaySource },
  jobId: string,
  options: ReplayOptions = {},
): Promise<ReplayJob> {
  const { db, transport, source } = deps
  const found = await getReplayJob(db, jobId)
  if (!found) throw new AppError('NOT_FOUND', `there is no replay job ${jobId}`, { details: { jobId } })
  if (found.status === 'completed') return found
  const job: ReplayJob = { ...found, status: 'running' }
  const batchSize = options.batchSize ?? 500
  const report = () =>
    options.onProgress?.({
      jobId: job.id,
      status: job.status,
      done: job.done,
      total: job.total,
      position: job.position.globalPosition,
    })
  try {
    await save(db, job)
    // A consumer that lost data may be reading a topic that was deleted and not yet recreated.
    await transport.ensureTopics([...source.topics])
    for (;;) {
      // PGlite and the embedded transport on it answer through promises alone, without a turn of
      // the event loop: without this, a signal handler or timer could never run to abort us.
      await new Promise((resolve) => setImmediate(resolve))
      if (options.signal?.aborted) {
        job.status = 'interrupted'
        break
      }
      const end = job.filter.end
      const batch =
        'version' in end
          ? await nextStreamBatch(db, source, job, batchSize, end.version)
          : await nextStoreBatch(db, source, job, batchSize, end.position, options)
      const lastEvent = batch.events.at(-1)
      if (lastEvent) {
        await transport.publish(batch.events.flatMap((event) => toReplayMessages(source, event, job.id)))
        job.position =
          job.filter.kind === 'stream'
            ? { transactionId: null, globalPosition: String(lastEvent.version) }
            : positionOf(lastEvent)
        job.done += batch.events.length
        job.total = Math.max(job.total, job.done)
      }
      if (batch.last) {
        job.status = 'completed'
        // Events the count saw but no batch carried cannot exist (events are never deleted), so
        // at the end `done` is the exact number of events the job covers.
        job.total = job.done
        break
      }
      if (lastEvent) {
        await save(db, job)
        report()
      }
    }
  } catch (error) {
    job.status = 'failed'
    await save(db, job).catch(() => {})
    report()
    throw error
  }
  await save(db, job)
  report()
  return (await getReplayJob(db, job.id)) ?? job
}
