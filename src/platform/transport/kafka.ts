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
import { kafkaGroupLag } from './kafka-group-lag.ts'
import { KafkaLogViews, toIncomingMessage } from './kafka-log-views.ts'
import { partitionForKey } from './partitioner.ts'
import type {
  GroupLag,
  IncomingMessage,
  LogDescription,
  OutgoingMessage,
  PartitionLag,
  PublishedPosition,
  PublishOptions,
  ReadTopicOptions,
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
  /** Upper bound of the reconnect backoff after the broker went away. */
  maxReconnectDelayMs?: number
  /** SASL and TLS for every connection (producer, admin, consumers); plaintext when omitted. */
  security?: KafkaSecurity
  /**
   * Whether a topic it publishes to or subscribes to is created when missing (default true). The
   * app sets it from KAFKA_CREATE_TOPICS (off unless told): in a deployment the topics are made by
   * `orderflow topics apply`, with their partitions, replication and retention, and a missing one
   * is an error that says so, retried until the topic exists.
   */
  createTopics?: boolean
  logger?: Logger
}

/** A topic the transport needs does not exist, and it may not create it. */
export class MissingTopicsError extends Error {
  readonly topics: string[]
  constructor(topics: string[]) {
    super(
      `topic${topics.length > 1 ? 's' : ''} ${topics.join(', ')} ${topics.length > 1 ? 'do' : 'does'} not exist on the cluster: create ${topics.length > 1 ? 'them' : 'it'} with \`npm run orderflow -- topics apply\`, or set KAFKA_CREATE_TOPICS=on to let orderflow create missing topics`,
    )
    this.name = 'MissingTopicsError'
    this.topics = topics
  }
}

