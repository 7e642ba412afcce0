import { AppError, ErrorCodes, toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { runMigrations } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { describeEmbeddedLog, type MessageRow, readEmbeddedTopic, toIncomingMessage } from './embedded-log-views.ts'
import { LogTail } from './embedded-tail.ts'
import { partitionForKey } from './partitioner.ts'
import type {
  GroupLag,
  IncomingMessage,
  LogDescription,
  MessageHandler,
  OutgoingMessage,
  PartitionLag,
  PublishedPosition,
  ReadTopicOptions,
  SubscribeOptions,
  Subscription,
  Transport,
} from './port.ts'

/**
 * The embedded transport: a durable, partitioned log in PostgreSQL-dialect tables, so the whole
 * platform runs in one process on PGlite (or on a plain PostgreSQL server) without a broker.
 *
 * It keeps Kafka's semantics where services can observe them — partitioning by key (with Kafka's own
 * partitioner), per-partition order, offsets committed per consumer group only after the handler
 * resolved (at least every second while messages come, once a partition has been idle for 100 ms,
 * and whenever a partition stops, so a crash replays at most a second's messages, which the inboxes
 * drop) — but consumer groups are coordinated in memory: members of one
 * group must live in the same transport instance. Two processes subscribing with the same group id
 * would each read every partition.
 */

export type TransportLogger = Pick<Logger, 'debug' | 'warn' | 'error'>

export interface EmbeddedTransportOptions {
  db: SqlDatabase
  /** Partitions of the topics this transport creates (existing topics keep theirs). */
  partitions?: number
  /** How often idle readers look for messages written by another process. */
  pollIntervalMs?: number
  /** Messages read per query: the reader is never more than this far ahead of the handler. */
  batchSize?: number
  logger?: TransportLogger
}

const DEFAULT_PARTITIONS = 3
const DEFAULT_POLL_INTERVAL_MS = 250
const DEFAULT_BATCH_SIZE = 100
const COMMIT_INTERVAL_MS = 1_000
/** How long a partition with handled, uncommitted messages waits for more before committing. */
const COMMIT_IDLE_MS = 100

// Kafka's rule for topic names, so a topic that works here also works on a broker.
const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/

// `log_partitions.next_offset` is the offset allocator: publishers lock the row with an UPDATE
// until they commit, so offsets of a partition become visible in order and without gaps, which is
// what lets a reader trust "offset >= position" never to skip a message committed late.

const silentLogger: TransportLogger = { debug() {}, warn() {}, error() {} }

/**
 * Publishers in this process tell every transport on the same database about new messages, so
 * readers wake at once; the poll only matters for messages written by another process.
 */
const publishListeners = new WeakMap<SqlDatabase, Set<(topic: string, partition: number) => void>>()

/** The newest messages published in this process, per database (`embedded-tail.ts`). */
const tails = new WeakMap<SqlDatabase, LogTail>()
const TAIL_PER_PARTITION = 512
const tailOf = (db: SqlDatabase): LogTail => {
  let tail = tails.get(db)
  if (!tail) {
    tail = new LogTail(TAIL_PER_PARTITION)
    tails.set(db, tail)
  }
  return tail
}

export async function createEmbeddedTransport(options: EmbeddedTransportOptions): Promise<Transport> {
  const partitions = options.partitions ?? DEFAULT_PARTITIONS
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a whole number of at least 1 (got ${partitions})`)
  }
  await runMigrations(options.db, [
    { module: 'embedded_log', directory: new URL('./embedded-migrations/', import.meta.url) },
  ])
  return new EmbeddedTransport({
    db: options.db,
    partitions,
    pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    logger: options.logger ?? silentLogger,
  })
}

export interface EmbeddedLogRetention {
  /** Messages older than this go (Kafka's `retention.ms`); 0 keeps them whatever their age. */
  maxAgeMs: number
  /** Per topic partition, the oldest messages beyond this many bytes go (`retention.bytes`); 0 = no limit. */
  maxBytesPerPartition: number
  /** Rows per DELETE, so a big backlog is cut in short transactions that never stall PGlite's one connection. */
  batchSize?: number
}

const DEFAULT_PRUNE_BATCH = 5_000

/**
 * Deletes old messages the way Kafka's retention does: only ever a prefix of a partition, so the
 * log start moves forward and offsets are never renumbered (`log_partitions.next_offset` keeps
 * counting). A message goes when it is older than `maxAgeMs`, or when the newer messages of its
 * partition already fill `maxBytesPerPartition` (key + value + headers as JSON text). The newest
 * message of a partition is never removed for size, as Kafka never deletes the active segment: a
 * budget smaller than one message keeps one message rather than emptying the partition every pass.
 * Age can empty a partition, as in Kafka.
 *
 * Readers read `offset >= position`, so a group behind the new log start simply continues with the
 * first remaining message. Its committed offset is moved up to the log start here (what a Kafka
 * consumer does on `auto.offset.reset=earliest`) so that lag counts only messages it can still
 * read. A reader that had already fetched deleted messages may commit a lower offset once more;
 * that only overstates its lag until its next commit.
 */
export async function pruneEmbeddedLog(db: SqlDatabase, retention: EmbeddedLogRetention): Promise<{ deleted: number }> {
  const { maxAgeMs, maxBytesPerPartition } = retention
  const batchSize = retention.batchSize ?? DEFAULT_PRUNE_BATCH
  if (maxAgeMs <= 0 && maxBytesPerPartition <= 0) return { deleted: 0 }
  const { rows: partitions } = await db.query<{ topic: string; partition: number }>(
    'SELECT topic, partition FROM log_partitions ORDER BY topic, partition',
  )
  let deleted = 0
  for (const { topic, partition } of partitions) {
    const first = await db.query<{ offset: string }>(
      `SELECT m."offset"::text AS "offset" FROM log_messages m
        WHERE m.topic = $1 AND m.partition = $2 ORDER BY m."offset" LIMIT 1`,
      [topic, partition],
    )
    const startRow = first.rows[0]
    if (!startRow) continue
    const start = BigInt(startRow.offset)
    // Everything below `end` goes.
    let end = start
    if (maxAgeMs > 0) end = bigMax(end, await ageBoundary(db, topic, partition, maxAgeMs))
    if (maxBytesPerPartition > 0) {
      end = bigMax(end, await sizeBoundary(db, topic, partition, maxBytesPerPartition, end, batchSize))
    }
    if (end <= start) continue
    // Offsets of a partition have no gaps above the log start, so a range of `batchSize` offsets
    // is at most `batchSize` rows.
    for (let below = start; below < end; ) {
      below = bigMin(end, below + BigInt(batchSize))
      const result = await db.query('DELETE FROM log_messages WHERE topic = $1 AND partition = $2 AND "offset" < $3', [
        topic,
        partition,
        below.toString(),
      ])
      deleted += result.rowCount
    }
    await db.query(
      `UPDATE log_group_offsets SET next_offset = $3, updated_at = now()
        WHERE topic = $1 AND partition = $2 AND next_offset < $3`,
      [topic, partition, end.toString()],
    )
  }
  return { deleted }
}

/** The first offset to keep by age: the oldest message not older than the cut-off. */
async function ageBoundary(db: SqlDatabase, topic: string, partition: number, maxAgeMs: number): Promise<bigint> {
  // One statement, one snapshot: when no message is young enough, every message it saw is old.
  const { rows } = await db.query<{ boundary: string | null }>(
    `SELECT coalesce(
        (SELECT m."offset" FROM log_messages m
          WHERE m.topic = $1 AND m.partition = $2 AND m.created_at >= now() - $3::double precision * interval '1 millisecond'
          ORDER BY m."offset" LIMIT 1),
        (SELECT max(m."offset") + 1 FROM log_messages m WHERE m.topic = $1 AND m.partition = $2)
      )::text AS boundary`,
    [topic, partition, maxAgeMs],
  )
  return BigInt(rows[0]?.boundary ?? 0)
}

/**
 * The first offset to keep by size: walks the partition newest first until the budget is spent,
 * reading only the sizes of the messages that stay (plus one page), never the whole backlog.
 */
async function sizeBoundary(
  db: SqlDatabase,
  topic: string,
  partition: number,
  maxBytes: number,
  floor: bigint,
  pageSize: number,
): Promise<bigint> {
  let total = 0
  let newest = true
  // Above any offset: the first page starts at the newest message.
  let before = '9223372036854775807'
  for (;;) {
    const { rows } = await db.query<{ offset: string; size: number }>(
      `SELECT m."offset"::text AS "offset",
              octet_length(m.key) + octet_length(m.value) + octet_length(m.headers::text) AS size
         FROM log_messages m
        WHERE m.topic = $1 AND m.partition = $2 AND m."offset" >= $3 AND m."offset" < $4
        ORDER BY m."offset" DESC LIMIT $5`,
      [topic, partition, floor.toString(), before, pageSize],
    )
    for (const row of rows) {
      total += Number(row.size)
      if (total > maxBytes) return newest ? BigInt(row.offset) : BigInt(row.offset) + 1n
      newest = false
    }
    const last = rows.at(-1)
    if (!last || rows.length < pageSize) return floor
    before = last.offset
  }
}

const bigMax = (a: bigint, b: bigint) => (a > b ? a : b)
const bigMin = (a: bigint, b: bigint) => (a < b ? a : b)

interface TopicPartition {
  topic: string
  partition: number
}

const partitionKey = (topic: string, partition: number) => `${topic}\u0000${partition}`

interface Settings {
  db: SqlDatabase
  partitions: number
  pollIntervalMs: number
  batchSize: number
  logger: TransportLogger
}

class EmbeddedTransport implements Transport {
  readonly kind = 'embedded' as const
  #settings: Settings
  #partitionCounts = new Map<string, number>()
  #coordinators = new Map<string, GroupCoordinator>()
  #members = new Set<GroupMember>()
  #wakeups: PartitionWakeups
  #onPublished: (topic: string, partition: number) => void
  #closing: Promise<void> | undefined

  constructor(settings: Settings) {
    this.#settings = settings
    this.#wakeups = new PartitionWakeups(settings)
    this.#onPublished = (topic, partition) => this.#wakeups.published(topic, partition)
    const listeners = publishListeners.get(settings.db) ?? new Set()
    listeners.add(this.#onPublished)
    publishListeners.set(settings.db, listeners)
  }

  async ping(): Promise<void> {
    this.#assertOpen()
    await this.#settings.db.query('SELECT 1')
  }

  async ensureTopics(topics: string[]): Promise<void> {
    this.#assertOpen()
    const missing = [...new Set(topics)].filter((topic) => !this.#partitionCounts.has(topic)).sort()
    if (missing.length === 0) return
    for (const topic of missing) {
      if (!TOPIC_NAME.test(topic)) {
        throw new RangeError(`'${topic}' is not a valid topic name: use 1 to 249 of a-z A-Z 0-9 . _ -`)
      }
    }
    const rows = await this.#settings.db.transaction(async (tx) => {
      await tx.query(
        'INSERT INTO log_topics (name, partitions) SELECT unnest($1::text[]), $2::integer ON CONFLICT (name) DO NOTHING',
        [missing, this.#settings.partitions],
      )
      // A topic created by another process may have a different partition count: the table decides.
      await tx.query(
        `INSERT INTO log_partitions (topic, partition)
         SELECT t.name, p FROM log_topics t, generate_series(0, t.partitions - 1) AS p
         WHERE t.name = ANY($1::text[])
         ON CONFLICT (topic, partition) DO NOTHING`,
        [missing],
      )
      const result = await tx.query<{ name: string; partitions: number }>(
        'SELECT name, partitions FROM log_topics WHERE name = ANY($1::text[])',
        [missing],
      )
      return result.rows
    })
    for (const row of rows) this.#partitionCounts.set(row.name, Number(row.partitions))
  }

  async publish(messages: OutgoingMessage[]): Promise<PublishedPosition[]> {
    this.#assertOpen()
    if (messages.length === 0) return []
    await this.ensureTopics(messages.map((message) => message.topic))

    // Messages of one partition keep their order in the batch; partitions are locked in a fixed
    // order so that two concurrent batches cannot deadlock on each other's counter rows.
    const byPartition = new Map<string, { topic: string; partition: number; indexes: number[] }>()
    const partitions = new Array<number>(messages.length)
    messages.forEach((message, index) => {
      const partition = partitionForKey(message.key, this.#partitionCount(message.topic))
      partitions[index] = partition
      const key = partitionKey(message.topic, partition)
      const group = byPartition.get(key) ?? { topic: message.topic, partition, indexes: [] }
      group.indexes.push(index)
      byPartition.set(key, group)
    })
    const groups = [...byPartition.values()].sort((a, b) =>
      a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1,
    )

    // Each message's place in its partition's run: its offset is the run's first plus this.
    const place = new Array<number>(messages.length)
    for (const group of groups) {
      group.indexes.forEach((index, i) => {
        place[index] = i
      })
    }
    const positions: PublishedPosition[] = new Array(messages.length)
    const headers = messages.map((message) => JSON.stringify(message.headers ?? {}))
    let at = new Date()
    await this.#settings.db.transaction(async (tx) => {
      // One statement: lock the partitions' counters in a fixed order (so that two concurrent
      // publishes cannot deadlock on each other's rows), move each on by its run, and insert every
      // message at its offset.
      const { rows } = await tx.query<{ topic: string; partition: number; first_offset: string; at: Date | string }>(
        `WITH wanted AS (
           SELECT * FROM unnest($1::text[], $2::integer[], $3::integer[]) AS w(topic, partition, n)
         ), locked AS MATERIALIZED (
           SELECT p.topic, p.partition, w.n FROM log_partitions p
             JOIN wanted w ON w.topic = p.topic AND w.partition = p.partition
            ORDER BY p.topic, p.partition FOR UPDATE OF p
         ), reserved AS (
           UPDATE log_partitions p SET next_offset = p.next_offset + l.n FROM locked l
            WHERE p.topic = l.topic AND p.partition = l.partition
           RETURNING p.topic, p.partition, p.next_offset - l.n AS first_offset
         ), inserted AS (
           INSERT INTO log_messages (topic, partition, "offset", key, value, headers)
           SELECT m.topic, m.partition, r.first_offset + m.place, m.key, m.value, m.headers
             FROM unnest($4::text[], $5::integer[], $6::integer[], $7::text[], $8::text[], $9::jsonb[])
                  AS m(topic, partition, place, key, value, headers)
             JOIN reserved r ON r.topic = m.topic AND r.partition = m.partition
         )
         SELECT topic, partition, first_offset::text AS first_offset, now() AS at FROM reserved`,
        [
          groups.map((group) => group.topic),
          groups.map((group) => group.partition),
          groups.map((group) => group.indexes.length),
          messages.map((message) => message.topic),
          partitions,
          place,
          messages.map((message) => message.key),
          messages.map((message) => message.value),
          headers,
        ],
      )
      at = new Date(rows[0]?.at ?? Date.now())
      const firsts = new Map(rows.map((row) => [partitionKey(row.topic, row.partition), BigInt(row.first_offset)]))
      for (const group of groups) {
        const first = firsts.get(partitionKey(group.topic, group.partition))
        if (first === undefined) {
          // Thrown inside the transaction: the other partitions' messages are not kept either.
          throw new AppError(
            ErrorCodes.TRANSPORT_UNAVAILABLE,
            `partition ${group.partition} of '${group.topic}' is missing`,
          )
        }
        group.indexes.forEach((index, i) => {
          positions[index] = { topic: group.topic, partition: group.partition, offset: (first + BigInt(i)).toString() }
        })
      }
    })

    // Committed: what readers at the head will ask for next, without a query.
    const tail = tailOf(this.#settings.db)
    for (const group of groups) {
      const first = BigInt((positions[group.indexes[0] as number] as PublishedPosition).offset)
      tail.append(
        group.topic,
        group.partition,
        first,
        group.indexes.map((index) => {
          const message = messages[index] as OutgoingMessage
          return { key: message.key, value: message.value, headers: headers[index] as string, created_at: at }
        }),
      )
    }
    const listeners = publishListeners.get(this.#settings.db) ?? new Set()
    for (const group of groups) {
      for (const listener of listeners) listener(group.topic, group.partition)
    }
    return positions
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    this.#assertOpen()
    if (options.topics.length === 0) throw new RangeError('subscribe needs at least one topic')
    await this.ensureTopics(options.topics)
    this.#assertOpen()

    let coordinator = this.#coordinators.get(options.groupId)
    if (!coordinator) {
      coordinator = new GroupCoordinator(options.groupId, (topic) => this.#partitionCount(topic), this.#settings.logger)
      this.#coordinators.set(options.groupId, coordinator)
    }
    const member = new GroupMember({
      options,
      coordinator,
      read: (partition, handler, fail) => this.#readPartition(options.groupId, partition, handler, fail, options.batch),
      lag: (groupId, partitions) => this.#lag(groupId, partitions),
      onLeft: (left) => this.#members.delete(left),
      logger: this.#settings.logger,
    })
    this.#members.add(member)
    return member
  }

  async groupLag(groups: readonly string[]): Promise<GroupLag[]> {
    this.#assertOpen()
    if (groups.length === 0) return []
    // Every partition of every topic a group has committed on. One it never committed on counts
    // from the log's start, as the group would read it (retention may have deleted the first messages).
    const { rows } = await this.#settings.db.query<{ group_id: string; topic: string; lag: string }>(
      `WITH group_topics AS (
         SELECT DISTINCT group_id, topic FROM log_group_offsets WHERE group_id = ANY($1::text[]))
       SELECT gt.group_id, gt.topic, sum(p.next_offset - coalesce(g.next_offset,
                (SELECT min(m."offset") FROM log_messages m WHERE m.topic = p.topic AND m.partition = p.partition),
                p.next_offset))::text AS lag
         FROM group_topics gt
         JOIN log_partitions p ON p.topic = gt.topic
         LEFT JOIN log_group_offsets g ON g.group_id = gt.group_id AND g.topic = p.topic AND g.partition = p.partition
        GROUP BY gt.group_id, gt.topic
        ORDER BY gt.group_id, gt.topic`,
      [[...groups]],
    )
    return rows.map((r) => ({ group: r.group_id, topic: r.topic, lag: Number(r.lag) }))
  }

  async readTopic(
    topic: string,
    visit: (message: IncomingMessage) => void,
    options: ReadTopicOptions,
  ): Promise<{ complete: boolean } | null> {
    this.#assertOpen()
    return readEmbeddedTopic(this.#settings.db, topic, visit, options)
  }

  async describeLog(options: { prefix?: string } = {}): Promise<LogDescription> {
    this.#assertOpen()
    return describeEmbeddedLog(this.#settings.db, options.prefix)
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#members].map((member) => member.close()))
      this.#wakeups.close()
      publishListeners.get(this.#settings.db)?.delete(this.#onPublished)
    })()
    return this.#closing
  }

  #assertOpen() {
    if (this.#closing) throw new AppError(ErrorCodes.TRANSPORT_UNAVAILABLE, 'the embedded transport is closed')
  }

  #partitionCount(topic: string): number {
    const count = this.#partitionCounts.get(topic)
    if (count === undefined) throw new Error(`topic '${topic}' has not been ensured`)
    return count
  }

  /** Reads one partition for a group until `signal` aborts or the handler throws. */
  async #lag(groupId: string, partitions: TopicPartition[]): Promise<PartitionLag[]> {
    if (partitions.length === 0) return []
    const { rows } = await this.#settings.db.query<{ topic: string; partition: number; lag: string }>(
      // A group with no committed position reads from the log's start: its lag is every message the
      // partition still holds (retention may have deleted the first ones).
      `SELECT p.topic, p.partition, (p.next_offset - coalesce(g.next_offset,
           (SELECT min(m."offset") FROM log_messages m WHERE m.topic = p.topic AND m.partition = p.partition),
           p.next_offset))::text AS lag
         FROM log_partitions p
         LEFT JOIN log_group_offsets g ON g.group_id = $1 AND g.topic = p.topic AND g.partition = p.partition
        WHERE (p.topic, p.partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))`,
      [groupId, partitions.map((tp) => tp.topic), partitions.map((tp) => tp.partition)],
    )
    return rows.map((r) => ({ topic: r.topic, partition: r.partition, lag: Number(r.lag) }))
  }

  #readPartition(
    groupId: string,
    { topic, partition }: TopicPartition,
    handler: MessageHandler,
    fail: (error: Error) => void,
    batchOf?: SubscribeOptions['batch'],
  ): PartitionReader {
    const { db, batchSize, logger } = this.#settings
    const wakeups = this.#wakeups
    const tail = tailOf(db)
    const abort = new AbortController()
    const signal = abort.signal

    const run = async () => {
      const where = `group '${groupId}' on ${topic}/${partition}`
      let position: bigint
      let committed: bigint
      let committedAt = performance.now()
      const commit = async () => {
        if (position === committed) return
        await db.query(
          `INSERT INTO log_group_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
           ON CONFLICT (group_id, topic, partition)
           DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
          [groupId, topic, partition, position.toString()],
        )
        committed = position
        committedAt = performance.now()
      }

      /**
       * Waits for the partition's next message. What was handled is committed once the partition
       * has stayed idle a moment, not at once: under load a partition goes idle between every few
       * messages for a few milliseconds, and would otherwise pay a statement and a commit each time.
       * Idle longer than that, its position is committed, so lag and the auditor see it promptly.
       */
      const idle = async (version: number) => {
        const next = wakeups.wait(topic, partition, position, version, signal)
        if (position === committed) return next
        let timer: NodeJS.Timeout | undefined
        const due = new Promise<'due'>((resolve) => {
          timer = setTimeout(() => resolve('due'), COMMIT_IDLE_MS)
        })
        const first = await Promise.race([next, due])
        clearTimeout(timer)
        if (first !== 'due') return
        await commit()
        await next
      }

      try {
        const { rows } = await db.query<{ next_offset: string }>(
          'SELECT next_offset::text AS next_offset FROM log_group_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3',
          [groupId, topic, partition],
        )
        // No committed position: start from the earliest message, as a new Kafka group would.
        position = committed = BigInt(rows[0]?.next_offset ?? 0)

        while (!signal.aborted) {
          const version = wakeups.version(topic, partition)
          const recent = tail.read(topic, partition, position, batchSize)
          const batch = recent
            ? { rows: recent }
            : await db.query<MessageRow>(
                // Qualified: a bare "offset" in ORDER BY would sort by the text column of the output.
                `SELECT m."offset"::text AS "offset", m.key, m.value, m.headers, m.created_at FROM log_messages m
             WHERE m.topic = $1 AND m.partition = $2 AND m."offset" >= $3
             ORDER BY m."offset" LIMIT $4`,
                [topic, partition, position.toString(), batchSize],
              )
          if (batch.rows.length === 0) {
            // Also after a wake-up that found nothing new (the publish it announced was in the
            // last read): what that read handled is still to commit.
            await idle(version)
            continue
          }
          const take = batchOf ? Math.max(1, batchOf.max) : 1
          for (let start = 0; start < batch.rows.length; start += take) {
            // A revoked partition stops between messages; the next owner starts from the commit below.
            if (signal.aborted) break
            const rows = batch.rows.slice(start, start + take)
            const messages = rows.map((row) => toIncomingMessage(topic, partition, row))
            try {
              if (batchOf) {
                await batchOf.handle(messages, {
                  signal,
                  handled: (message) => {
                    const next = BigInt(message.offset) + 1n
                    if (messages.includes(message) && next > position) position = next
                  },
                })
              } else {
                for (const message of messages) await handler(message, { signal })
              }
            } catch (error) {
              // What was handled before stays handled; the failed message is left for redelivery.
              await commit().catch((commitError: unknown) =>
                logger.warn({ err: commitError }, `embedded log: committing ${where} after a handler failure failed`),
              )
              // A handler that stopped because its partition is given up failed nothing: the
              // message goes to the partition's next owner.
              if (signal.aborted) return
              return fail(toError(error))
            }
            const last = messages.at(-1)
            if (last) position = BigInt(last.offset) + 1n
            // Committing once per batch keeps the log fast; the interval bounds what a crash replays
            // when handlers are slow.
            if (performance.now() - committedAt >= COMMIT_INTERVAL_MS) await commit()
          }
          // A short read reached the partition's head as of `version`: nothing newer is there
          // unless a publish came since, which the wait sees, so it does not read again to find out.
          if (batch.rows.length < batchSize) await idle(version)
        }
        // Stopped (a rebalance, a close): the next owner starts where this one ended.
        await commit()
      } catch (error) {
        return fail(transportFailure(`reading or committing ${where}`, error))
      }
    }

    const done = run()
    return {
      topic,
      partition,
      stop() {
        abort.abort()
        return done
      },
    }
  }
}

