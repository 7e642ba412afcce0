import { createHash } from 'node:crypto'
import { trace } from '@opentelemetry/api'
import { type DeadLetterStore, REDRIVE_HEADERS } from '../dead-letters/store.ts'
import { AppError, isRetryable, toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { isDatabaseUnavailable } from '../sql/unavailable.ts'
import { EVENT_ID_HEADER } from './instrumented.ts'
import type {
  BatchHandler,
  HandlerContext,
  IncomingMessage,
  PublishedPosition,
  Subscription,
  Transport,
} from './port.ts'

/**
 * Failure handling every consumer gets for free, on top of any transport. Three kinds of failure,
 * three answers:
 * - **the message is bad** (not JSON, failing its schema, unknown type): a poison message, dead-
 *   lettered at once with the reason, never retried;
 * - **the message is refused** (an error that says no retry can help: a domain rejection, a stale
 *   expected version; see `AppError.retryable`): dead-lettered at once as `REJECTED`;
 * - **a dependency is down** (the database or the broker cannot be reached, the database is out of
 *   connections, disk or memory, or picked the handler's transaction as a deadlock victim: see
 *   `sql/unavailable.ts`): not the message's fault, so it is never dead-lettered and the attempts
 *   do not count toward the retry limit. The consumer holds the partition and tries again with
 *   backoff, without limit, visible in logs and in `orderflow_consumer_waiting_for_dependency`;
 * - anything else may pass: retried with exponential backoff (seed 001: 3 retries, 1 s, 2 s, 4 s),
 *   then dead-lettered as `RETRIES_EXHAUSTED` with the error, its stack and the attempt count.
 *
 * Either way the partition keeps flowing. A dead-letter record stays under the broker's message
 * size: an oversized payload is cut, with its size, SHA-256 and original coordinates kept. A dead
 * letter that cannot be written is retried with backoff and an error log each time; the message is
 * not committed until it is written, and the consumer never stops by itself.
 */

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string; message: string }

export interface RetryPolicy {
  /** Retries after the first attempt. */
  max: number
  /** Delay before the first retry; each further retry doubles it. */
  backoffMs: number
}

export interface ReliableConsumerOptions<T> {
  transport: Transport
  groupId: string
  topics: string[]
  decode: (message: IncomingMessage) => Decoded<T>
  handle: (value: T, message: IncomingMessage) => Promise<void>
  retry: RetryPolicy
  /** Errors that no retry can cure skip the retries; by default those whose `retryable` flag is false. */
  isPermanent?: (error: Error) => boolean
  logger: Logger
  metrics?: Metrics
  onError?: (error: Error) => void
  /** Largest dead-letter record to write, in bytes (default 900 000: under Kafka's 1 MiB default). */
  maxDeadLetterBytes?: number
  /** Longest wait between two attempts while a dependency is down (default 30 s). */
  maxWaitMs?: number
  /** A handler running longer than this counts as stalled in `health()` (default 60 s). */
  stallAfterMs?: number
  /**
   * Handle a partition's backlog in batches of at most `max`, all of a batch inside `run` (one
   * database transaction: see sql/batch.ts). A batch that fails, in any way, is handled again one
   * message at a time, so a bad message gets its retries and dead letter and the others commit.
   * Only for handlers whose work is the database's: nothing slow may run inside the transaction.
   */
  batch?: {
    max: number
    run<R>(work: () => Promise<R>): Promise<R>
    /**
     * Partitions' batches that arrive while another of this consumer's transactions runs wait for
     * it and then share one (with `handleBatch`, and no `prepareBatch`). For a database of many
     * connections; on PGlite's one connection a batch already waits its turn, and a wait before
     * that one only adds a queue.
     */
    shareTransactions?: boolean
  }
  /**
   * How a whole batch is handled inside `batch.run` (its messages decoded, in partition order), in
   * place of `handle` once per message: a handler that writes a batch's rows in one statement per
   * table. Anything it throws sends the batch through `handle` one message at a time, as any
   * failed batch, so it may refuse whatever it does not handle in bulk (a refusal, a conflict).
   */
  handleBatch?: (items: readonly { value: T; message: IncomingMessage }[], prepared?: unknown) => Promise<void>
  /**
   * Work a batch needs before its transaction, run outside it (before `batch.run`): a call out to
   * another system, which must not hold a transaction open. What it returns is handed to
   * `handleBatch`; a throw sends the batch one message at a time, as a failed batch.
   */
  prepareBatch?: (items: readonly { value: T; message: IncomingMessage }[]) => Promise<unknown>
  /**
   * Where dead letters are indexed for the console (platform/dead-letters/store.ts), after their
   * record was written to `<topic>-dlq`. Messages an operator sends to one group (a redrive, a
   * release) are skipped by every other group, with or without a store.
   */
  deadLetters?: DeadLetterStore
  /**
   * Per-key parking (needs `deadLetters`): once a message of key K is dead-lettered (as poison or
   * with its retries exhausted: a REJECTED message was answered, and parks nothing), the group's
   * later messages of K are parked in the database, in order, until an operator redrives or
   * discards that dead letter; then they are handled, oldest first, before anything newer of K.
   * For consumers whose messages of one key must be handled in order (an aggregate's commands).
   */
  parkKeys?: boolean
}

