import {
  Admin,
  Consumer,
  type Message,
  type MessagesStream,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  ProduceAcks,
  Producer,
  type SASLOptions,
  stringDeserializers,
  stringSerializers,
} from '@platformatic/kafka'
import type { KafkaSecurity } from '../config.ts'
import { toError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { partitionForKey } from './partitioner.ts'
import type {
  Headers,
  IncomingMessage,
  OutgoingMessage,
  PartitionLag,
  PublishedPosition,
  PublishOptions,
  SubscribeOptions,
  Subscription,
  Transport,
} from './port.ts'

const PRODUCER_MAX_BACKOFF_MS = 1_000
const PRODUCER_CONNECT_TIMEOUT_MS = 5_000
const PRODUCER_REQUEST_TIMEOUT_MS = 5_000
/**
 * The longest one publish can take before it fails, with `retries` producer retries: every attempt
 * timing out, plus the backoffs between them. The outbox relay's publish timeout (and its lease)
 * must outlast it.
 */
export const kafkaMaxSendMs = (retries: number): number =>
  PRODUCER_CONNECT_TIMEOUT_MS + (retries + 1) * PRODUCER_REQUEST_TIMEOUT_MS + retries * PRODUCER_MAX_BACKOFF_MS

export interface KafkaTransportOptions {
  brokers: string[]
  clientId: string
  /** Partitions of topics this transport creates. */
  partitions: number
  replicationFactor: number
  /** 'all' turns on the idempotent producer; '1' and '0' turn it off (Kafka requires acks=all for it). */
  requiredAcks: 'all' | '1' | '0'
  /** Producer retries on a failed send, with exponential backoff from `retryBackoffMs`. */
  retries: number
  retryBackoffMs: number
  /** Messages a subscription holds in memory ahead of its handlers before it stops fetching. */
  maxBufferedMessages?: number
  /** Kafka group session timeout and heartbeat interval (short values make rebalances quick). */
  sessionTimeoutMs?: number
  heartbeatIntervalMs?: number
  /** How often a subscription commits what its handlers finished (default 100 ms). */
  commitIntervalMs?: number
  /** Upper bound of the reconnect backoff after the broker went away. */
  maxReconnectDelayMs?: number
  /** SASL and TLS for every connection (producer, admin, consumers); plaintext when omitted. */
  security?: KafkaSecurity
  logger?: Logger
}

/**
 * The connection options of @platformatic/kafka for `security`, for every Kafka client of the
 * process (this transport's, and the topic reader's and the auditor's own clients).
 */
export function kafkaSecurityOptions(security: KafkaSecurity | undefined): {
  sasl?: SASLOptions
  tls?: { ca?: string; cert?: string; key?: string }
  tlsServerName?: boolean
} {
  if (!security) return {}
  return {
    ...(security.sasl
      ? {
          sasl: {
            mechanism: security.sasl.mechanism,
            username: security.sasl.username,
            // A provider, so the password is not a plain field of the client's options.
            password: () => security.sasl?.password ?? '',
          },
        }
      : {}),
    // SNI with the broker's host name, as brokers behind one TLS endpoint need.
    ...(security.tls ? { tls: { ...security.tls }, tlsServerName: true } : {}),
  }
}

export async function createKafkaTransport(options: KafkaTransportOptions): Promise<Transport> {
  return new KafkaTransport(options)
}

class KafkaTransport implements Transport {
  readonly kind = 'kafka' as const
  #options: KafkaTransportOptions
  #producer: Producer<string, string, string, string>
  /** For callers that retry by themselves (`singleAttempt`); created on first use. */
  #singleAttemptProducer: Producer<string, string, string, string> | undefined
  #admin: Admin
  #knownTopics = new Map<string, number>()
  #subscriptions = new Set<KafkaSubscription>()
  #closed = false

  constructor(options: KafkaTransportOptions) {
    this.#options = options
    this.#producer = this.#newProducer('producer', options.retries)
    this.#admin = new Admin({
      clientId: `${options.clientId}-admin`,
      bootstrapBrokers: options.brokers,
      ...kafkaSecurityOptions(options.security),
      retries: options.retries,
      retryDelay: (_client, _operation, attempt) => backoff(options.retryBackoffMs, attempt, 30_000),
      connectTimeout: 5_000,
      requestTimeout: 15_000,
    })
  }

  #newProducer(name: string, retries: number): Producer<string, string, string, string> {
    const options = this.#options
    return new Producer({
      clientId: `${options.clientId}-${name}`,
      bootstrapBrokers: options.brokers,
      ...kafkaSecurityOptions(options.security),
      serializers: stringSerializers,
      idempotent: options.requiredAcks === 'all',
      acks: acksFor(options.requiredAcks),
      // A send is bounded (`kafkaMaxSendMs`): short timeouts, backoff of at most 1 s.
      retries,
      retryDelay: (_client, _operation, attempt) => backoff(options.retryBackoffMs, attempt, PRODUCER_MAX_BACKOFF_MS),
      connectTimeout: PRODUCER_CONNECT_TIMEOUT_MS,
      requestTimeout: PRODUCER_REQUEST_TIMEOUT_MS,
    })
  }

  async ping(): Promise<void> {
    // Fresh metadata from a broker, not the client's cache: a frozen broker must fail this.
    await withTimeout(
      this.#admin.metadata({ topics: [], forceUpdate: true }),
      3_000,
      'the Kafka broker did not answer within 3 s',
    )
  }

  async ensureTopics(topics: string[]): Promise<void> {
    const missing = [...new Set(topics)].filter((t) => !this.#knownTopics.has(t))
    if (missing.length === 0) return
    for (const topic of missing) {
      try {
        await this.#admin.createTopics({
          topics: [topic],
          partitions: this.#options.partitions,
          replicas: this.#options.replicationFactor,
        })
        this.#options.logger?.info({ topic, partitions: this.#options.partitions }, 'created topic')
      } catch (error) {
        if (!isTopicAlreadyExists(error)) throw error
      }
    }
    const metadata = await this.#admin.metadata({ topics: missing, forceUpdate: true })
    for (const topic of missing) {
      const info = metadata.topics.get(topic)
      if (!info) throw new Error(`topic ${topic} was created but the broker does not report it`)
      this.#knownTopics.set(topic, info.partitionsCount)
    }
  }

  async publish(messages: OutgoingMessage[], options: PublishOptions = {}): Promise<PublishedPosition[]> {
    if (messages.length === 0) return []
    await this.ensureTopics(messages.map((m) => m.topic))
    // The caller gave up while the topics were looked up: nothing was sent, so nothing is sent.
    options.signal?.throwIfAborted()
    // The partition is chosen here rather than by the client so that each message's offset can be
    // derived from the base offset the broker returns per partition.
    const positions = messages.map((m) => ({
      topic: m.topic,
      partition: partitionForKey(m.key, this.#knownTopics.get(m.topic) ?? 1),
      index: 0,
    }))
    const perPartition = new Map<string, number>()
    for (const p of positions) {
      const id = `${p.topic}:${p.partition}`
      p.index = perPartition.get(id) ?? 0
      perPartition.set(id, p.index + 1)
    }
    if (options.singleAttempt) this.#singleAttemptProducer ??= this.#newProducer('relay-producer', 0)
    const producer = (options.singleAttempt && this.#singleAttemptProducer) || this.#producer
    const result = await producer.send({
      messages: messages.map((m, i) => ({
        topic: m.topic,
        key: m.key,
        value: m.value,
        partition: positions[i]?.partition ?? 0,
        ...(m.headers ? { headers: m.headers } : {}),
      })),
    })
    const baseOffsets = new Map<string, bigint>()
    for (const o of result.offsets ?? []) baseOffsets.set(`${o.topic}:${o.partition}`, BigInt(o.offset))
    return positions.map((p) => {
      const base = baseOffsets.get(`${p.topic}:${p.partition}`)
      return {
        topic: p.topic,
        partition: p.partition,
        offset: base === undefined ? '-1' : (base + BigInt(p.index)).toString(),
      }
    })
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    if (this.#closed) throw new Error('transport is closed')
    // Topics are ensured by the subscription as it connects, so that a service starts (and keeps
    // accepting work) while the broker is unreachable, and joins once it is back.
    const subscription = new KafkaSubscription(
      this.#options,
      options,
      () => this.ensureTopics(options.topics),
      () => this.#subscriptions.delete(subscription),
    )
    this.#subscriptions.add(subscription)
    subscription.start()
    return subscription
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.allSettled([...this.#subscriptions].map((s) => s.close()))
    await Promise.allSettled([
      this.#producer.close(),
      this.#singleAttemptProducer?.close() ?? Promise.resolve(),
      this.#admin.close(),
    ])
  }
}

/**
 * One group member. Messages of each partition go through a worker of their own, one at a time,
 * so partitions progress in parallel while each keeps its order. The stream is paused once
 * `maxBufferedMessages` are waiting, which is the backpressure a slow handler exerts.
 */
class KafkaSubscription implements Subscription {
  readonly groupId: string
  readonly ready: Promise<void>
  #transportOptions: KafkaTransportOptions
  #options: SubscribeOptions
  #onClosed: () => void
  #consumer: Consumer<string, string, string, string> | undefined
  #stream: MessagesStream<string, string, string, string> | undefined
  #queues = new Map<string, Message<string, string, string, string>[]>()
  #running = new Map<string, Promise<void>>()
  #buffered = 0
  #paused = false
  #state: 'starting' | 'running' | 'reconnecting' | 'closing' | 'closed' | 'failed' = 'starting'
  #markReady!: () => void
  #failReady!: (error: Error) => void
  #reconnectAttempt = 0
  #reconnectTimer: NodeJS.Timeout | undefined

  #ensureTopics: () => Promise<void>

  constructor(
    transportOptions: KafkaTransportOptions,
    options: SubscribeOptions,
    ensureTopics: () => Promise<void>,
    onClosed: () => void,
  ) {
    this.groupId = options.groupId
    this.#transportOptions = transportOptions
    this.#options = options
    this.#ensureTopics = ensureTopics
    this.#onClosed = onClosed
    this.ready = new Promise((resolve, reject) => {
      this.#markReady = resolve
      this.#failReady = reject
    })
    // `ready` may be awaited by nobody when the subscription fails before joining.
    this.ready.catch(() => {})
  }

  start(): void {
    this.#startConnecting()
  }

  #connecting: Promise<void> | undefined

  #startConnecting(): void {
    const attempt = this.#connect().finally(() => {
      if (this.#connecting === attempt) this.#connecting = undefined
    })
    this.#connecting = attempt
  }

  async #connect(): Promise<void> {
    const t = this.#transportOptions
    const consumer = new Consumer({
      clientId: `${t.clientId}-${this.groupId}`,
      groupId: this.groupId,
      bootstrapBrokers: t.brokers,
      ...kafkaSecurityOptions(t.security),
      deserializers: stringDeserializers,
      autocommit: false,
      highWaterMark: t.maxBufferedMessages ?? 256,
      sessionTimeout: t.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: t.heartbeatIntervalMs ?? 500,
      rebalanceTimeout: t.sessionTimeoutMs ?? 10_000,
      maxWaitTime: 500,
      retries: 3,
      retryDelay: 500,
      connectTimeout: 5_000,
      requestTimeout: 15_000,
    })
    this.#consumer = consumer
    try {
      await this.#ensureTopics()
      const stream = await consumer.consume({
        topics: this.#options.topics,
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
      })
      // Listen at once: the stream can fail while it starts (e.g. closed during its first fetch),
      // and an 'error' event nobody listens to would take the process down.
      stream.on('error', (error: Error) => {
        // A stream already replaced by a reconnect has nothing left to report.
        if (this.#stream === undefined || this.#stream === stream) this.#onTransportError(error)
      })
      if (this.#state === 'closing' || this.#state === 'closed') {
        await stream.close().catch(() => {})
        await consumer.close(true).catch(() => {})
        return
      }
      this.#stream = stream
      this.#state = 'running'
      this.#reconnectAttempt = 0
      stream.on('data', (message: Message<string, string, string, string>) => this.#route(message))
      this.#markReady()
    } catch (error) {
      this.#onTransportError(toError(error))
    }
  }

  #route(message: Message<string, string, string, string>): void {
    const id = `${message.topic}:${message.partition}`
    let queue = this.#queues.get(id)
    if (!queue) {
      queue = []
      this.#queues.set(id, queue)
    }
    queue.push(message)
    this.#buffered++
    if (this.#buffered >= (this.#transportOptions.maxBufferedMessages ?? 256) && !this.#paused) {
      this.#paused = true
      this.#stream?.pause()
    }
    if (!this.#running.has(id)) {
      const worker = this.#drain(id, queue).finally(() => this.#running.delete(id))
      this.#running.set(id, worker)
    }
  }

  async #drain(id: string, queue: Message<string, string, string, string>[]): Promise<void> {
    for (;;) {
      if (this.#state !== 'running') return
      const message = queue.shift()
      if (!message) return
      this.#buffered--
      try {
        await this.#options.handler(toIncoming(message))
      } catch (error) {
        this.#fail(toError(error), id)
        return
      }
      this.#markHandled(id, message)
      if (this.#paused && this.#buffered < (this.#transportOptions.maxBufferedMessages ?? 256) / 2) {
        this.#paused = false
        this.#stream?.resume()
      }
    }
  }

  /**
   * Commits are batched: the newest handled message of each partition is committed every
   * `commitIntervalMs`, and at once when the member stops. A commit per message costs a broker
   * round trip each; a commit lost to a crash means a redelivery, which at-least-once allows.
   */
  #handled = new Map<string, Message<string, string, string, string>>()
  #commitTimer: NodeJS.Timeout | undefined

  #markHandled(id: string, message: Message<string, string, string, string>): void {
    this.#handled.set(id, message)
    this.#commitTimer ??= setTimeout(() => void this.#flushCommits(), this.#transportOptions.commitIntervalMs ?? 100)
  }

  async #flushCommits(): Promise<void> {
    if (this.#commitTimer) clearTimeout(this.#commitTimer)
    this.#commitTimer = undefined
    const latest = [...this.#handled.values()]
    this.#handled.clear()
    await Promise.allSettled(latest.map((m) => m.commit()))
  }

  #fail(error: Error, where: string): void {
    if (this.#state === 'failed' || this.#state === 'closed') return
    this.#transportOptions.logger?.error(
      { err: error, groupId: this.groupId, partition: where },
      'handler failed; subscription stopped without committing the message',
    )
    this.#state = 'failed'
    this.#failReady(error)
    void this.#shutdown().finally(() => this.#options.onError?.(error))
  }

  #onTransportError(error: Error): void {
    if (this.#state === 'closing' || this.#state === 'closed' || this.#state === 'failed') return
    this.#state = 'reconnecting'
    const delay = backoff(500, ++this.#reconnectAttempt, this.#transportOptions.maxReconnectDelayMs ?? 10_000)
    // Said with its cause, and not on every attempt: a broker away for minutes is one story, not a
    // hundred lines (attempts 1–3, then 4, 8, 16… at warn; the rest at debug).
    const attempt = this.#reconnectAttempt
    const level = attempt <= 3 || (attempt & (attempt - 1)) === 0 ? 'warn' : 'debug'
    this.#transportOptions.logger?.[level](
      { err: error, groupId: this.groupId, retryInMs: delay, attempt },
      `Kafka consumer ${this.groupId} lost its connection (${rootCause(error)}); reconnecting in ${delay} ms (attempt ${attempt})`,
    )
    const consumer = this.#consumer
    const stream = this.#stream
    this.#stream = undefined
    this.#consumer = undefined
    void (async () => {
      await Promise.allSettled([...this.#running.values()])
      await withinMs(this.#flushCommits(), 5_000)
      this.#dropBuffered()
      await stream?.close().catch(() => {})
      await consumer?.close(true).catch(() => {})
      if (this.#state !== 'reconnecting') return
      this.#reconnectTimer = setTimeout(() => {
        this.#reconnectTimer = undefined
        if (this.#state === 'reconnecting') this.#startConnecting()
      }, delay)
    })()
  }

  #dropBuffered(): void {
    this.#queues.clear()
    this.#buffered = 0
    this.#paused = false
  }

  async #shutdown(): Promise<void> {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer)
    // A consumer closed while it is still joining hands back a stream that fails as it starts:
    // let the join finish (it sees the state and closes what it opened) before closing anything.
    if (this.#connecting) await withinMs(this.#connecting, 10_000)
    this.#stream?.pause()
    await Promise.allSettled([...this.#running.values()])
    await withinMs(this.#flushCommits(), 5_000)
    this.#dropBuffered()
    // Closing the stream flushes the commits of everything handled so far. A broker that is gone
    // or a group stuck mid-rebalance must not hold the process: give up after a bound.
    const stream = this.#stream
    const consumer = this.#consumer
    const closed = await withinMs(
      (async () => {
        await stream?.close().catch(() => {})
        await consumer?.close(true).catch(() => {})
      })(),
      10_000,
    )
    if (!closed) {
      this.#transportOptions.logger?.warn(
        { groupId: this.groupId },
        'Kafka consumer did not close within 10 s; dropped',
      )
    }
    this.#stream = undefined
    this.#consumer = undefined
    this.#onClosed()
  }

  async lag(): Promise<PartitionLag[]> {
    const consumer = this.#consumer
    if (!consumer || this.#state !== 'running') return []
    const lags = await consumer.getLag({ topics: this.#options.topics })
    const result: PartitionLag[] = []
    for (const [topic, partitions] of lags) {
      // Negative values mark partitions this member does not hold or has not committed yet.
      partitions.forEach((lag, partition) => {
        if (lag >= 0n) result.push({ topic, partition, lag: Number(lag) })
      })
    }
    return result
  }

  async close(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'closing') return
    const failed = this.#state === 'failed'
    this.#state = 'closing'
    this.#failReady(new Error('subscription closed before it was ready'))
    if (!failed) await this.#shutdown()
    this.#state = 'closed'
  }
}

function toIncoming(message: Message<string, string, string, string>): IncomingMessage {
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

async function withinMs(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  const done = await Promise.race([work.then(() => true as const), timeout])
  clearTimeout(timer)
  return done
}

function acksFor(acks: 'all' | '1' | '0'): number {
  if (acks === 'all') return ProduceAcks.ALL
  return acks === '1' ? ProduceAcks.LEADER : ProduceAcks.NO_RESPONSE
}

function backoff(baseMs: number, attempt: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1))
}

function isTopicAlreadyExists(error: unknown): boolean {
  const text = JSON.stringify(error, Object.getOwnPropertyNames(error ?? {})) + String(error)
  if (text.includes('TOPIC_ALREADY_EXISTS') || text.includes('already exists')) return true
  const nested = (error as { errors?: unknown[] })?.errors
  return Array.isArray(nested) && nested.some(isTopicAlreadyExists)
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * The innermost reason of a Kafka client error, in words: the client wraps a refused or unresolvable
 * broker in several layers ("Connection failed" → … → `getaddrinfo ENOTFOUND nohost`).
 */
export function rootCause(error: unknown, depth = 0): string {
  const e = error as { message?: string; code?: string; cause?: unknown; errors?: unknown[] } | undefined
  if (!e || depth > 6) return 'unknown error'
  const nested = e.cause ?? (Array.isArray(e.errors) ? e.errors[0] : undefined)
  if (nested !== undefined) return rootCause(nested, depth + 1)
  return e.message ?? e.code ?? String(error)
}