function transportFailure(doing: string, cause: unknown): AppError {
  return new AppError(ErrorCodes.TRANSPORT_UNAVAILABLE, `embedded log: failed ${doing}`, { cause })
}

interface PartitionReader extends TopicPartition {
  /** Stops after the in-flight message (handled and committed); resolves once the reader is idle. */
  stop(): Promise<void>
}

/**
 * Wakes idle readers when their partition has something new: at once for messages published in
 * this process, and by one poll of the partition heads per interval for everything else (one
 * query per transport, however many partitions are idle).
 */
class PartitionWakeups {
  #db: SqlDatabase
  #pollIntervalMs: number
  #logger: TransportLogger
  #versions = new Map<string, number>()
  #waiters = new Set<{ topic: string; partition: number; position: bigint; wake: () => void }>()
  #timer: NodeJS.Timeout | undefined
  #polling = false
  #closed = false

  constructor(settings: Settings) {
    this.#db = settings.db
    this.#pollIntervalMs = settings.pollIntervalMs
    this.#logger = settings.logger
  }

  /** Taken before a read, so a publish landing between the read and the wait is not missed. */
  version(topic: string, partition: number): number {
    return this.#versions.get(partitionKey(topic, partition)) ?? 0
  }

  published(topic: string, partition: number) {
    const key = partitionKey(topic, partition)
    this.#versions.set(key, (this.#versions.get(key) ?? 0) + 1)
    for (const waiter of this.#waiters) {
      if (waiter.topic === topic && waiter.partition === partition) waiter.wake()
    }
  }

