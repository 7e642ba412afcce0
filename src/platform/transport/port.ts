/**
 * The transport port: the only way services talk to each other, and the only way a module looks at
 * the log itself (`readTopic`, `describeLog`, `groupLag`). Two adapters implement it — Kafka
 * (production) and the embedded log (one process, PGlite or PostgreSQL) — and both must pass the
 * shared contract suite in `contract.ts`.
 *
 * Semantics every adapter guarantees:
 * - Messages with the same key land in the same partition and are handed to the handler in order.
 * - Per partition, the handler is called for one message at a time (or one batch, with `batch`); the
 *   next is not handed over until the previous call settled (this is the backpressure: nothing
 *   buffers without bound).
 *   Different partitions run side by side: a handler must not assume it is the only call in flight.
 * - A message's offset is committed only after its handler resolved (at-least-once).
 * - A handler that throws stops the subscription without committing that message: the error is
 *   reported through `onError`, and the message is redelivered to the next member of the group.
 *   Retries and dead-lettering are layered on top (`reliable-consumer.ts`), not done here.
 * - A handler must settle: one that never does blocks `close()` and rebalances, and closing a
 *   subscription from inside its own handler deadlocks.
 * - A rebalance hands back nothing handled. When a member gives a partition up (another member
 *   joins or leaves, or it closes), it stops taking the partition's messages, lets the running
 *   handler finish (its `signal` is aborted, so a handler that is only waiting can stop), commits
 *   what it handled, and only then does the partition go to its next owner, which starts right
 *   after the last handled message. No two members handle one partition at once, so per-key order
 *   holds across members too. Messages handled twice are left to crashes (a member killed, or cut
 *   off from the broker for longer than its session): at most what was handled since the last
 *   commit, which on Kafka goes out as soon as the previous one returned.
 * - On Kafka a member that takes longer than the group's rebalance timeout (the session timeout)
 *   to give its partitions up is dropped from the group, and its partitions are assigned without
 *   it; a handler should not run that long.
 * - The embedded adapter coordinates consumer groups within one transport instance (one process).
 *   Scaling a group across processes is what the Kafka adapter is for.
 */

export type Headers = Record<string, string>

export interface OutgoingMessage {
  topic: string
  key: string
  value: string
  headers?: Headers
}

/** Where a published message was written. Offsets are decimal strings: Kafka offsets are 64-bit. */
export interface PublishedPosition {
  topic: string
  partition: number
  offset: string
}

export interface IncomingMessage {
  topic: string
  partition: number
  offset: string
  key: string
  value: string
  headers: Headers
  timestamp: Date
}

export interface HandlerContext {
  /**
   * Aborted when this member gives the message's partition up (a rebalance, a reconnect, close).
   * A handler that is only waiting (a backoff, a dependency that is down) may stop and throw: the
   * message is then not committed and goes to the partition's next owner, and the subscription
   * carries on. A handler in the middle of its work should finish it.
   *
   * Each assignment of a partition to this member comes with a new signal, and only once the
   * partition's previous owner's handlers are done (unless the group expelled that owner while they
   * ran): what they wrote is there for the first handler that sees the new signal (the reliable
   * consumer relies on it to know its group's parked keys).
   */
  signal: AbortSignal
}

export type MessageHandler = (message: IncomingMessage, context: HandlerContext) => Promise<void>

export interface BatchContext extends HandlerContext {
  /**
   * Says that the batch's messages up to this one are handled: they are committed even when the
   * batch handler throws later (a batch that falls back to one message at a time says so as it goes).
   */
  handled(message: IncomingMessage): void
}

/**
 * Handles several messages of one partition at once, in order (what the subscription has fetched
 * and not handled yet, at most `max`). Resolving means every message of the batch is handled.
 */
export type BatchHandler = (messages: IncomingMessage[], context: BatchContext) => Promise<void>

export interface SubscribeOptions {
  groupId: string
  topics: string[]
  handler: MessageHandler
  /**
   * Takes a partition's backlog in batches instead of `handler`'s one message at a time. Only under
   * backlog: a message that arrives alone is handed over at once, as a batch of one, and the
   * partition waits for nothing. Everything else holds as for `handler` (order, at-least-once,
   * a rebalance hands back nothing handled).
   */
  batch?: { handle: BatchHandler; max: number }
  /** Called once when the subscription stops because a handler threw or the transport failed. */
  onError?: (error: Error) => void
}