export interface DeadLetterRecord {
  originalTopic: string
  partition: number
  offset: string
  key: string
  groupId: string
  reason: string
  error: { message: string; code?: string; stack?: string }
  attempts: number
  failedAt: string
  headers: Record<string, string>
  /** The original message value, exactly as it was received (cut when it was too large: see below). */
  payload: string
  /** Set when the payload was cut to keep the record under the broker's message size. */
  payloadTruncated?: boolean
  /** The original payload's size in bytes (UTF-8). */
  payloadBytes: number
  /** SHA-256 (hex) of the original payload, to find or compare it. */
  payloadSha256: string
}

/** How a consumer is doing, for readiness and metrics. */
export interface ConsumerHealth {
  groupId: string
  state: 'running' | 'waiting-for-dependency' | 'stalled' | 'stopped'
  /** What it is waiting on or why it stopped. */
  detail?: string
}

export interface ReliableSubscription extends Subscription {
  health(): ConsumerHealth
}

/** One partition's batch, decoded, on its way into a transaction (its own, or one shared with others). */
interface BatchPart<T> {
  slot: string
  messages: IncomingMessage[]
  items: { value: T; message: IncomingMessage }[]
  /** Whether its keys may be parked (the group has parked keys): the transaction asks. */
  asks: boolean
}

/** While its group has parked keys, a member asks the group again at most this often whether it still has. */
const PARKED_RECHECK_MS = 10_000

/** A transaction shared by partitions' batches holds at most this many batches' worth of messages. */
const MERGED_BATCHES_MAX = 4

/** Thrown in a batch's transaction that holds a parked key: it rolls back and goes one by one. */
class KeyParked extends Error {
  constructor() {
    super('the batch holds a parked key')
    this.name = 'KeyParked'
  }
}

export const deadLetterTopic = (topic: string): string => `${topic}-dlq`

/**
 * Parking's steps as events of the message's consume span (with tracing on): the key, which on the
 * order service's and the saga's topics is the order id, and the dead letter it waits for.
 */
function spanEvent(name: string, message: IncomingMessage, deadLetterId: string, more: Record<string, number> = {}) {
  trace.getActiveSpan()?.addEvent(name, {
    'messaging.kafka.message.key': message.key,
    'orderflow.dead_letter_id': deadLetterId,
    ...more,
  })
}

/** Where a message came from, for every log line about it. */
const whereFrom = (message: IncomingMessage, groupId: string) => ({
  eventId: message.headers[EVENT_ID_HEADER],
  topic: message.topic,
  partition: message.partition,
  offset: message.offset,
  key: message.key,
  groupId,
})

export const retryDelayMs = (policy: RetryPolicy, retry: number): number => policy.backoffMs * 2 ** (retry - 1)

/** An error is permanent when it says no retry can help (see `isRetryable`): a domain rejection. */
export function isPermanentError(error: Error): boolean {
  return !isRetryable(error)
}

/**
 * The database or the broker cannot serve now (unreachable, out of resources, a deadlock victim):
 * waiting helps, the message is not at fault.
 */
export function isDependencyUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 8; depth++) {
    if (current instanceof AppError) {
      if (current.code === 'DATABASE_UNAVAILABLE' || current.code === 'TRANSPORT_UNAVAILABLE') return true
    } else if (isDatabaseUnavailable(current)) {
      return true
    }
    current = (current as { cause?: unknown }).cause
  }
  return false
}