  /** Resolves when the partition may hold messages at or after `position`, or when `signal` aborts. */
  wait(topic: string, partition: number, position: bigint, version: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted || this.#closed || this.version(topic, partition) !== version) return Promise.resolve()
    return new Promise((resolve) => {
      const waiter = {
        topic,
        partition,
        position,
        wake: () => {
          this.#waiters.delete(waiter)
          signal.removeEventListener('abort', waiter.wake)
          resolve()
        },
      }
      this.#waiters.add(waiter)
      signal.addEventListener('abort', waiter.wake, { once: true })
      this.#schedulePoll()
    })
  }

  close() {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#timer = undefined
    for (const waiter of this.#waiters) waiter.wake()
  }

  #schedulePoll() {
    if (this.#closed || this.#timer || this.#polling || this.#waiters.size === 0) return
    this.#timer = setTimeout(() => void this.#poll(), this.#pollIntervalMs)
  }

  async #poll() {
    this.#timer = undefined
    this.#polling = true
    try {
      const topics = [...new Set([...this.#waiters].map((waiter) => waiter.topic))]
      const { rows } = await this.#db.query<{ topic: string; partition: number; next_offset: string }>(
        'SELECT topic, partition, next_offset::text AS next_offset FROM log_partitions WHERE topic = ANY($1::text[])',
        [topics],
      )
      const heads = new Map(rows.map((row) => [partitionKey(row.topic, row.partition), BigInt(row.next_offset)]))
      for (const waiter of this.#waiters) {
        const head = heads.get(partitionKey(waiter.topic, waiter.partition))
        if (head !== undefined && head > waiter.position) waiter.wake()
      }
    } catch (error) {
      // Readers meet the same failure on their next read and report it; the poll just tries again.
      this.#logger.warn({ err: error }, 'embedded log: polling partition heads failed')
    } finally {
      this.#polling = false
      this.#schedulePoll()
    }
  }
}

/**
 * One consumer group inside this transport. Joins and leaves are queued and handled one at a
 * time; each rebalance first stops every revoked partition (its in-flight message handled and
 * committed) and only then starts the new owners, so no partition is ever read by two members.
 */
class GroupCoordinator {
  readonly groupId: string
  #members: GroupMember[] = []
  #queue: Promise<void> = Promise.resolve()
  #partitionCount: (topic: string) => number
  #logger: TransportLogger

  constructor(groupId: string, partitionCount: (topic: string) => number, logger: TransportLogger) {
    this.groupId = groupId
    this.#partitionCount = partitionCount
    this.#logger = logger
  }

  join(member: GroupMember): Promise<void> {
    this.#members.push(member)
    return this.#enqueueRebalance()
  }

  /** The member has already stopped counting itself as active: the rebalance revokes all it holds. */
  async leave(member: GroupMember): Promise<void> {
    await this.#enqueueRebalance()
    this.#members = this.#members.filter((m) => m !== member)
  }

  #enqueueRebalance(): Promise<void> {
    // A failed rebalance must not wedge the queue: later joins and leaves still get their turn.
    this.#queue = this.#queue
      .then(() => this.#rebalance())
      .catch((error: unknown) =>
        this.#logger.error({ err: error, groupId: this.groupId }, 'embedded log: rebalance failed'),
      )
    return this.#queue
  }

  async #rebalance() {
    const active = this.#members.filter((member) => member.active)
    const assignment = assignRoundRobin(active, this.#partitionCount)
    await Promise.all(this.#members.map((member) => member.keepOnly(assignment.get(member) ?? [])))
    for (const member of active) member.start(assignment.get(member) ?? [])
    this.#logger.debug(
      {
        groupId: this.groupId,
        assignment: active.map((member) => member.assigned.map((tp) => `${tp.topic}/${tp.partition}`)),
      },
      'embedded log: group rebalanced',
    )
  }
}

/**
 * Kafka's round-robin assignor: the group's topic-partitions in order, dealt to the members in
 * join order, skipping a member that did not subscribe to the partition's topic.
 */
function assignRoundRobin(
  members: GroupMember[],
  partitionCount: (topic: string) => number,
): Map<GroupMember, TopicPartition[]> {
  const assignment = new Map(members.map((member) => [member, [] as TopicPartition[]]))
  const topics = [...new Set(members.flatMap((member) => member.topics))].sort()
  let next = 0
  for (const topic of topics) {
    for (let partition = 0; partition < partitionCount(topic); partition++) {
      for (let step = 0; step < members.length; step++) {
        const candidate = (next + step) % members.length
        const member = members[candidate]
        if (member?.topics.includes(topic)) {
          assignment.get(member)?.push({ topic, partition })
          next = (candidate + 1) % members.length
          break
        }
      }
    }
  }
  return assignment
}

interface MemberSettings {
  options: SubscribeOptions
  coordinator: GroupCoordinator
  read: (partition: TopicPartition, handler: MessageHandler, fail: (error: Error) => void) => PartitionReader
  onLeft: (member: GroupMember) => void
  lag: (groupId: string, partitions: TopicPartition[]) => Promise<PartitionLag[]>
  logger: TransportLogger
}

/** A subscription: one member of a group, running a reader per assigned partition. */
class GroupMember implements Subscription {
  readonly groupId: string
  readonly topics: readonly string[]
  readonly ready: Promise<void>
  #settings: MemberSettings
  #readers = new Map<string, PartitionReader>()
  #active = true
  #leaving: Promise<void> | undefined
  #errorReported = false

  constructor(settings: MemberSettings) {
    this.#settings = settings
    this.groupId = settings.options.groupId
    this.topics = [...new Set(settings.options.topics)]
    this.ready = settings.coordinator.join(this)
  }

  get active(): boolean {
    return this.#active
  }

  get assigned(): TopicPartition[] {
    return [...this.#readers.values()].map(({ topic, partition }) => ({ topic, partition }))
  }

  lag(): Promise<PartitionLag[]> {
    return this.#settings.lag(this.groupId, this.assigned)
  }

  close(): Promise<void> {
    this.#leaving ??= (async () => {
      this.#active = false
      await this.#settings.coordinator.leave(this)
      this.#settings.onLeft(this)
    })()
    return this.#leaving
  }

  /** Stops the readers of every partition not in `partitions`; resolves once they are idle. */
  async keepOnly(partitions: TopicPartition[]): Promise<void> {
    const keep = new Set(partitions.map((tp) => partitionKey(tp.topic, tp.partition)))
    const stopping: Promise<void>[] = []
    for (const [key, reader] of this.#readers) {
      if (keep.has(key)) continue
      this.#readers.delete(key)
      stopping.push(reader.stop())
    }
    await Promise.all(stopping)
  }

  start(partitions: TopicPartition[]) {
    if (!this.#active) return
    for (const tp of partitions) {
      const key = partitionKey(tp.topic, tp.partition)
      if (this.#readers.has(key)) continue
      this.#readers.set(
        key,
        this.#settings.read(tp, this.#settings.options.handler, (error) => this.#fail(error)),
      )
    }
  }

  /**
   * A handler threw (or the log failed): leave the group without committing that message, so the
   * partitions — and the message — go to the remaining members, then report the error once.
   */
  #fail(error: Error) {
    if (this.#errorReported) return
    this.#errorReported = true
    this.#settings.logger.warn({ err: error, groupId: this.groupId }, 'embedded log: subscription stopped')
    void this.close().then(() => {
      try {
        this.#settings.options.onError?.(error)
      } catch (callbackError) {
        this.#settings.logger.error({ err: callbackError }, 'embedded log: onError threw')
      }
    })
  }
}
