import { randomUUID } from 'node:crypto'
import {
  Admin,
  Consumer,
  ListOffsetTimestamps,
  type Message,
  MessagesStreamModes,
  stringDeserializers,
} from '@platformatic/kafka'
import type { Config, KafkaSecurity } from '../config.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { kafkaSecurityOptions } from './kafka.ts'
import type { Headers, IncomingMessage } from './port.ts'

/**
 * Reads a whole topic, every partition from the start of its log, without joining a consumer group
 * that lasts and without creating the topic: what an audit of a topic needs (seed 002's
 * `GET /getAllOrderIdsFromTopic`), and what a subscription cannot do (subscribing creates a missing
 * topic, and never says "you have read everything").
 *
 * The read is bounded twice: by what the topic held when the read started (messages published
 * during the read may or may not be visited) and by `timeoutMs`, after which it stops and says the
 * read was not complete.
 *
 * It sits beside the transport port rather than in it: one adapter per technology, chosen by the
 * same configuration that chose the transport (`topicReaderFor`), with the same topic prefix.
 */
export interface TopicReader {
  /**
   * Hands every message of `topic` to `visit`, partition by partition in offset order. Resolves to
   * `null` when the topic does not exist (it is not created), otherwise to whether every message
   * present at the start was visited before the timeout.
   */
  read(
    topic: string,
    visit: (message: IncomingMessage) => void,
    options: { timeoutMs: number },
  ): Promise<{ complete: boolean } | null>
}

/** The reader for the transport `config` chose: the broker's log, or the embedded log in `db`. */
export function topicReaderFor(config: Pick<Config, 'transport' | 'kafka'>, db: SqlDatabase): TopicReader {
  const prefix = config.kafka.topicPrefix
  return config.transport === 'kafka'
    ? kafkaTopicReader({
        brokers: config.kafka.brokers,
        clientId: config.kafka.clientId,
        prefix,
        security: config.kafka.security,
      })
    : embeddedTopicReader(db, { prefix })
}

const PAGE_SIZE = 500

/** Reads the embedded log's tables (see `embedded.ts`) directly, page by page. */
export function embeddedTopicReader(db: SqlDatabase, options: { prefix?: string } = {}): TopicReader {
  const prefix = options.prefix ?? ''
  return {
    async read(topic, visit, { timeoutMs }) {
      const deadline = Date.now() + timeoutMs
      const stored = `${prefix}${topic}`
      // The heads, taken once: the read covers what was there when it started.
      const { rows: heads } = await db.query<{ partition: number; next_offset: string }>(
        `SELECT p.partition, p.next_offset::text AS next_offset FROM log_topics t
           JOIN log_partitions p ON p.topic = t.name WHERE t.name = $1 ORDER BY p.partition`,
        [stored],
      )
      if (heads.length === 0) return null
      for (const head of heads) {
        let position = '0'
        for (;;) {
          if (Date.now() > deadline) return { complete: false }
          const { rows } = await db.query<{
            offset: string
            key: string
            value: string
            headers: unknown
            created_at: Date | string
          }>(
            `SELECT m."offset"::text AS "offset", m.key, m.value, m.headers, m.created_at FROM log_messages m
              WHERE m.topic = $1 AND m.partition = $2 AND m."offset" >= $3 AND m."offset" < $4
              ORDER BY m."offset" LIMIT $5`,
            [stored, head.partition, position, head.next_offset, PAGE_SIZE],
          )
          for (const row of rows) {
            const headers = typeof row.headers === 'string' ? JSON.parse(row.headers) : row.headers
            visit({
              topic,
              partition: Number(head.partition),
              offset: row.offset,
              key: row.key,
              value: row.value,
              headers: (headers ?? {}) as Headers,
              timestamp: new Date(row.created_at),
            })
          }
          const last = rows.at(-1)
          if (!last || rows.length < PAGE_SIZE) break
          position = (BigInt(last.offset) + 1n).toString()
        }
      }
      return { complete: true }
    },
  }
}

export interface KafkaTopicReaderOptions {
  brokers: string[]
  clientId: string
  prefix?: string
  /** SASL and TLS, as for the process's transport. */
  security?: KafkaSecurity
}

/**
 * Reads a topic on the broker with a consumer of a throwaway group (deleted afterwards) that
 * commits nothing: the end offsets are listed first, and the read stops once every partition has
 * been read up to its end, or at the timeout.
 */
export function kafkaTopicReader(options: KafkaTopicReaderOptions): TopicReader {
  const prefix = options.prefix ?? ''
  return {
    async read(topic, visit, { timeoutMs }) {
      const deadline = Date.now() + timeoutMs
      const stored = `${prefix}${topic}`
      const common = {
        bootstrapBrokers: options.brokers,
        ...kafkaSecurityOptions(options.security),
        retries: 1,
        retryDelay: 200,
        connectTimeout: Math.min(5_000, timeoutMs),
        requestTimeout: Math.min(15_000, timeoutMs),
      }
      const admin = new Admin({ clientId: `${options.clientId}-topic-reader`, ...common })
      const groupId = `${options.clientId}-topic-reader-${randomUUID()}`
      let consumer: Consumer<string, string, string, string> | undefined
      let joined = false
      try {
        const topics = await admin.listTopics()
        if (!topics.includes(stored)) return null
        consumer = new Consumer({
          clientId: `${options.clientId}-topic-reader`,
          groupId,
          deserializers: stringDeserializers,
          autocommit: false,
          sessionTimeout: 10_000,
          heartbeatInterval: 500,
          ...common,
        })
        const [starts, ends] = await Promise.all([
          consumer.listOffsets({ topics: [stored], timestamp: ListOffsetTimestamps.EARLIEST }),
          consumer.listOffsets({ topics: [stored], timestamp: ListOffsetTimestamps.LATEST }),
        ])
        // The last offset to read per partition; empty partitions have nothing to wait for.
        const pending = new Map<number, bigint>()
        ;(ends.get(stored) ?? []).forEach((end, partition) => {
          const start = starts.get(stored)?.[partition] ?? 0n
          if (end > start) pending.set(partition, end - 1n)
        })
        if (pending.size === 0) return { complete: true }

        joined = true
        const stream = await consumer.consume({
          topics: [stored],
          mode: MessagesStreamModes.EARLIEST,
          autocommit: false,
          maxWaitTime: 200,
        })
        try {
          const complete = await new Promise<boolean>((resolve, reject) => {
            const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))
            stream.on('error', (error: Error) => {
              clearTimeout(timer)
              reject(error)
            })
            stream.on('data', (message: Message<string, string, string, string>) => {
              const last = pending.get(message.partition)
              if (last === undefined || message.offset > last) return
              visit(toIncoming(topic, message))
              if (message.offset === last) pending.delete(message.partition)
              if (pending.size === 0) {
                clearTimeout(timer)
                resolve(true)
              }
            })
          })
          return { complete }
        } finally {
          await stream.close().catch(() => {})
        }
      } finally {
        await consumer?.close(true).catch(() => {})
        if (joined) await admin.deleteGroups({ groups: [groupId] }).catch(() => {})
        await admin.close().catch(() => {})
      }
    },
  }
}

function toIncoming(topic: string, message: Message<string, string, string, string>): IncomingMessage {
  const headers: Headers = {}
  for (const [k, v] of message.headers) headers[k] = v
  return {
    topic,
    partition: message.partition,
    offset: message.offset.toString(),
    key: message.key ?? '',
    value: message.value ?? '',
    headers,
    timestamp: new Date(Number(message.timestamp)),
  }
}
