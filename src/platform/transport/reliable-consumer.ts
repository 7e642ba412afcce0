import { AppError, isRetryable, toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { EVENT_ID_HEADER } from './instrumented.ts'
import type { IncomingMessage, Subscription, Transport } from './port.ts'

/**
 * Failure handling every consumer gets for free, on top of any transport:
 * - a message that cannot be decoded (not JSON, failing its schema, unknown type) is a poison
 *   message: it goes to `<topic>-dlq` at once, with the reason, and is never retried;
 * - a handler that throws is retried with exponential backoff (seed 001: 3 retries, 1 s, 2 s, 4 s);
 *   once the retries are spent, or at once for an error that is not retryable (a domain rejection,
 *   a stale expected version: see `AppError.retryable`), the message goes to the
 *   dead-letter topic with the error, its stack and the attempt count;
 * - either way the partition keeps flowing. Only a failure to write the dead letter itself stops
 *   the subscription uncommitted, so that nothing accepted is ever lost.
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
  /** The original message value, exactly as it was received. */
  payload: string
}

export const deadLetterTopic = (topic: string): string => `${topic}-dlq`

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

export async function startReliableConsumer<T>(options: ReliableConsumerOptions<T>): Promise<Subscription> {
  const { transport, groupId, logger, metrics } = options
  const isPermanent = options.isPermanent ?? isPermanentError
  // The subscription creates its topics; a dead-letter topic is created by its first publish.

  const deadLetter = async (message: IncomingMessage, reason: string, error: Error, attempts: number) => {
    const record: DeadLetterRecord = {
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
    }
    const [position] = await transport.publish([
      {
        topic: deadLetterTopic(message.topic),
        key: message.key,
        value: JSON.stringify(record),
        headers: { ...message.headers, 'dlq-reason': reason, 'dlq-original-topic': message.topic },
      },
    ])
    metrics?.deadLettered.inc({ topic: message.topic, group: groupId, reason })
    logger.warn(
      {
        ...whereFrom(message, groupId),
        reason,
        attempts,
        err: error,
        dlqTopic: position?.topic,
        dlqOffset: position?.offset,
      },
      `message dead-lettered: ${reason}: ${error.message}`,
    )
  }

  const handler = async (message: IncomingMessage) => {
    const decoded = options.decode(message)
    if (!decoded.ok) {
      await deadLetter(message, decoded.reason, new AppError('POISON_MESSAGE', decoded.message), 0)
      return
    }
    const stopTimer = metrics?.handlerSeconds.startTimer({ topic: message.topic, group: groupId })
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await options.handle(decoded.value, message)
          metrics?.consumed.inc({ topic: message.topic, group: groupId })
          return
        } catch (thrown) {
          const error = toError(thrown)
          const permanent = isPermanent(error)
          if (permanent || attempt > options.retry.max) {
            await deadLetter(message, permanent ? 'REJECTED' : 'RETRIES_EXHAUSTED', error, attempt)
            return
          }
          const delay = retryDelayMs(options.retry, attempt)
          metrics?.retries.inc({ topic: message.topic, group: groupId })
          logger.warn(
            {
              ...whereFrom(message, groupId),
              attempt,
              retryInMs: delay,
              err: error,
            },
            'handler failed; retrying',
          )
          await new Promise((resolve) => setTimeout(resolve, delay))
        }
      }
    } finally {
      stopTimer?.()
    }
  }

  return transport.subscribe({
    groupId,
    topics: options.topics,
    handler,
    onError: (error) => {
      logger.error({ err: error, groupId }, 'consumer stopped: the dead-letter topic could not be written')
      options.onError?.(error)
    },
  })
}