/**
 * The connection options of @platformatic/kafka for `security`, for every Kafka client of the
 * process (this transport's, its log views', and the topics plan's).
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
  /** `readTopic` and `describeLog`, with an admin client of their own (`kafka-log-views.ts`). */
  #views: KafkaLogViews
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
    this.#views = new KafkaLogViews(options.clientId, {
      bootstrapBrokers: options.brokers,
      ...kafkaSecurityOptions(options.security),
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
    if (this.#options.createTopics === false) {
      const listed = new Set(await this.#admin.listTopics())
      const absent = missing.filter((topic) => !listed.has(topic))
      if (absent.length > 0) throw new MissingTopicsError(absent)
    } else {
      for (const topic of missing) await this.#createTopic(topic)
    }
    const metadata = await this.#admin.metadata({ topics: missing, forceUpdate: true })
    for (const topic of missing) {
      const info = metadata.topics.get(topic)
      if (!info) throw new Error(`topic ${topic} exists but the broker does not report it`)
      this.#knownTopics.set(topic, info.partitionsCount)
    }
  }

  async #createTopic(topic: string): Promise<void> {
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

  async groupLag(groups: readonly string[]): Promise<GroupLag[]> {
    if (this.#closed) throw new Error('transport is closed')
    return kafkaGroupLag(this.#admin, groups)
  }

  async readTopic(
    topic: string,
    visit: (message: IncomingMessage) => void,
    options: ReadTopicOptions,
  ): Promise<{ complete: boolean } | null> {
    if (this.#closed) throw new Error('transport is closed')
    return this.#views.read(topic, visit, options)
  }

  async describeLog(options: { prefix?: string } = {}): Promise<LogDescription> {
    if (this.#closed) throw new Error('transport is closed')
    return this.#views.describe(options.prefix)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.allSettled([...this.#subscriptions].map((s) => s.close()))
    await Promise.allSettled([
      this.#producer.close(),
      this.#singleAttemptProducer?.close() ?? Promise.resolve(),
      this.#admin.close(),
      this.#views.close(),
    ])
  }
}

/**
 * One group member. Messages of each partition go through a worker of their own, one at a time,
 * so partitions progress in parallel while each keeps its order. The stream is paused once
 * `maxBufferedMessages` are waiting, which is the backpressure a slow handler exerts.
 *
 * A rebalance hands back nothing handled. The group uses Kafka's classic protocol with its eager
 * assignor: every rebalance takes all partitions from every member, and the broker assigns them
 * again only once every member has sent its JoinGroup (or its rebalance timeout ran out).
 * @platformatic/kafka asks `protocolsMetadata` for the JoinGroup's user data before it sends it, and
 * waits for the answer: that is where this member gives its partitions up (`#release`). It stops
 * taking messages, lets the running handlers finish, commits what they handled, closes the stream,
 * and only then lets the JoinGroup go. Whoever gets a partition next starts exactly after the last
 * message handled here, and no two members handle one partition at once. After the join a new
 * stream opens from the committed offsets, so nothing fetched before the rebalance is handed out.
 *
 * Why not the newer consumer-group protocol (KIP-848, which the broker supports): the client
 * acknowledges a revocation on its next heartbeat by itself, without waiting for the application,
 * so a handler still running on a revoked partition would overlap with the partition's next owner.
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
  /** The member giving its partitions up, for a rebalance, a reconnect or for good. */
  #release: Promise<void> | undefined
  /** The stream was closed for a rebalance: a new one opens once the group assigned partitions again. */
  #reopenOnJoin = false
  /** Aborted, for the handlers, when the member gives its partitions up; renewed with each stream. */
  #handlersSignal = new AbortController()

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

  get #maxBuffered(): number {
    return this.#transportOptions.maxBufferedMessages ?? 256
  }

  async #connect(): Promise<void> {
    const t = this.#transportOptions
    const consumer: Consumer<string, string, string, string> = new Consumer({
      clientId: `${t.clientId}-${this.groupId}`,
      groupId: this.groupId,
      bootstrapBrokers: t.brokers,
      ...kafkaSecurityOptions(t.security),
      deserializers: stringDeserializers,
      autocommit: false,
      highWaterMark: this.#maxBuffered,
      sessionTimeout: t.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: t.heartbeatIntervalMs ?? 500,
      rebalanceTimeout: t.sessionTimeoutMs ?? 10_000,
      // Called before every JoinGroup, and the join waits for it: the partitions are given up here.
      protocolsMetadata: () => this.#beforeJoin(consumer),
      maxWaitTime: 500,
      retries: 3,
      retryDelay: 500,
      connectTimeout: 5_000,
      requestTimeout: 15_000,
    })
    this.#consumer = consumer
    // A rejoin that fails after a rebalance is reported here; nobody listening would crash the process.
    consumer.on('error', (error: Error) => {
      if (this.#consumer === consumer) this.#onTransportError(error)
    })
    consumer.on('consumer:group:join', () => {
      // What an operator watches while scaling or restarting: which partitions this member holds now.
      const held = (consumer.assignments ?? []).map((a) => `${a.topic}[${a.partitions.join(',')}]`)
      this.#transportOptions.logger?.info(
        { groupId: this.groupId, memberId: consumer.memberId, partitions: held },
        held.length > 0
          ? `joined ${this.groupId}: holds ${held.join(' ')}`
          : `joined ${this.groupId}: holds no partition`,
      )
      this.#onAssigned(consumer)
    })
    try {
      await this.#ensureTopics()
      // The subscription holds its topics itself: its streams come and go with every rebalance,
      // and the consumer forgets a topic (and leaves it out of its next join) once no stream has it.
      consumer.topics.trackAll(...this.#options.topics)
      const stream = await this.#openStream(consumer)
      if (!stream) return
      this.#state = 'running'
      this.#reconnectAttempt = 0
      this.#markReady()
    } catch (error) {
      this.#onTransportError(toError(error))
    }
  }

  /** Opens a stream from the group's committed offsets and routes its messages to the workers. */
  async #openStream(
    consumer: Consumer<string, string, string, string>,
  ): Promise<MessagesStream<string, string, string, string> | undefined> {
    const stream = await consumer.consume({
      topics: this.#options.topics,
      mode: MessagesStreamModes.COMMITTED,
      fallbackMode: MessagesStreamFallbackModes.EARLIEST,
    })
    // Listen at once: the stream can fail while it starts (e.g. closed during its first fetch),
    // and an 'error' event nobody listens to would take the process down. A stream already given
    // up (a rebalance, a reconnect) has nothing left to report.
    stream.on('error', (error: Error) => {
      if (this.#stream === stream) this.#onTransportError(error)
    })
    const stale = this.#consumer !== consumer || this.#release !== undefined || this.#stream !== undefined
    if (stale || this.#state === 'closing' || this.#state === 'closed' || this.#state === 'failed') {
      await stream.close().catch(() => {})
      if (this.#consumer !== consumer) await consumer.close(true).catch(() => {})
      return undefined
    }
    this.#stream = stream
    this.#handlersSignal = new AbortController()
    stream.on('data', (message: Message<string, string, string, string>) => {
      if (this.#stream === stream) this.#route(message)
    })
    return stream
  }

  /**
   * Before every JoinGroup: a member holding partitions gives them up, and the join waits until
   * what it handled is committed. A release already under way (the member is closing or
   * reconnecting) is waited for the same way.
   */
  async #beforeJoin(consumer: Consumer<string, string, string, string>): Promise<Buffer> {
    if (consumer === this.#consumer) {
      if (!this.#release && this.#stream) this.#reopenOnJoin = true
      if (this.#release || this.#stream) await this.#releasePartitions()
    }
    return Buffer.alloc(0)
  }

  /** Once the group assigned partitions after a rebalance: read them from their committed offsets. */
  #onAssigned(consumer: Consumer<string, string, string, string>): void {
    if (!this.#reopenOnJoin || consumer !== this.#consumer || this.#release || this.#stream) return
    if (this.#state !== 'running') return
    this.#reopenOnJoin = false
    this.#openStream(consumer).catch((error) => {
      if (this.#consumer === consumer) this.#onTransportError(toError(error))
    })
  }

  /**
   * Gives every partition up: stops taking messages (what is buffered goes back to the log
   * uncommitted, for the partition's next owner), lets the running handlers finish, commits what
   * they handled and closes the stream. Idempotent while it runs.
   */
  #releasePartitions(): Promise<void> {
    if (this.#release) return this.#release
    const stream = this.#stream
    const consumer = this.#consumer
    this.#stream = undefined
    stream?.pause()
    this.#dropBuffered()
    this.#handlersSignal.abort()
    const release = (async () => {
      await Promise.allSettled([...this.#running.values()])
      if (consumer) {
        const committed = await withinMs(this.#commitHandled(consumer), 5_000)
        if (!committed) {
          this.#transportOptions.logger?.warn(
            { groupId: this.groupId },
            'the handled offsets were not committed within 5 s; their messages may be handled again',
          )
        }
      }
      this.#handled.clear()
      if (stream)
        await withinMs(
          stream.close().catch(() => {}),
          5_000,
        )
    })().finally(() => {
      this.#release = undefined
    })
    this.#release = release
    void release.then(() => {
      // The group may have finished its join while the commit was still running (a join triggered
      // by the commit itself): then no further join event comes, so open the stream now.
      if (this.#reopenOnJoin && consumer && consumer === this.#consumer && consumer.isActive())
        this.#onAssigned(consumer)
    })
    return release
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
    if (this.#buffered >= this.#maxBuffered && !this.#paused) {
      this.#paused = true
      this.#stream?.pause()
    }
    if (!this.#running.has(id)) {
      const worker: Promise<void> = this.#drain(id, queue).finally(() => {
        if (this.#running.get(id) === worker) this.#running.delete(id)
      })
      this.#running.set(id, worker)
    }
  }

  async #drain(id: string, queue: Message<string, string, string, string>[]): Promise<void> {
    const batch = this.#options.batch
    for (;;) {
      if (this.#state !== 'running') return
      // What the partition has buffered, handed over at once: one message when it is idle.
      const taken = queue.splice(0, batch ? Math.max(1, batch.max) : 1)
      const last = taken.at(-1)
      if (!last) return
      this.#buffered -= taken.length
      const signal = this.#handlersSignal.signal
      let handledUpTo = -1
      try {
        if (batch) {
          const incoming = taken.map(toIncomingMessage)
          await batch.handle(incoming, {
            signal,
            handled: (message) => {
              handledUpTo = Math.max(handledUpTo, incoming.indexOf(message))
            },
          })
        } else {
          await this.#options.handler(toIncomingMessage(last), { signal })
        }
      } catch (error) {
        // Messages the batch said were handled stay handled; the rest stays uncommitted. A handler
        // that stopped because the partition is given up failed nothing: what it did not handle
        // goes to the partition's next owner.
        const handled = taken[handledUpTo]
        if (handled) this.#markHandled(id, handled)
        if (!signal.aborted) this.#fail(toError(error), id)
        return
      }
      this.#markHandled(id, last)
      if (this.#paused && this.#buffered < this.#maxBuffered / 2) {
        this.#paused = false
        this.#stream?.resume()
      }
    }
  }

  /**
   * The newest handled message of each partition is committed once the previous commit returned,
   * and at most once per `COMMIT_INTERVAL_MS`: a message after a quiet spell is committed at once,
   * a steady flow every interval (one commit for what every batch of it handled, where each batch
   * was a request to the broker). A crash hands back at most what was handled in one interval and
   * one broker round trip, which the consumers' inbox makes harmless. A partition given up is
   * committed before it goes, without waiting for the interval (`#releasePartitions`).
   */
  #handled = new Map<string, Message<string, string, string, string>>()
  #committing: Promise<void> | undefined
  /** `performance.now()` of the last commit: a monotonic clock, which a step of the wall clock does not move. */
  #lastCommitAt = 0
  /** Ends the wait for the next interval at once (the partitions are given up). */
  #hurry: (() => void) | undefined

  #markHandled(id: string, message: Message<string, string, string, string>): void {
    this.#handled.set(id, message)
    const consumer = this.#consumer
    if (this.#committing || !consumer) return
    const committing: Promise<void> = (async () => {
      while (this.#handled.size > 0 && this.#release === undefined) {
        await this.#untilCommitDue()
        // Given up meanwhile: `#commitHandled` commits what is left.
        if (this.#release !== undefined) return
        if (!(await this.#commitOnce(consumer))) return
      }
    })().finally(() => {
      if (this.#committing === committing) this.#committing = undefined
    })
    this.#committing = committing
  }

  #untilCommitDue(): Promise<void> {
    const wait = this.#lastCommitAt + COMMIT_INTERVAL_MS - performance.now()
    if (wait <= 0) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.#hurry = undefined
        resolve()
      }
      const timer = setTimeout(done, wait)
      this.#hurry = done
    })
  }

  /** Waits for the commit under way (without its interval), then commits what is left. */
  async #commitHandled(consumer: Consumer<string, string, string, string>): Promise<void> {
    this.#hurry?.()
    await this.#committing
    if (this.#handled.size > 0) await this.#commitOnce(consumer)
  }

  async #commitOnce(consumer: Consumer<string, string, string, string>): Promise<boolean> {
    const latest = [...this.#handled]
    this.#handled.clear()
    this.#lastCommitAt = performance.now()
    try {
      await consumer.commit({
        offsets: latest.map(([, m]) => ({
          topic: m.topic,
          partition: m.partition,
          offset: m.offset + 1n,
          leaderEpoch: m.leaderEpoch,
        })),
      })
      return true
    } catch (error) {
      // Kept for the next commit, unless a newer message of the partition was handled meanwhile.
      for (const [id, m] of latest) if (!this.#handled.has(id)) this.#handled.set(id, m)
      this.#transportOptions.logger?.warn(
        { err: error, groupId: this.groupId },
        'committing handled offsets failed; trying again with the next one',
      )
      return false
    }
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
      error instanceof MissingTopicsError
        ? `Kafka consumer ${this.groupId} waits for its topics: ${error.message}; looking again in ${delay} ms (attempt ${attempt})`
        : `Kafka consumer ${this.groupId} lost its connection (${rootCause(error)}); reconnecting in ${delay} ms (attempt ${attempt})`,
    )
    const consumer = this.#consumer
    void (async () => {
      await this.#releasePartitions()
      this.#consumer = undefined
      this.#reopenOnJoin = false
      await consumer?.close(true).catch(() => {})
      if (this.#state !== 'reconnecting') return
      this.#reconnectTimer = setTimeout(() => {
        this.#reconnectTimer = undefined
        if (this.#state === 'reconnecting') this.#startConnecting()
      }, delay)
    })()
  }

  /** Forgets the messages not handled yet; the workers stop after the message they are handling. */
  #dropBuffered(): void {
    for (const queue of this.#queues.values()) queue.length = 0
    this.#queues.clear()
    this.#buffered = 0
    this.#paused = false
  }

  async #shutdown(): Promise<void> {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer)
    // A consumer closed while it is still joining hands back a stream that fails as it starts:
    // let the join finish (it sees the state and closes what it opened) before closing anything.
    if (this.#connecting) await withinMs(this.#connecting, 10_000)
    await this.#releasePartitions()
    // Leaving the group: a broker that is gone or a group stuck mid-rebalance must not hold the
    // process, so give up after a bound.
    const consumer = this.#consumer
    const closed = await withinMs(consumer?.close(true).catch(() => {}) ?? Promise.resolve(), 10_000)
    if (!closed) {
      this.#transportOptions.logger?.warn(
        { groupId: this.groupId },
        'Kafka consumer did not close within 10 s; dropped',
      )
    }
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

/**
 * How often a subscription commits its handled offsets under a steady flow (see `#markHandled`).
 * Each commit is a request to the broker and a write on both sides; every consumer group commits
 * its own.
 */
const COMMIT_INTERVAL_MS = 100

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