/** Messages on a partition that the group has not committed yet. */
export interface PartitionLag {
  topic: string
  partition: number
  lag: number
}

/** Messages a consumer group has not committed yet on one topic, over all of its partitions. */
export interface GroupLag {
  group: string
  topic: string
  lag: number
}

export interface PublishOptions {
  /**
   * Aborted by a caller that gave up on the publish (the outbox relay at its publish timeout). A
   * transport drops what it has not sent yet; what is already on the wire may still land.
   */
  signal?: AbortSignal
  /**
   * The caller retries by itself (the outbox relay): one attempt, so the publish is bounded by one
   * connection and one request timeout rather than by the producer's retries.
   */
  singleAttempt?: boolean
}

export interface Subscription {
  readonly groupId: string
  /** Resolves once the member has joined its group and been assigned its partitions. */
  readonly ready: Promise<void>
  /** Stops reading, waits for the in-flight handler, commits what was handled, leaves the group. */
  close(): Promise<void>
  /**
   * Consumer lag of this member's partitions: the log's end minus the group's committed position.
   * Partitions whose lag is not known yet (on Kafka, before the group's first commit) are left out.
   */
  lag(): Promise<PartitionLag[]>
}

export interface ReadTopicOptions {
  /** How long the read may take: past it, the read stops and answers that it was not complete. */
  timeoutMs: number
}

/** Where a partition's log ends: the offset its next message will get. */
export interface LogPartition {
  partition: number
  endOffset: number
}

export interface LogTopic {
  name: string
  /** Every partition, in partition order. */
  partitions: LogPartition[]
}

/** A member of a consumer group, as the group's coordinator knows it. */
export interface LogGroupMember {
  id: string
  clientId: string
  host: string
  assignments: { topic: string; partitions: number[] }[]
}

export interface LogGroup {
  group: string
  /** The coordinator's state of the group (Kafka's `Stable`, `Empty`…); null where the log does not say. */
  state: string | null
  /** Null where the log does not say (the embedded log keeps its members in the process). */
  members: LogGroupMember[] | null
  /** The next offset the group reads, per partition it committed on. */
  committed: { topic: string; partition: number; offset: number }[]
}

/**
 * Topics and consumer groups as the log keeps them, for an operator's view. Offsets are numbers
 * here, not strings: they are counted and subtracted, and no log reaches 2^53 messages.
 */
export interface LogDescription {
  topics: LogTopic[]
  groups: LogGroup[]
}

export interface Transport {
  readonly kind: 'kafka' | 'embedded'
  /** Creates the topics that do not exist yet, with the configured partition count. Idempotent. */
  ensureTopics(topics: string[]): Promise<void>
  /** Publishes in order; resolves once every message is durably acknowledged. */
  publish(messages: OutgoingMessage[], options?: PublishOptions): Promise<PublishedPosition[]>
  /** Joins `groupId`; a group with no committed position starts from the earliest message. */
  subscribe(options: SubscribeOptions): Promise<Subscription>
  /**
   * How far each of `groups` is behind on every topic it has committed on (names as given, without
   * the deployment's prefix), whether or not a member runs: what an operator asks across services.
   * A partition of such a topic that the group never committed on counts from the log's start; a
   * group that never committed is left out.
   */
  groupLag(groups: readonly string[]): Promise<GroupLag[]>
  /**
   * Hands every message of `topic` to `visit`, from the start of its log and in offset order
   * within each partition (partitions may interleave), without joining a group that lasts: what an
   * audit of a topic needs, and what a subscription cannot do (it creates a missing topic, and never
   * says "you have read everything"). Resolves to `null` when the topic does not exist, and does not
   * create it; otherwise to whether every message the topic held when the read started was visited
   * before `timeoutMs` (messages published during the read may or may not be). Messages name the
   * topic as it was asked for.
   */
  readTopic(
    topic: string,
    visit: (message: IncomingMessage) => void,
    options: ReadTopicOptions,
  ): Promise<{ complete: boolean } | null>
  /**
   * The log's topics (their partitions' end offsets) and consumer groups (their committed offsets,
   * and their state and members where the log knows them), named as this transport names them:
   * only those starting with `prefix` when given. Internal topics (Kafka's `__…`) are left out.
   */
  describeLog(options?: { prefix?: string }): Promise<LogDescription>
  /** Resolves once the broker (or the log's database) answers; rejects when it cannot be reached. */
  ping(): Promise<void>
  close(): Promise<void>
}
