import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { context, ROOT_CONTEXT } from '@opentelemetry/api'
import { AppError, ErrorCodes, toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { SqlDatabase, SqlExecutor } from '../sql/port.ts'
import { activeTraceHeaders } from '../tracing.ts'
import type { Headers, OutgoingMessage, PublishedPosition, Transport } from '../transport/port.ts'
import { findRefusal } from '../transport/refusal.ts'
import { markRefused, PUBLISHABLE } from './refused.ts'
import {
  type ClaimedShard,
  claimShards,
  joinShards,
  type KnownShard,
  leaveShards,
  MAX_SHARDS,
  markPublished,
  markPublishedThenSelect,
  SHARDS_VARIABLE,
} from './relay-lease.ts'

/**
 * The transactional outbox. A command's messages are written to `outbox` in the same transaction
 * as its events, so they are durable exactly when the events are; the relay then publishes them
 * in insertion order, at least once, and marks them published. With the broker unreachable the
 * rows wait; nothing is lost and nothing is reordered.
 *
 * Except a row the broker refuses for good (transport/refusal.ts: larger than its topic's
 * max.message.bytes, an invalid record, a topic this principal may not write): retried, it would
 * hold back every row behind it, and every order would stop. The relay sets it aside instead
 * (refused.ts) and holds back only the later rows of its topic and key, which keep their order
 * behind it until an operator retries or discards it; every other key flows.
 *
 * The lease is sharded by key (`relay-lease.ts`): the outbox's rows fall into N shards by a hash
 * of their key (`outbox_shard(message_key, N)`), each shard has a lease row of its own in
 * `outbox_relay_lease`, and only the holder of a shard publishes its rows, in insertion order. A
 * key is always in the same shard, so per-key order holds while several processes publish side by
 * side. One relay alone holds every shard; with K relays each claims about N / K (its fair share,
 * counted over the relays registered in `outbox_relay_member`), and a holder above its share hands
 * the rest over at its next renewal. N (OUTBOX_RELAY_SHARDS) is one value per database: a relay
 * with another count reshards the lease table only when no other relay is live, and refuses to
 * start otherwise.
 *
 * Every takeover of a shard increments its `epoch` (a fencing token). A relay marks rows published
 * only while their shard's lease is still its own (holder and epoch), and records the epoch on the
 * row (`published_epoch`), so a relay that lost a shard cannot pass its work off as the holder's.
 *
 * The broker does not know the epoch, so fencing the mark alone cannot stop a relay that lost its
 * lease from publishing late. Time does that: a relay starts a publish only if its lease outlasts
 * the publish timeout plus a margin, gives up (and aborts) a publish at the timeout, and a relay
 * that takes over an expired lease waits one publish timeout more before its first publish of
 * that shard's rows. That holds as long as the transport's publish ends when aborted, or ends by
 * itself within the publish timeout (a Kafka producer's request timeout × retries must fit in it).
 * A shard handed over (a stop, more relays) is released for the next holder to take at once, since
 * its holder has no publish in flight; unless the holder was itself still waiting out a previous
 * holder, or has a publish it gave up on that has not settled: then it expires, and its next
 * holder waits.
 */

/**
 * The outbox rows for `messages`, as one `INSERT … SELECT` over four arrays (`$<first>` to
 * `$<first + 3>`: topics, keys, values, headers as JSON text), in the messages' order, returning
 * their ids; `outboxRows(messages)` gives the arrays. A statement of its own, or a step of a larger one
 * (`WITH rows AS (${outboxInsert(n)}) …`): every statement is a round trip to the database.
 */
export const outboxInsert = (first: number, when = 'true'): string =>
  `INSERT INTO outbox (topic, message_key, value, headers)
   SELECT topic, message_key, value, headers::jsonb
     FROM unnest($${first}::text[], $${first + 1}::text[], $${first + 2}::text[], $${first + 3}::text[])
          WITH ORDINALITY AS m(topic, message_key, value, headers, n)
    WHERE ${when}
    ORDER BY n
   RETURNING id`

export const outboxRows = (messages: OutgoingMessage[]): [string[], string[], string[], string[]] => {
  // A row keeps the trace context it is written in, for the relay to publish it in: the one its
  // message carries (a command's, see es/command-handler.ts), else the active span's (tracing on).
  const active = activeTraceHeaders()
  return [
    messages.map((m) => m.topic),
    messages.map((m) => m.key),
    messages.map((m) => m.value),
    messages.map((m) =>
      JSON.stringify(active.traceparent && !m.headers?.traceparent ? { ...m.headers, ...active } : (m.headers ?? {})),
    ),
  ]
}

/** Row ids as `outboxInsert` returns them, in the messages' order (ids grow in insertion order). */
export const inInsertionOrder = (rows: { id: string }[]): string[] =>
  rows
    .map((r) => BigInt(r.id))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map(String)

/** Writes `messages` to the outbox in `tx`, in one statement; resolves with their row ids, in order. */
export async function enqueue(tx: SqlExecutor, messages: OutgoingMessage[]): Promise<string[]> {
  if (messages.length === 0) return []
  const { rows } = await tx.query<{ id: string }>(
    `WITH rows AS (${outboxInsert(1)}) SELECT id::text AS id FROM rows`,
    outboxRows(messages),
  )
  return inInsertionOrder(rows)
}

/**
 * Deletes rows published more than `olderThanHours` ago: the events themselves stay in the event
 * store, so the outbox only needs what is pending (and recent rows, for looking into incidents).
 */
export async function prunePublished(db: SqlExecutor, olderThanHours: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < now() - make_interval(hours => $1)`,
    [olderThanHours],
  )
  return rowCount
}

/** What a committed transaction wrote, as far as its writer says: who needs to be woken. */
export interface CommittedWrites {
  /**
   * The stream types whose events it appended (`[]`: outbox rows alone). Projections of other stream
   * types are not woken; absent, every projection is.
   */
  streamTypes?: readonly string[]
}

/** Lets writers wake the relay and the projections of this process right after their transaction committed. */
export function createOutboxSignal(): {
  notify(written?: CommittedWrites): void
  onNotify(listener: (written?: CommittedWrites) => void): () => void
} {
  const emitter = new EventEmitter()
  return {
    notify: (written) => emitter.emit('new', written),
    onNotify(listener) {
      emitter.on('new', listener)
      return () => emitter.off('new', listener)
    },
  }
}

export type OutboxSignal = ReturnType<typeof createOutboxSignal>

export interface OutboxRelayOptions {
  db: SqlDatabase
  transport: Transport
  signal: OutboxSignal
  logger: Logger
  batchSize?: number
  /** Fallback poll, for rows written by other processes. */
  pollIntervalMs?: number
  /** Backoff after a failed publish: doubles from `retryBaseMs` up to `retryMaxMs`. */
  retryBaseMs?: number
  retryMaxMs?: number
  /**
   * How long the relay waits after a wake-up, when the drain before it published more than one
   * row, to gather more rows into one batch (default 0: none). A wait is paid by every hop of a
   * journey: 5 ms here made orchestration's twelve hops take 110 ms at 30 orders/s against 34 ms
   * without it, while under load the relay batches anyway (what commits during a publish goes out
   * with the next), so saturation did not move (docs/benchmarks.md).
   */
  coalesceMs?: number
  /** Published rows are deleted once they are this old (default 24 hours). */
  retainPublishedHours?: number
  /** Identifies this relay in the lease row; random by default. */
  holderId?: string
  /**
   * How long a published batch waits to be marked published with the next batch's select, in the
   * same statement, before it is marked alone (default 25 ms). Under a steady flow the next rows
   * come within it, and marking costs no round trip of its own. Its `published_at` is when it
   * landed either way; a crash meanwhile publishes it again (at least once, in order).
   */
  markWithNextMs?: number
  /** Called with the number of rows marked published, each time some are (tests, metrics). */
  onPublished?: (count: number) => void
  /** How long the lease lasts without renewal; another relay takes over after (default 15 s). */
  leaseMs?: number
  /**
   * Shards of the lease (OUTBOX_RELAY_SHARDS, 1 to 256, default 8): the most relays that publish
   * side by side. The same for every relay of a database (see `joined`).
   */
  shards?: number
  /**
   * A publish that has not finished after this long is abandoned (aborted) and counts as failed;
   * at most half the lease (default: a third). Must cover the transport's own give-up time when
   * the transport cannot abort a publish.
   */
  publishTimeoutMs?: number
}

export interface OutboxRelay {
  /** Publishes everything pending now in the shards this relay holds; resolves with the number of rows published. */
  drain(): Promise<number>
  /**
   * Settles with the relay's first attempt to join the database's shards: rejects (CONFIG_INVALID,
   * naming OUTBOX_RELAY_SHARDS) when other live relays run with another shard count. The relay
   * keeps trying meanwhile; a process that must not run so stops it.
   */
  joined: Promise<void>
  stop(): Promise<void>
  /** Rows were written elsewhere (another process): look for them now rather than at the next poll. */
  wake(): void
  /**
   * Whether this relay publishes every row written, as it last knew its lease: it holds every shard.
   * While it does not, rows this process writes may be another relay's to publish.
   */
  holdsEveryShard(): boolean
  /** Rows not published yet: refused rows, and the rows of their keys held behind them, included. */
  pending(): Promise<number>
}

const DEFAULT_LEASE_MS = 15_000
const DEFAULT_SHARDS = 8
const PRUNE_EVERY_MS = 60 * 60 * 1000
const DEFAULT_MARK_WITH_NEXT_MS = 25

interface OutboxRow {
  id: string
  topic: string
  message_key: string
  value: string
  headers: Headers
  age_ms: number
  shard: number
}

/** A batch the broker took: its rows, the shards' epochs it went out under, where each row landed. */
interface PublishedBatch {
  rows: OutboxRow[]
  ready: { shard: number; epoch: string }[]
  positions: PublishedPosition[]
  /** When the publish returned (`performance.now()`). */
  landedAt: number
}

/** A shard this relay holds, as it knows it; times are `performance.now()` readings. */
interface HeldShard {
  epoch: string
  /** After taking over an expired shard: when the old holder's last publish is over for sure. */
  publishNotBefore: number
}

/** The shards this relay holds: claimed and renewed together, in one statement. */
interface HeldLease {
  shards: Map<number, HeldShard>
  /** Never later than the database's expiry: measured from before the claim was sent. */
  deadline: number
  renewAfter: number
}

export function startOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { db, transport, logger } = options
  const batchSize = options.batchSize ?? 500
  const pollIntervalMs = options.pollIntervalMs ?? 1000
  const retryBaseMs = options.retryBaseMs ?? 250
  const retryMaxMs = options.retryMaxMs ?? 10_000
  const coalesceMs = options.coalesceMs ?? 0
  const markWithNextMs = options.markWithNextMs ?? DEFAULT_MARK_WITH_NEXT_MS
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS
  const publishTimeoutMs = options.publishTimeoutMs ?? leaseMs / 3
  const shards = options.shards ?? DEFAULT_SHARDS
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) {
    throw new RangeError(`shards must be a whole number from 1 to ${MAX_SHARDS} (got ${shards})`)
  }
  if (!(leaseMs > 0) || !Number.isFinite(leaseMs)) throw new RangeError(`leaseMs must be positive (got ${leaseMs})`)
  if (!(publishTimeoutMs > 0) || publishTimeoutMs > leaseMs / 2) {
    throw new RangeError(`publishTimeoutMs must be positive and at most half of leaseMs (got ${publishTimeoutMs})`)
  }
  // Covers what the local clock cannot see: the moment between the last check and the request
  // leaving the process, and a request already on the wire when its publish was aborted.
  const safetyMarginMs = leaseMs / 10
  // A publish starts only with at least this much of the lease left.
  const publishWindowMs = publishTimeoutMs + safetyMarginMs
  // Each row is published in the trace context it was written in (its `traceparent` header): the
  // transport's PRODUCER span is a child of the request or consumer that wrote the row. The relay's
  // own loop is no span's parent, so a row written outside any trace starts a trace of its own.
  const publish: Transport['publish'] = (messages, publishOptions) =>
    context.with(ROOT_CONTEXT, () => transport.publish(messages, publishOptions))

  let nextPrune = 0
  let stopped = false
  const stopping = new AbortController()
  let wake: (() => void) | undefined
  let dirty = false
  let failures = 0
  let current: Promise<number> = Promise.resolve(0)
  let lease: HeldLease | undefined
  // A publish given up on that has not settled yet: until it has, it might still land, so this
  // relay neither publishes again (which could overtake it) nor renews its lease (a relay whose
  // transport hangs lets a healthy one take over, after the takeover wait).
  let abandoned: Promise<void> | undefined
  // drain() may be called while the loop drains: batches go out one at a time, in order.
  let queue: Promise<unknown> = Promise.resolve()

  const holder = options.holderId ?? randomUUID()

  // The first attempt to join the database's shards settles `joined`; later attempts do not.
  let hasJoined = false
  let settleJoined: ((error?: unknown) => void) | undefined
  const joined = new Promise<void>((resolve, reject) => {
    settleJoined = (error) => (error === undefined ? resolve() : reject(error))
  })
  joined.catch(() => {})
  const join = async () => {
    try {
      const { resharded } = await joinShards(db, { holder, shards, leaseMs })
      if (resharded !== undefined) {
        logger.info(
          { holder, shards, previousShards: resharded },
          `outbox relay resharded its lease to ${shards} shards`,
        )
      }
      hasJoined = true
      settleJoined?.()
    } catch (error) {
      settleJoined?.(error)
      throw error
    } finally {
      settleJoined = undefined
    }
  }

  const known = (held: HeldLease | undefined, now: number): KnownShard[] =>
    [...(held?.shards ?? new Map<number, HeldShard>())].map(([shard, s]) => ({
      shard,
      epoch: s.epoch,
      waiting: s.publishNotBefore > now,
    }))

  const lostLease = (reason: string, lost: number[], details: Record<string, unknown> = {}) => {
    logger.warn(
      { holder, shards: lost, epochs: lost.map((shard) => lease?.shards.get(shard)?.epoch), ...details },
      `outbox relay lost its lease (${reason}); it stops publishing and tries to claim the lease again`,
    )
    for (const shard of lost) lease?.shards.delete(shard)
    if (lease?.shards.size === 0) lease = undefined
  }

  const logClaim = (claim: ClaimedShard) => {
    const fields = {
      holder,
      shard: claim.shard,
      epoch: claim.epoch,
      previousHolder: claim.previousHolder,
      how: claim.how,
      waitMs: Math.round(claim.waitMs),
    }
    if (claim.how === 'shed') {
      logger.info(fields, 'outbox relay handed a shard over: more relays run, and this one held more than its share')
    } else if (claim.how === 'expired') {
      logger.info(fields, 'outbox relay took over an expired shard; it waits out the previous holder’s last publish')
    } else if (claim.how === 'released') {
      logger.info(fields, 'outbox relay claimed a shard')
    }
  }

  // Only the holder of a shard publishes its rows, so that the outbox's order is the order on the
  // wire for every key. A lease row (rather than a lock held across the publish) keeps the database
  // free while the broker is slow, and lets another process take over when the holder dies.
  // Renewed once a third of it has passed rather than on every batch: one statement less per batch.
  // A relay that holds no shard tries on every batch (every poll when idle).
  /** Whether the lease must be claimed (none held) or renewed before the next publish. */
  const renewalDue = () => {
    const now = performance.now()
    return !lease || now >= lease.renewAfter || lease.deadline - now < publishWindowMs
  }
  const holdLease = async (): Promise<HeldLease | undefined> => {
    if (lease && !renewalDue()) return lease
    if (!hasJoined) await join()
    const sentAt = performance.now()
    const { shardCount, claimed } = await claimShards(db, {
      holder,
      shards,
      leaseMs,
      publishTimeoutMs,
      known: known(lease, sentAt),
    })
    const receivedAt = performance.now()
    if (shardCount !== shards) {
      if (lease) lostLease('the shard count changed', [...lease.shards.keys()])
      throw new AppError(
        ErrorCodes.CONFIG_INVALID,
        `this relay runs with ${SHARDS_VARIABLE}=${shards}, but the database's outbox now has ${shardCount} shards ` +
          '(resharded while this relay was not live): it publishes nothing until restarted with the same count',
        { retryable: false },
      )
    }
    const next = new Map<number, HeldShard>()
    for (const claim of claimed) {
      logClaim(claim)
      if (claim.how === 'shed') continue
      const before = lease?.shards.get(claim.shard)
      next.set(claim.shard, {
        epoch: claim.epoch,
        // Measured from after the answer: the wait may end later than the database computed, never earlier.
        publishNotBefore: claim.how === 'renewed' ? (before?.publishNotBefore ?? 0) : receivedAt + claim.waitMs,
      })
    }
    const handedOver = new Set(claimed.filter((c) => c.how === 'shed').map((c) => c.shard))
    const lost = [...(lease?.shards.keys() ?? [])].filter((shard) => !next.has(shard) && !handedOver.has(shard))
    if (lost.length > 0) lostLease('another relay took it over', lost)
    lease = next.size === 0 ? undefined : { shards: next, deadline: sentAt + leaseMs, renewAfter: sentAt + leaseMs / 3 }
    return lease
  }

  /** The held shards whose rows may go out now, with their epochs: the fence of the mark. */
  const readyShards = (held: HeldLease) =>
    [...held.shards]
      .filter(([, s]) => s.publishNotBefore <= performance.now())
      .map(([shard, s]) => ({ shard, epoch: s.epoch }))

  /**
   * Publishes `rows` as one send, within the lease: starts only if the lease outlasts the publish,
   * and gives up on it (aborting it) at the publish timeout. Rejects with the rows' ids
   * (`outboxIds`) once the publish started.
   */
  const publishWithinLease = async (
    rows: OutboxRow[],
    held: HeldLease,
    ready: { shard: number }[],
    selectedAt: number,
  ): Promise<PublishedPosition[]> => {
    const ids = rows.map((r) => r.id)
    // Checked after the last await: a relay stalled since it confirmed its lease (a long GC pause,
    // a frozen VM) must not publish on a lease that has run out, or will before the publish ends.
    const startAt = performance.now()
    if (lease !== held || startAt + publishWindowMs > held.deadline) {
      if (lease === held) held.renewAfter = 0
      throw new AppError(
        ErrorCodes.TRANSPORT_UNAVAILABLE,
        'the lease ran short before the publish could start (was the process stalled?); it is renewed first',
        { details: { leaseLeftMs: Math.round(held.deadline - startAt), neededMs: publishWindowMs } },
      )
    }
    const controller = new AbortController()
    let positions: PublishedPosition[] = []
    let publishing: Promise<PublishedPosition[]>
    try {
      publishing = publish(
        rows.map((r) => ({ topic: r.topic, key: r.message_key, value: r.value, headers: r.headers })),
        // The relay retries by itself, with backoff: one attempt keeps the publish (and so the
        // lease that must outlast it) short, and a dead holder's lease is taken over sooner.
        { signal: controller.signal, singleAttempt: true },
      )
    } catch (error) {
      publishing = Promise.reject(error)
    }
    const settled = publishing.then(
      () => {},
      () => {},
    )
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timed out'>((resolve) => {
      timer = setTimeout(() => resolve('timed out'), publishTimeoutMs)
    })
    try {
      const outcome = await Promise.race([
        publishing.then((landed) => {
          positions = landed
          return 'published' as const
        }),
        timedOut,
      ])
      if (outcome === 'timed out') {
        const details = {
          batchSize: rows.length,
          oldestAgeMs: Math.round((rows[0]?.age_ms ?? 0) + (performance.now() - selectedAt)),
          timeoutMs: publishTimeoutMs,
          shards: ready.map((s) => s.shard),
        }
        const error = new AppError(
          ErrorCodes.TRANSPORT_UNAVAILABLE,
          `the publish did not finish within ${publishTimeoutMs} ms; it was aborted`,
          { details },
        )
        controller.abort(error)
        abandoned = settled
        void settled.then(() => {
          if (abandoned === settled) abandoned = undefined
        })
        logger.warn(
          { holder, ...details },
          'outbox publish timed out; it was aborted and its rows stay pending, to be retried',
        )
        throw error
      }
    } catch (error) {
      throw Object.assign(toError(error), { outboxIds: ids })
    } finally {
      clearTimeout(timer)
    }
    return positions
  }

  const landed = (batch: PublishedBatch) => ({
    ids: batch.rows.map((r) => r.id),
    shardOf: batch.rows.map((r) => r.shard),
    holder,
    shards,
    fence: batch.ready,
    positions: batch.positions,
    landedAgoMs: performance.now() - batch.landedAt,
  })

  /** Marks `rows` published under the epochs of `ready`; resolves with how many the fence let through. */
  const markRows = async (
    rows: OutboxRow[],
    ready: { shard: number; epoch: string }[],
    positions: PublishedPosition[],
  ): Promise<number> => {
    // A crash before this update republishes the rows: at least once, in order.
    const marked = await markPublished(db, landed({ rows, ready, positions, landedAt: performance.now() }))
    return fenced(rows, marked)
  }

  /** How many of `rows` the fence let through (reported to `onPublished`); the shards of the others are lost. */
  const fenced = (rows: OutboxRow[], marked: Set<string>): number => {
    if (marked.size < rows.length) {
      const refused = rows.filter((r) => !marked.has(r.id))
      lostLease('marking published rows was refused', [...new Set(refused.map((r) => r.shard))], {
        refusedRows: refused.length,
      })
    }
    if (marked.size > 0) options.onPublished?.(marked.size)
    return marked.size
  }

  /**
   * The last batch published and not marked yet: the next batch's select marks it in the same
   * statement, or `markUnmarked` alone once `markWithNextMs` passed without one (and before
   * a lease renewal, which may hand its shards over; before a wait; at a drain's end; at stop). A
   * crash meanwhile republishes it: at least once, in order, as a crash before any mark.
   */
  let unmarked: PublishedBatch | undefined
  const markUnmarked = async (): Promise<number> => {
    const batch = unmarked
    if (!batch) return 0
    const marked = fenced(batch.rows, await markPublished(db, landed(batch)))
    unmarked = undefined
    return marked
  }
  /**
   * A batch the broker refused for good: its rows go one at a time, in order, to find the refused
   * ones, since the broker's answer names a partition, not a message (and a batch can be refused
   * only as a whole, too large together). A row that lands is marked published; a refused row is
   * set aside (`markRefused`) and the later rows of its topic and key are held, here and by the
   * next selects, so that its key keeps its order while every other key flows. Any other failure
   * ends this: the row that failed goes through the usual retry, with backoff, and the rows after
   * it are selected again.
   */
  const publishOneByOne = async (rows: OutboxRow[], refusal: { reason: string }): Promise<number> => {
    logger.warn(
      { holder, batchSize: rows.length, reason: refusal.reason },
      'the broker refused an outbox batch for good; its rows are published one at a time to find the refused ones',
    )
    const heldKeys = new Set<string>()
    let published = 0
    for (const row of rows) {
      const topicKey = JSON.stringify([row.topic, row.message_key])
      if (heldKeys.has(topicKey)) continue
      // Renewed as in any batch; a shard lost meanwhile leaves its rows to its next holder.
      const held = await holdLease()
      const ready = held ? readyShards(held) : []
      if (!held || !ready.some((s) => s.shard === row.shard)) break
      try {
        published += await markRows([row], ready, await publishWithinLease([row], held, ready, performance.now()))
      } catch (error) {
        const refused = findRefusal(error)
        if (!refused) throw error
        heldKeys.add(topicKey)
        const marked = await markRefused(db, {
          id: row.id,
          holder,
          shards,
          fence: ready,
          reason: refused.reason,
          error: `${refused.reason}: ${refused.message}`,
        })
        if (!marked) {
          lostLease('setting a refused row aside was refused', [row.shard])
          break
        }
        logger.error(
          {
            holder,
            id: row.id,
            topic: row.topic,
            key: row.message_key,
            reason: refused.reason,
            valueBytes: Buffer.byteLength(row.value),
            err: error,
          },
          'the broker refused an outbox row for good: it is set aside, and the later rows of its key wait behind it ' +
            'until an operator retries or discards it (src/platform/outbox/cli.ts)',
        )
      }
    }
    return published
  }

  /**
   * One batch: how many rows it selected (a full batch means more may wait) and how many were marked
   * published: the previous batch's, with this select, or this one's when it goes one by one.
   */
  const publishBatch = async (): Promise<{ selected: number; published: number }> => {
    if (abandoned) {
      throw new AppError(
        ErrorCodes.TRANSPORT_UNAVAILABLE,
        'an abandoned publish has not settled yet; the relay neither publishes nor renews its lease until it has',
      )
    }
    // A renewal may hand shards over: what was published under them is marked first.
    if (unmarked && renewalDue()) await markUnmarked()
    let held = await holdLease()
    if (!held) return { selected: 0, published: await markUnmarked() }
    let ready = readyShards(held)
    if (ready.length === 0) {
      const published = await markUnmarked()
      // Every shard held waits out a previous holder: the first one to be done.
      const waitMs = Math.min(...[...held.shards.values()].map((s) => s.publishNotBefore)) - performance.now()
      await pause(waitMs, stopping.signal)
      const none = { selected: 0, published }
      if (stopped) return none
      held = await holdLease()
      if (!held) return none
      ready = readyShards(held)
      if (ready.length === 0) return none
    }
    // Qualified: the select list turns id into text, and ordering by text would put 10 before 9.
    // Holding every shard (one relay), the relay reads the outbox as a whole: no hash per row scanned.
    // Refused rows wait for an operator, and so do the later rows of their topic and key (per-key
    // order): PUBLISHABLE leaves them out, at no cost while none is refused.
    const every = ready.length === shards
    const select = (first: number, leaveOut?: number) =>
      `SELECT outbox.id::text, topic, message_key, value, headers,
              (extract(epoch FROM now() - created_at) * 1000)::float8 AS age_ms,
              outbox_shard(message_key, $${first + 1}::int) AS shard
         FROM outbox WHERE ${PUBLISHABLE}
         ${every ? '' : `AND outbox_shard(message_key, $${first + 1}::int) = ANY($${first + 2}::int[])`}
         ${leaveOut === undefined ? '' : `AND outbox.id <> ALL($${leaveOut}::bigint[])`}
        ORDER BY outbox.id LIMIT $${first}`
    const params = every ? [batchSize, shards] : [batchSize, shards, ready.map((s) => s.shard)]
    let rows: OutboxRow[]
    let published = 0
    const previous = unmarked
    if (previous) {
      const answer = await markPublishedThenSelect<OutboxRow>(db, landed(previous), {
        // The previous batch's ids are the mark's first parameter.
        sql: (first) => select(first, 1),
        params,
      })
      unmarked = undefined
      published = fenced(previous.rows, answer.marked)
      rows = answer.rows
      if (published < previous.rows.length) {
        // The fence refused the mark: the shards it names are another relay's now, and so are the
        // rows this select found in them. Only the shards still held publish.
        if (!lease) return { selected: 0, published }
        const still = lease.shards
        ready = ready.filter((s) => still.has(s.shard))
        rows = rows.filter((r) => still.has(r.shard))
        held = lease
      }
    } else {
      rows = (await db.query<OutboxRow>(select(1), params)).rows
    }
    if (rows.length === 0) return { selected: 0, published }
    let positions: PublishedPosition[]
    try {
      positions = await publishWithinLease(rows, held, ready, performance.now())
    } catch (error) {
      const refusal = findRefusal(error)
      if (!refusal) throw error
      return { selected: rows.length, published: published + (await publishOneByOne(rows, refusal)) }
    }
    unmarked = { rows, ready, positions, landedAt: performance.now() }
    return { selected: rows.length, published }
  }

  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work)
    queue = run.catch(() => {})
    return run
  }

  /** Publishes batches while they come full; resolves with the rows selected and the rows marked. */
  const drainBatches = async (): Promise<{ selected: number; published: number }> => {
    const total = { selected: 0, published: 0 }
    for (;;) {
      const { selected, published } = await exclusive(publishBatch)
      total.selected += selected
      total.published += published
      if (selected < batchSize) return total
    }
  }

  /** Everything pending now, the last batch marked too: how many rows were marked published. */
  const drain = async (): Promise<number> => {
    const { published } = await drainBatches()
    return published + (await exclusive(markUnmarked))
  }

  /** Rows the last drain published: more than one means commits are arriving in bursts. */
  let lastDrained = 0
  const loop = async () => {
    while (!stopped) {
      // With `coalesceMs`, a moment's wait under load lets the rows of concurrent commands go out
      // in one batch. Without it (the default), what commits while a batch is selected and
      // published goes out with the next: the relay batches as much as it is loaded, and a hop
      // waits for nothing but the batch before it.
      if (coalesceMs > 0 && lastDrained > 1) await new Promise((resolve) => setTimeout(resolve, coalesceMs))
      dirty = false
      current = drainBatches().then(({ selected }) => selected)
      try {
        lastDrained = await current
        if (failures > 0) logger.info({ afterFailures: failures }, 'outbox relay recovered')
        failures = 0
      } catch (error) {
        failures++
        const delay = Math.min(retryMaxMs, retryBaseMs * 2 ** (failures - 1))
        const ids = (error as { outboxIds?: string[] }).outboxIds
        if (ids) {
          await db
            .query(
              'UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $2 WHERE id = ANY($1::bigint[])',
              [ids, (error as Error).message],
            )
            .catch(() => {})
        }
        logger.warn(
          { err: error, attempt: failures, retryInMs: delay },
          'outbox relay could not publish; the rows stay pending and will be retried',
        )
        await sleep(delay, (resolve) => {
          wake = resolve
        })
        continue
      }
      if (performance.now() >= nextPrune) {
        nextPrune = performance.now() + PRUNE_EVERY_MS
        const pruned = await prunePublished(db, options.retainPublishedHours ?? 24).catch(() => 0)
        if (pruned > 0) logger.info({ pruned }, 'deleted published outbox rows past their retention')
      }
      // The last batch is marked with the next select when more rows come soon; otherwise alone.
      if (unmarked && !dirty && !stopped) {
        await sleep(markWithNextMs, (resolve) => {
          wake = resolve
        })
        if (!dirty && !stopped) await markAlone()
      }
      // Rows that arrived while draining are published at once; otherwise wait for a signal or the poll.
      if (!dirty && !stopped) {
        await sleep(pollIntervalMs, (resolve) => {
          wake = resolve
        })
      }
    }
    // Stopping: what was published is marked before the shards are handed over.
    await markAlone()
  }

  /** Marks the last batch alone; a failure leaves it to the next select (or to be published again). */
  const markAlone = async () => {
    if (!unmarked) return
    await exclusive(markUnmarked).catch((error: unknown) => {
      logger.warn({ err: error }, 'outbox relay could not mark published rows; it tries again with its next select')
    })
  }

  const notified = () => {
    dirty = true
    // A failing relay keeps its backoff; a new row must not turn it into a busy loop.
    if (failures === 0) wake?.()
  }
  const unsubscribe = options.signal.onNotify(notified)
  const running = loop()

  return {
    drain: () => drain(),
    joined,
    wake: notified,
    holdsEveryShard: () => lease?.shards.size === shards,
    async pending() {
      const { rows } = await db.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM outbox WHERE published_at IS NULL',
      )
      return Number(rows[0]?.n ?? 0)
    },
    async stop() {
      stopped = true
      stopping.abort()
      unsubscribe()
      wake?.()
      await current.catch(() => {})
      await running
      await queue
      settleJoined?.()
      const held = lease
      lease = undefined
      if (held && abandoned) {
        // Released, the shards would go to the next relay at once, while this publish may still land.
        logger.warn(
          { holder, shards: [...held.shards.keys()] },
          'outbox relay stopped with a publish unsettled; its lease expires',
        )
      }
      // Hand the shards over at once instead of making other processes wait for them to expire,
      // and stop counting as a relay that wants its share.
      await leaveShards(db, holder, held && !abandoned ? known(held, performance.now()) : []).catch(() => {})
    },
  }
}

function sleep(ms: number, expose: (resolve: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    expose(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}

/** Waits `ms`, or less if `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
