import { randomUUID } from 'node:crypto'
import {
  Admin,
  Consumer,
  ListOffsetTimestamps,
  type Message,
  MessagesStreamModes,
  stringDeserializers,
} from '@platformatic/kafka'
import type { kafkaSecurityOptions } from './kafka.ts'
import type {
  Headers,
  IncomingMessage,
  LogDescription,
  LogGroup,
  LogGroupMember,
  LogTopic,
  ReadTopicOptions,
} from './port.ts'

/** How the adapter reaches the cluster: its bootstrap brokers, with SASL and TLS. */
export type KafkaConnection = { bootstrapBrokers: string[] } & ReturnType<typeof kafkaSecurityOptions>

type StringMessage = Message<string, string, string, string>

export function toIncomingMessage(message: StringMessage): IncomingMessage {
  const headers: Headers = {}
  for (const [k, v] of message.headers) headers[k] = v
  return {
    topic: message.topic,
    partition: message.partition,
    offset: message.offset.toString(),
    key: message.key ?? '',
    value: message.value ?? '',
    headers,
    timestamp: new Date(Number(message.timestamp)),
  }
}

/**
 * The Kafka adapter's operator views (`readTopic`, `describeLog`), with an admin client of their
 * own rather than the transport's: that one retries for as long as publishing may take, while an
 * operator's view should answer or fail within seconds (the dashboard asks again on its next
 * refresh). The client is made on first use, made again after a failure, and closed with the
 * transport.
 */
export class KafkaLogViews {
  readonly #clientId: string
  readonly #connection: KafkaConnection
  #admin: Admin | undefined
  #closed = false

  constructor(clientId: string, connection: KafkaConnection) {
    this.#clientId = clientId
    this.#connection = connection
  }

  #client(): Admin {
    if (this.#closed) throw new Error('transport is closed')
    this.#admin ??= new Admin({
      clientId: `${this.#clientId}-log-views`,
      ...this.#connection,
      retries: 1,
      retryDelay: 200,
      connectTimeout: 5_000,
      requestTimeout: 10_000,
    })
    return this.#admin
  }

  /** Runs `work` with the admin client, and drops a client that failed. */
  async #withAdmin<T>(work: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = this.#client()
    try {
      return await work(admin)
    } catch (error) {
      if (this.#admin === admin) {
        this.#admin = undefined
        await admin.close().catch(() => {})
      }
      throw error
    }
  }

  describe(prefix = ''): Promise<LogDescription> {
    return this.#withAdmin(async (admin) => {
      const names = (await admin.listTopics()).filter((t) => t.startsWith(prefix) && !t.startsWith('__')).sort()
      const topics: LogTopic[] = []
      if (names.length > 0) {
        const metadata = await admin.metadata({ topics: names })
        // Timestamp -1 asks for each partition's end.
        const listed = await admin.listOffsets({
          topics: names.map((name) => ({
            name,
            partitions: Array.from({ length: metadata.topics.get(name)?.partitionsCount ?? 0 }, (_, i) => ({
              partitionIndex: i,
              timestamp: -1n,
            })),
          })),
        })
        for (const topic of listed) {
          topics.push({
            name: topic.name,
            partitions: topic.partitions
              .map((p) => ({ partition: p.partitionIndex, endOffset: Number(p.offset) }))
              .sort((a, b) => a.partition - b.partition),
          })
        }
      }
      const groupIds = [...(await admin.listGroups()).keys()].filter((g) => g.startsWith(prefix)).sort()
      const groups = new Map<string, LogGroup>()
      if (groupIds.length > 0) {
        for (const [id, group] of await admin.describeGroups({ groups: groupIds })) {
          const members: LogGroupMember[] = [...group.members.values()].map((m) => ({
            id: m.id,
            clientId: m.clientId,
            host: m.clientHost,
            assignments: [...(m.assignments?.values() ?? [])].map((a) => ({
              topic: a.topic,
              partitions: [...a.partitions].sort((x, y) => x - y),
            })),
          }))
          groups.set(id, { group: id, state: String(group.state), members, committed: [] })
        }
        for (const group of await admin.listConsumerGroupOffsets({ groups: groupIds })) {
          const described = groups.get(group.groupId)
          if (!described) continue
          for (const topic of group.topics) {
            for (const p of topic.partitions) {
              described.committed.push({
                topic: topic.name,
                partition: p.partitionIndex,
                offset: p.committedOffset < 0n ? 0 : Number(p.committedOffset),
              })
            }
          }
        }
      }
      return { topics: topics.sort((a, b) => a.name.localeCompare(b.name)), groups: [...groups.values()] }
    })
  }

  /**
   * Reads with a consumer of a throwaway group (`<clientId>-topic-reader-<uuid>`, deleted
   * afterwards) that commits nothing: the end offsets are listed first, and the read stops once
   * every partition has been read up to its end, or at the timeout.
   */
  async read(
    topic: string,
    visit: (message: IncomingMessage) => void,
    { timeoutMs }: ReadTopicOptions,
  ): Promise<{ complete: boolean } | null> {
    const deadline = performance.now() + timeoutMs
    const exists = await this.#withAdmin(async (admin) => (await admin.listTopics()).includes(topic))
    if (!exists) return null
    const groupId = `${this.#clientId}-topic-reader-${randomUUID()}`
    const consumer = new Consumer({
      clientId: `${this.#clientId}-topic-reader`,
      groupId,
      ...this.#connection,
      deserializers: stringDeserializers,
      autocommit: false,
      sessionTimeout: 10_000,
      heartbeatInterval: 500,
      retries: 1,
      retryDelay: 200,
      connectTimeout: Math.min(5_000, timeoutMs),
      requestTimeout: Math.min(15_000, timeoutMs),
    })
    let joined = false
    try {
      const [starts, ends] = await Promise.all([
        consumer.listOffsets({ topics: [topic], timestamp: ListOffsetTimestamps.EARLIEST }),
        consumer.listOffsets({ topics: [topic], timestamp: ListOffsetTimestamps.LATEST }),
      ])
      // The last offset to read per partition; empty partitions have nothing to wait for.
      const pending = new Map<number, bigint>()
      ;(ends.get(topic) ?? []).forEach((end, partition) => {
        const start = starts.get(topic)?.[partition] ?? 0n
        if (end > start) pending.set(partition, end - 1n)
      })
      if (pending.size === 0) return { complete: true }

      joined = true
      const stream = await consumer.consume({
        topics: [topic],
        mode: MessagesStreamModes.EARLIEST,
        autocommit: false,
        maxWaitTime: 200,
      })
      try {
        const complete = await new Promise<boolean>((resolve, reject) => {
          const timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()))
          stream.on('error', (error: Error) => {
            clearTimeout(timer)
            reject(error)
          })
          stream.on('data', (message: StringMessage) => {
            const last = pending.get(message.partition)
            if (last === undefined || message.offset > last) return
            visit(toIncomingMessage(message))
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
      await consumer.close(true).catch(() => {})
      if (joined) {
        try {
          await this.#client().deleteGroups({ groups: [groupId] })
        } catch {
          // Not worth failing the read, nor dropping the client: the group committed nothing, and
          // the broker forgets an empty group after its offsets' retention.
        }
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    const admin = this.#admin
    this.#admin = undefined
    await admin?.close().catch(() => {})
  }
}