/**
 * Thrown out of a handler that was waiting when its subscription closed or its partition was given
 * up (a rebalance): nothing is committed, and the partition's next owner gets the message.
 */
class Closing extends Error {
  constructor(why = 'the consumer closed') {
    super(`${why} while the message waited; it is redelivered`)
    this.name = 'Closing'
  }
}

const GIVEN_UP = 'the partition was given up'

/**
 * The dead-letter record for `message`, cut to `maxBytes`: first the stack, then the payload (to a
 * prefix, keeping its size and hash), then the headers.
 */
export function boundedDeadLetter(record: DeadLetterRecord, maxBytes: number): DeadLetterRecord {
  const size = (r: DeadLetterRecord) => Buffer.byteLength(JSON.stringify(r))
  if (size(record) <= maxBytes) return record
  const { stack: _stack, ...error } = record.error
  let bounded: DeadLetterRecord = { ...record, error: { ...error, message: error.message.slice(0, 2000) } }
  if (size(bounded) <= maxBytes) return bounded
  // JSON escaping can more than double a payload (every `"` becomes `\"`): cut by the escaped size.
  const room = maxBytes - size({ ...bounded, payload: '', headers: {} }) - 1024
  let payload = bounded.payload.slice(0, Math.max(0, room))
  while (payload.length > 0 && Buffer.byteLength(JSON.stringify(payload)) > room) {
    payload = payload.slice(0, Math.floor(payload.length * 0.8))
  }
  bounded = { ...bounded, payload, payloadTruncated: true }
  if (size(bounded) <= maxBytes) return bounded
  return { ...bounded, headers: { truncated: 'true' } }
}

export async function startReliableConsumer<T>(options: ReliableConsumerOptions<T>): Promise<ReliableSubscription> {
  const { transport, groupId, logger, metrics } = options
  const isPermanent = options.isPermanent ?? isPermanentError
  const maxDeadLetterBytes = options.maxDeadLetterBytes ?? 900_000
  const maxWaitMs = options.maxWaitMs ?? 30_000
  const stallAfterMs = options.stallAfterMs ?? 60_000
  let closing = false
  let stoppedBy: Error | undefined
  /** Handlers in flight, by partition: when each started, and whether it waits on a dependency. */
  /** Each partition's message in its handler: since when (`performance.now()`, which a step of the wall clock does not move). */
  const inFlight = new Map<string, { since: number; waitingOn?: string }>()
  const wakers = new Set<() => void>()

  /**
   * Waits `ms`, or until the subscription closes or the message's partition is given up (then
   * throws, leaving the message uncommitted), so a rebalance never waits for a backoff.
   */
  const pause = async (ms: number, signal: AbortSignal) => {
    if (closing) throw new Closing()
    if (signal.aborted) throw new Closing(GIVEN_UP)
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer)
        wakers.delete(wake)
        signal.removeEventListener('abort', wake)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      wakers.add(wake)
      signal.addEventListener('abort', wake, { once: true })
    })
    if (closing) throw new Closing()
    if (signal.aborted) throw new Closing(GIVEN_UP)
  }

  const deadLetter = async (
    message: IncomingMessage,
    reason: string,
    error: Error,
    attempts: number,
    signal: AbortSignal,
  ): Promise<string | undefined> => {
    const record = boundedDeadLetter(
      {
        originalTopic: message.topic,
        partition: message.partition,
        offset: message.offset,
        key: message.key,
        groupId,
        reason,
        error: {
          message: error.message,
          ...(error instanceof AppError ? { code: error.code } : {}),
          ...(error.stack ? { stack: error.stack } : {}),
        },
        attempts,
        failedAt: new Date().toISOString(),
        headers: message.headers,
        payload: message.value,
        payloadBytes: Buffer.byteLength(message.value),
        payloadSha256: createHash('sha256').update(message.value).digest('hex'),
      },
      maxDeadLetterBytes,
    )
    const outgoing = {
      topic: deadLetterTopic(message.topic),
      key: message.key,
      value: JSON.stringify(record),
      headers: {
        ...(record.headers.truncated ? {} : message.headers),
        'dlq-reason': reason,
        'dlq-original-topic': message.topic,
      },
    }
    let position: PublishedPosition | undefined
    for (let failures = 0; ; failures++) {
      try {
        ;[position] = await transport.publish([outgoing])
        metrics?.deadLettered.inc({ topic: message.topic, group: groupId, reason })
        logger.warn(
          {
            ...whereFrom(message, groupId),
            reason,
            attempts,
            err: error,
            dlqTopic: position?.topic,
            dlqOffset: position?.offset,
            ...(record.payloadTruncated ? { payloadBytes: record.payloadBytes } : {}),
          },
          `message dead-lettered: ${reason}: ${error.message}`,
        )
        break
      } catch (publishError) {
        const delay = Math.min(maxWaitMs, 500 * 2 ** Math.min(failures, 10))
        metrics?.deadLetterFailures.inc({ topic: message.topic, group: groupId })
        logger.error(
          { ...whereFrom(message, groupId), reason, err: publishError, attempt: failures + 1, retryInMs: delay },
          'the dead letter could not be written; the message stays uncommitted and the dead letter is retried',
        )
        await pause(delay, signal)
      }
    }
    if (!store) return undefined
    // A refusal is the key's answer, not a gap in its history: the key's later messages may follow it.
    const park = parkings !== undefined && message.key !== '' && reason !== 'REJECTED'
    if (park) parking.starts()
    const indexed = withStore(
      message,
      'index the dead letter',
      () =>
        store.record(
          {
            groupId,
            message,
            reason,
            error: record.error,
            attempts,
            failedAt: record.failedAt,
            payload: record.payload,
            payloadTruncated: record.payloadTruncated === true,
            payloadBytes: record.payloadBytes,
            dlq: { topic: outgoing.topic, position },
          },
          { park },
        ),
      signal,
    )
    const id = await (park ? indexed.finally(parking.written) : indexed)
    if (park) {
      spanEvent('orderflow.key_parked', message, id)
      logger.warn(
        { ...whereFrom(message, groupId), deadLetterId: id },
        `key ${message.key} parked behind dead letter ${id}: its later messages wait until it is redriven or discarded`,
      )
    }
    return id
  }

  const store = options.deadLetters
  /** Where keys are parked: the store, when this consumer parks keys. */
  const parkings = options.parkKeys === true ? store : undefined

  /**
   * What this member knows of its group's parked keys, so that a message or a batch asks whether
   * its keys are parked only while the group has some: nearly always it has none, and the question
   * was a statement per transaction. A key is parked only by the member that handles its partition
   * (the dead letter it writes), and a partition's next owner gets it with a new handler signal,
   * after the previous owner's handlers are done (`HandlerContext.signal`). So a member asks the
   * group once for every signal it has not seen (an assignment), and then knows: it has no parked
   * key until this member parks one. While the group has some, every message and batch asks as
   * before, and the group is asked again after a release here and at most every
   * `PARKED_RECHECK_MS` (a key parked elsewhere is released elsewhere).
   */
  let groupHasParked = true
  /**
   * This member's parkings: counted when one starts and when it is written, and those under way.
   * An answer about the group counts only if no parking of this member overlapped its question.
   */
  let parkingSteps = 0
  let parkingsUnderWay = 0
  let groupAskedAt = Number.NEGATIVE_INFINITY
  const signalsAsked = new WeakMap<AbortSignal, Promise<void>>()
  const askGroup = async (message: IncomingMessage, signal: AbortSignal) => {
    const keys = parkings as DeadLetterStore
    const before = parkingsUnderWay === 0 ? parkingSteps : undefined
    const any = await withStore(
      message,
      'read whether the group has parked keys',
      () => keys.anyParked(groupId),
      signal,
    )
    groupAskedAt = performance.now()
    if (parkingSteps === before) groupHasParked = any
  }
  let askingAgain: Promise<void> | undefined
  /** Whether a key of `message`'s batch may be parked: false only when the group is known to have none. */
  const mayBeParked = async (message: IncomingMessage, signal: AbortSignal): Promise<boolean> => {
    if (!parkings) return false
    let asked = signalsAsked.get(signal)
    if (!asked) {
      asked = askGroup(message, signal)
      signalsAsked.set(signal, asked)
    }
    await asked
    if (groupHasParked && !askingAgain && performance.now() - groupAskedAt > PARKED_RECHECK_MS) {
      // In the background: until it answers, the member asks as it does now.
      askingAgain = askGroup(message, signal)
        .catch(() => {})
        .finally(() => {
          askingAgain = undefined
        })
    }
    return groupHasParked
  }
  /** Said around this member's parking of a key: from its start on, its messages and batches ask. */
  const parking = {
    starts() {
      parkingSteps++
      parkingsUnderWay++
      groupHasParked = true
    },
    written() {
      parkingSteps++
      parkingsUnderWay--
    },
  }

  /**
   * The database work of dead letters and parking, tried again with backoff while it fails (the
   * message stays uncommitted meanwhile, as when a dead letter cannot be written).
   */
  const withStore = async <R>(
    message: IncomingMessage,
    what: string,
    work: () => Promise<R>,
    signal: AbortSignal,
  ): Promise<R> => {
    for (let failures = 0; ; failures++) {
      try {
        return await work()
      } catch (error) {
        const delay = Math.min(maxWaitMs, 500 * 2 ** Math.min(failures, 10))
        logger.error(
          { ...whereFrom(message, groupId), err: error, attempt: failures + 1, retryInMs: delay },
          `could not ${what}; the message stays uncommitted and this is tried again`,
        )
        await pause(delay, signal)
      }
    }
  }

  /**
   * One message through decode, handler, retries and dead letter. Says the dead letter's id when it
   * ended as one (with a store), `dead` when it ended as one without.
   */
  const handleOne = async (
    message: IncomingMessage,
    signal: AbortSignal,
  ): Promise<{ deadLetter?: string | 'dead' }> => {
    const labels = { topic: message.topic, group: groupId }
    const slot = `${message.topic}:${message.partition}`
    const decoded = options.decode(message)
    if (!decoded.ok) {
      const id = await deadLetter(message, decoded.reason, new AppError('POISON_MESSAGE', decoded.message), 0, signal)
      return { deadLetter: id ?? 'dead' }
    }
    let retries = 0
    for (let attempt = 1; ; attempt++) {
      try {
        await options.handle(decoded.value, message)
        metrics?.consumed.inc(labels)
        return {}
      } catch (thrown) {
        const error = toError(thrown)
        if (isDependencyUnavailable(error)) {
          const delay = Math.min(maxWaitMs, Math.max(options.retry.backoffMs, 100) * 2 ** Math.min(attempt - 1, 10))
          inFlight.set(slot, { since: performance.now(), waitingOn: error.message })
          metrics?.consumerWaiting.set(labels, 1)
          logger.warn(
            { ...whereFrom(message, groupId), attempt, retryInMs: delay, err: error },
            'a dependency is unavailable; holding the partition and trying again (never dead-lettered for this)',
          )
          await pause(delay, signal)
          continue
        }
        const permanent = isPermanent(error)
        if (permanent || retries >= options.retry.max) {
          const id = await deadLetter(message, permanent ? 'REJECTED' : 'RETRIES_EXHAUSTED', error, attempt, signal)
          return { deadLetter: id ?? 'dead' }
        }
        retries++
        const delay = retryDelayMs(options.retry, retries)
        metrics?.retries.inc(labels)
        // For the journey, best effort: a failure to record it must not hold the message back.
        await store
          ?.retried({
            groupId,
            message,
            attempt,
            error: { message: error.message, ...(error instanceof AppError ? { code: error.code } : {}) },
            retryInMs: delay,
          })
          .catch((recordError: unknown) =>
            logger.debug({ ...whereFrom(message, groupId), err: recordError }, 'the retry could not be recorded'),
          )
        logger.warn(
          { ...whereFrom(message, groupId), attempt, retryInMs: delay, err: error },
          'handler failed; retrying',
        )
        await pause(delay, signal)
      }
    }
  }

  /**
   * Releases `key`, which waited for dead letter `blocker`: its parked messages, oldest first,
   * through `handleOne`; then the key, unless one of them was dead-lettered (the key then waits for
   * that one, and the rest stay parked behind it).
   */
  const drain = async (keys: DeadLetterStore, message: IncomingMessage, blocker: string, signal: AbortSignal) => {
    const { key } = message
    let released = 0
    for (;;) {
      const next = await withStore(message, 'read the parked messages', () => keys.parked(groupId, key, 100), signal)
      if (next.length === 0) {
        if (await withStore(message, 'release the key', () => keys.release(groupId, key, blocker), signal)) {
          // Often the group's last parked key: its later messages and batches need not ask.
          await askGroup(message, signal)
          spanEvent('orderflow.key_released', message, blocker, { 'orderflow.released_messages': released })
          logger.info(
            { ...whereFrom(message, groupId), deadLetterId: blocker, released },
            `key ${key} released: ${released} parked message(s) handled in order`,
          )
          return
        }
        const now = await withStore(message, 'read the key', () => keys.blockers(groupId, [key]), signal)
        if (now.get(key) !== blocker) return
        continue
      }
      for (const parked of next) {
        const outcome = await handleOne(parked.message, signal)
        await withStore(parked.message, 'remove the parked message', () => keys.unpark(parked.seq), signal)
        if (outcome.deadLetter !== undefined) {
          logger.warn(
            { ...whereFrom(parked.message, groupId), released },
            `a parked message of key ${key} was dead-lettered while released; the key waits for it`,
          )
          return
        }
        released++
      }
    }
  }

  /** Whether `message` is an operator's, for another consumer group (a redrive to one consumer). */
  const forAnotherGroup = (message: IncomingMessage) => {
    const only = message.headers[REDRIVE_HEADERS.group]
    return only !== undefined && only !== groupId
  }
  const isOperators = (message: IncomingMessage) =>
    message.headers[REDRIVE_HEADERS.group] !== undefined ||
    message.headers[REDRIVE_HEADERS.control] !== undefined ||
    message.headers[REDRIVE_HEADERS.deadLetter] !== undefined

  /**
   * Parking's part of a message: a message of a parked key is parked (or, when it redrives or
   * releases the dead letter the key waits for, releases the key); true when nothing more is to be
   * done with it.
   */
  const parked = async (message: IncomingMessage, signal: AbortSignal): Promise<boolean> => {
    const control = message.headers[REDRIVE_HEADERS.control]
    const keys = parkings
    if (!keys || message.key === '') return control !== undefined
    // An operator's message (a redrive, a release) always reads the key: it may be what releases it.
    const operators = control !== undefined || message.headers[REDRIVE_HEADERS.deadLetter] !== undefined
    if (!operators && !(await mayBeParked(message, signal))) return false
    const blocker = (
      await withStore(message, 'read whether the key is parked', () => keys.blockers(groupId, [message.key]), signal)
    ).get(message.key)
    if (blocker === undefined) return control !== undefined
    if (message.headers[REDRIVE_HEADERS.deadLetter] === blocker) {
      if (control === undefined) {
        const outcome = await handleOne(message, signal)
        if (outcome.deadLetter !== undefined) return true
      }
      await drain(keys, message, blocker, signal)
      return true
    }
    if (control !== undefined) return true
    if (await withStore(message, 'park the message', () => keys.park(groupId, message), signal)) {
      spanEvent('orderflow.message_parked', message, blocker)
      logger.info(
        { ...whereFrom(message, groupId), deadLetterId: blocker },
        `message parked: key ${message.key} waits for dead letter ${blocker}`,
      )
      return true
    }
    return false
  }

  const handler = async (message: IncomingMessage, { signal }: HandlerContext) => {
    if (forAnotherGroup(message)) return
    const slot = `${message.topic}:${message.partition}`
    inFlight.set(slot, { since: performance.now() })
    const labels = { topic: message.topic, group: groupId }
    const stopTimer = metrics?.handlerSeconds.startTimer(labels)
    try {
      if (await parked(message, signal)) return
      await handleOne(message, signal)
    } finally {
      stopTimer?.()
      if (inFlight.get(slot)?.waitingOn) metrics?.consumerWaiting.set(labels, 0)
      inFlight.delete(slot)
      metrics?.consumerLastProgress.set({ ...labels, partition: String(message.partition) }, Date.now() / 1000)
    }
  }

  /**
   * A partition's backlog in one transaction. Poison in the batch, or a batch that fails, sends
   * every message of it through `handler` one at a time instead (its retries, waits and dead
   * letters), saying each one handled as it goes. A message that arrived alone is a batch of one:
   * whether its key is parked then goes out with its transaction's BEGIN rather than in a round
   * trip of its own before it (a write fewer per message at low rates, where nothing batches).
   */
  const batchHandler: BatchHandler = async (messages, context) => {
    const oneByOne = async (from: IncomingMessage[]) => {
      for (const message of from) {
        await handler(message, context)
        context.handled(message)
      }
    }
    const batch = options.batch
    const decoded = messages.map((message) => ({ message, decoded: options.decode(message) }))
    if (!batch || closing || decoded.some((d) => !d.decoded.ok) || messages.some(isOperators)) {
      return oneByOne(messages)
    }
    // A batch holding a parked key goes one by one, where each message of such a key is parked.
    // Whether one is parked is asked in the batch's own transaction, as its first statement (with a
    // store over the batch scope's database, it joins it), and answered while the batch goes on: on
    // PostgreSQL the question goes out with BEGIN and the batch's statements follow it without
    // waiting for the answer (sql/postgres.ts pipelines them). A parked key rolls all of it back
    // before COMMIT. A batch that prepares (a call out) asks before, so that no parked message is
    // prepared.
    const first = messages[0] as IncomingMessage
    const asks = await mayBeParked(first, context.signal)
    if (asks && options.prepareBatch) {
      const parked = () => parkedIn(messages)
      if (await withStore(first, 'read whether keys are parked', parked, context.signal)) return oneByOne(messages)
    }
    const slot = `${first.topic}:${first.partition}`
    const labels = { topic: first.topic, group: groupId }
    const items: { value: T; message: IncomingMessage }[] = []
    for (const { message, decoded: value } of decoded) if (value.ok) items.push({ value: value.value, message })
    inFlight.set(slot, { since: performance.now() })
    const stopTimer = metrics?.handlerSeconds.startTimer(labels)
    let failed: boolean
    try {
      const part = { slot, messages, items, asks }
      failed = mergesPartitions ? await withOthers(part) : await inOneTransaction([part])
    } finally {
      stopTimer?.()
      inFlight.delete(slot)
    }
    if (failed) return oneByOne(messages)
    metrics?.consumed.inc(labels, messages.length)
    metrics?.consumerLastProgress.set({ ...labels, partition: String(first.partition) }, Date.now() / 1000)
    for (const message of messages) context.handled(message)
  }

  /** Whether a key of `messages` is parked (never, without parking). */
  const parkedIn = async (messages: readonly IncomingMessage[]) => {
    if (!parkings) return false
    const keys = messages.map((m) => m.key)
    return (await parkings.blockers(groupId, keys)).size > 0
  }

  /**
   * Partitions' batches in one transaction, each partition's messages in its order (keys do not
   * cross partitions, so per-key order holds): resolves with whether it failed (rolled back).
   */
  const inOneTransaction = async (parts: readonly BatchPart<T>[]): Promise<boolean> => {
    const batch = options.batch as NonNullable<typeof options.batch>
    const messages = parts.flatMap((p) => p.messages)
    const items = parts.flatMap((p) => p.items)
    try {
      const prepared = options.handleBatch && options.prepareBatch ? await options.prepareBatch(items) : undefined
      await batch.run(async () => {
        const asks = !options.prepareBatch && parts.some((p) => p.asks)
        const asked = asks ? parkedIn(messages) : undefined
        // Its answer is awaited below; a batch that fails first leaves it unread.
        asked?.catch(() => {})
        if (options.handleBatch) await options.handleBatch(items, prepared)
        else {
          for (const { value, message } of items) await options.handle(value, message)
        }
        if (await asked) throw new KeyParked()
      })
      return false
    } catch (error) {
      logger.debug(
        { groupId, partitions: parts.map((p) => p.slot), messages: messages.length, err: error },
        error instanceof KeyParked
          ? 'a batch holds a parked key; its messages are handled one at a time'
          : 'a batch failed; its messages are handled one at a time',
      )
      return true
    }
  }

  /**
   * The batches of a consumer's partitions share a transaction while another of its transactions
   * runs, as the HTTP commands' group commit does (sql/batch.ts): the first runs at once, and the
   * ones that arrive meanwhile wait for it and then run together, up to `MERGED_BATCHES_MAX` times a
   * batch's messages. When idle, nothing waits. At moderate rates a partition's worker holds one or
   * two messages at a time, so a consumer of several partitions (the saga reads four topics) paid a
   * transaction per partition per turn. A merged transaction that fails tries each partition's batch
   * alone before its messages go one by one: a bad message costs its own partition what it did.
   * Only for a consumer that hands its batches to `handleBatch` and prepares nothing (a call out
   * would hold the others back), and that asked for it (`batch.shareTransactions`: on PostgreSQL).
   */
  const mergesPartitions =
    options.batch?.shareTransactions === true && options.handleBatch !== undefined && !options.prepareBatch
  const waiting: { part: BatchPart<T>; resolve: (failed: boolean) => void }[] = []
  let merging = false
  const withOthers = (part: BatchPart<T>) =>
    new Promise<boolean>((resolve) => {
      waiting.push({ part, resolve })
      runWaiting()
    })
  const runWaiting = () => {
    if (merging || waiting.length === 0) return
    const most = MERGED_BATCHES_MAX * Math.max(1, options.batch?.max ?? 1)
    const group: typeof waiting = []
    let size = 0
    while (waiting.length > 0) {
      const next = waiting[0] as (typeof waiting)[number]
      if (group.length > 0 && size + next.part.messages.length > most) break
      group.push(next)
      size += next.part.messages.length
      waiting.shift()
    }
    merging = true
    void (async () => {
      const failed = await inOneTransaction(group.map((w) => w.part))
      if (!failed || group.length === 1) {
        for (const w of group) w.resolve(failed)
        return
      }
      for (const w of group) w.resolve(await inOneTransaction([w.part]))
    })().finally(() => {
      merging = false
      runWaiting()
    })
  }

  // A handler that neither finishes nor fails (a hung call) is said in the log once, and shows in
  // health(): a consumer alive but stuck must not look healthy.
  const reported = new Set<number>()
  const watchdog = setInterval(
    () => {
      const now = performance.now()
      for (const [slot, flight] of inFlight) {
        if (flight.waitingOn || now - flight.since <= stallAfterMs || reported.has(flight.since)) continue
        reported.add(flight.since)
        logger.warn(
          { groupId, partition: slot, runningForMs: now - flight.since },
          `a message has been in its handler for over ${Math.round(stallAfterMs / 1000)} s; the partition is stalled`,
        )
      }
      if (reported.size > 1000) reported.clear()
    },
    Math.min(5_000, stallAfterMs),
  )
  watchdog.unref()

  // Dead-letter topics exist from the start, so that they are listed and readable (empty) like any
  // other topic before the first dead letter. On Kafka in the background: a broker that is away at
  // start-up must not hold the consumer back (the first dead letter creates the topic anyway).
  const deadLetterTopics = options.topics.map(deadLetterTopic)
  if (transport.kind === 'kafka') {
    transport.ensureTopics(deadLetterTopics).catch((error: unknown) => {
      logger.debug({ err: error, topics: deadLetterTopics }, 'dead-letter topics not created yet')
    })
  } else {
    await transport.ensureTopics(deadLetterTopics)
  }
  const subscription = await transport.subscribe({
    groupId,
    topics: options.topics,
    handler,
    ...(options.batch ? { batch: { max: options.batch.max, handle: batchHandler } } : {}),
    onError: (error) => {
      if (error instanceof Closing || closing) return
      stoppedBy = error
      logger.error({ err: error, groupId }, 'consumer stopped')
      options.onError?.(error)
    },
  })
  return {
    groupId: subscription.groupId,
    ready: subscription.ready,
    lag: () => subscription.lag(),
    async close() {
      closing = true
      clearInterval(watchdog)
      for (const wake of [...wakers]) wake()
      await subscription.close()
    },
    health() {
      if (stoppedBy) return { groupId, state: 'stopped', detail: stoppedBy.message }
      const now = performance.now()
      for (const [slot, flight] of inFlight) {
        if (flight.waitingOn)
          return { groupId, state: 'waiting-for-dependency', detail: `${slot}: ${flight.waitingOn}` }
        if (now - flight.since > stallAfterMs) {
          return {
            groupId,
            state: 'stalled',
            detail: `${slot}: one message in its handler for ${Math.round((now - flight.since) / 1000)} s`,
          }
        }
      }
      return { groupId, state: 'running' }
    },
  }
}
