import type { SqlExecutor } from '../platform/sql/port.ts'
import { count, iso, tablesPresent } from './tables.ts'

/**
 * One order's journey, joined from everything that knows about it: the event store (every stream
 * of the order: `order-<id>` and the services' `payment-order-<id>`, …), the outbox (each message
 * it became, published or not, and when), the embedded log (partition and offset), the inbox (which
 * consumer group handled which message, and when), the saga (state, steps, history, deadlines),
 * the pending timers, the retries, dead letters and parked messages of its key, and the HTTP requests that
 * started it (the correlation id and trace context its events' metadata keep).
 */

export type TimelineKind = 'event' | 'published' | 'handled' | 'saga' | 'retry' | 'dead-letter' | 'parked' | 'resolved'

export interface TimelineEntry {
  at: string
  kind: TimelineKind
  title: string
  topic?: string
  partition?: number
  offset?: string
  eventId?: string
  group?: string
  detail?: string
}

export interface SagaHistoryEntry {
  at: string
  type: string
  id?: string
  direction?: string
  topic?: string
  step?: string
  detail?: string
}

export interface JourneyMessage {
  outboxId: string
  eventId: string | null
  type: string | null
  topic: string
  createdAt: string | null
  /** When the relay marked it published (after the broker acknowledged it). */
  publishedAt: string | null
  /** When it reached its topic: the embedded log's append time, else no later than its first handling. */
  onTopicAt: string | null
  publishAttempts: number
  lastError: string | null
  traceparent: string | null
  partition: number | null
  offset: string | null
  handledBy: { group: string; at: string | null }[]
}

export interface Journey {
  orderId: string
  found: boolean
  order: {
    status: string
    customerId: string
    version: number
    createdAt: string | null
    updatedAt: string | null
    totalAmount: number | null
    currency: string | null
    cancellationReason: string | null
  } | null
  traceIds: string[]
  /** The requests that started what happened to it: correlation id, trace id, what the request wrote. */
  requests: { correlationId: string | null; traceId: string | null; at: string; events: string[] }[]
  events: {
    position: string
    streamId: string
    streamType: string
    version: number
    eventId: string
    type: string
    occurredOn: string | null
    recordedAt: string | null
    metadata: Record<string, unknown>
    data: unknown
  }[]
  messages: JourneyMessage[]
  saga: {
    id: string
    status: string
    step: string | null
    attempt: number
    outcome: string | null
    parkedReason: string | null
    nextDeadline: string | null
    startedAt: string | null
    updatedAt: string | null
    history: SagaHistoryEntry[]
    deadlines: unknown[]
    attempts: Record<string, number>
  } | null
  timers: {
    id: string
    kind: string
    dueAt: string | null
    armed: boolean
    attempts: number
    lastError: string | null
  }[]
  /** Failed attempts a consumer retried (with the error), oldest first. */
  retries: {
    group: string
    topic: string
    partition: number
    offset: string
    eventId: string | null
    attempt: number
    error: string
    code: string | null
    retryInMs: number
    at: string | null
  }[]
  deadLetters: {
    id: string
    topic: string
    group: string
    partition: number
    offset: string
    eventId: string | null
    reason: string
    attempts: number
    failedAt: string | null
    state: string
    errorMessage: string | null
    resolvedAt: string | null
    resolvedBy: string | null
  }[]
  parked: {
    group: string
    topic: string
    deadLetterId: string
    parkedAt: string | null
    messages: {
      seq: string
      topic: string
      partition: number
      offset: string
      eventId: string | null
      parkedAt: string | null
    }[]
  }[]
  timeline: TimelineEntry[]
}

const traceIdOf = (traceparent: unknown) =>
  typeof traceparent === 'string' ? (traceparent.split('-')[1] ?? null) : null

const JOURNEY_TABLES = [
  'orders',
  'sagas',
  'inbox',
  'log_messages',
  'scheduled_timers',
  'dead_letters',
  'parked_keys',
  'parked_messages',
  'consumer_retries',
]

/** The journey of `orderId`; `groups` are the consumer groups whose inbox rows are looked up. */
export async function readJourney(db: SqlExecutor, orderId: string, groups: readonly string[]): Promise<Journey> {
  const present = await tablesPresent(db, JOURNEY_TABLES)
  const orderRow = present.has('orders')
    ? (
        await db.query<{
          status: string
          customer_id: string
          version: number
          created_at: Date | string
          updated_at: Date | string
          state: Record<string, unknown>
        }>('SELECT status, customer_id, version, created_at, updated_at, state FROM orders WHERE id = $1', [orderId])
      ).rows[0]
    : undefined
  // Every stream about the order: its own, and the services' streams named after it.
  const events = (
    await db.query<{
      global_position: string
      stream_id: string
      stream_type: string
      version: number
      event_id: string
      event_type: string
      occurred_on: Date | string
      recorded_at: Date | string
      metadata: Record<string, unknown>
      data: unknown
    }>(
      `SELECT global_position::text, stream_id, stream_type, version, event_id::text, event_type, occurred_on,
              recorded_at, metadata, data
         FROM es_events
        WHERE stream_id = $1 OR right(stream_id, length($1) + 1) = '-' || $1
        ORDER BY global_position LIMIT 1000`,
      [orderId],
    )
  ).rows
  const outbox = (
    await db.query<{
      id: string
      topic: string
      headers: Record<string, string>
      created_at: Date | string
      published_at: Date | string | null
      publish_attempts: number
      last_error: string | null
      published_partition: number | null
      published_offset: string | null
    }>(
      `SELECT id::text, topic, headers, created_at, published_at, publish_attempts, last_error, published_partition,
              published_offset
         FROM outbox WHERE message_key = $1 ORDER BY id LIMIT 1000`,
      [orderId],
    )
  ).rows
  const messageIds = [
    ...new Set([...events.map((e) => e.event_id), ...outbox.map((o) => o.headers['event-id']).filter(Boolean)]),
  ] as string[]
  const positions = present.has('log_messages')
    ? (
        await db.query<{
          topic: string
          partition: number
          offset: string
          event_id: string | null
          created_at: Date | string
        }>(
          `SELECT topic, partition, "offset"::text AS offset, headers->>'event-id' AS event_id, created_at
             FROM log_messages WHERE key = $1 ORDER BY created_at LIMIT 2000`,
          [orderId],
        )
      ).rows
    : []
  const handled =
    present.has('inbox') && messageIds.length > 0 && groups.length > 0
      ? (
          await db.query<{ consumer: string; message_id: string; handled_at: Date | string }>(
            `SELECT consumer, message_id, handled_at FROM inbox
              WHERE consumer = ANY($1::text[]) AND message_id = ANY($2::text[]) ORDER BY handled_at`,
            [groups, messageIds],
          )
        ).rows
      : []
  const sagaRow = present.has('sagas')
    ? (
        await db.query<{
          id: string
          status: string
          step: string | null
          attempt: number
          outcome: string | null
          parked_reason: string | null
          next_deadline: Date | string | null
          started_at: Date | string
          updated_at: Date | string
          state: Record<string, unknown>
        }>('SELECT * FROM sagas WHERE order_id = $1', [orderId])
      ).rows[0]
    : undefined
  const timers = present.has('scheduled_timers')
    ? (
        await db.query<{
          id: string
          kind: string
          due_at: Date | string | null
          attempts: number
          last_error: string | null
        }>(
          `SELECT id, kind, due_at, attempts, last_error FROM scheduled_timers
            WHERE strpos(id, $1) > 0 OR strpos(payload::text, $1) > 0 ORDER BY due_at NULLS LAST LIMIT 100`,
          [orderId],
        )
      ).rows
    : []
  const deadLetters = present.has('dead_letters')
    ? (
        await db.query<{
          id: string
          topic: string
          group_id: string
          partition: number
          message_offset: string
          event_id: string | null
          reason: string
          attempts: number
          failed_at: Date | string
          state: string
          error: { message?: string } | null
          resolved_at: Date | string | null
          resolved_by: string | null
        }>(
          `SELECT id::text, topic, group_id, partition, message_offset, event_id, reason, attempts, failed_at, state,
                  error, resolved_at, resolved_by
             FROM dead_letters WHERE message_key = $1 ORDER BY id LIMIT 200`,
          [orderId],
        )
      ).rows
    : []
  const retries = present.has('consumer_retries')
    ? (
        await db.query<{
          group_id: string
          topic: string
          partition: number
          message_offset: string
          event_id: string | null
          attempt: number
          error: { message?: string; code?: string }
          retry_in_ms: number
          failed_at: Date | string
        }>(
          `SELECT group_id, topic, partition, message_offset, event_id, attempt, error, retry_in_ms, failed_at
             FROM consumer_retries WHERE message_key = $1 ORDER BY id LIMIT 500`,
          [orderId],
        )
      ).rows
    : []
  const parkedKeys = present.has('parked_keys')
    ? (
        await db.query<{ group_id: string; topic: string; dead_letter_id: string; parked_at: Date | string }>(
          'SELECT group_id, topic, dead_letter_id::text, parked_at FROM parked_keys WHERE message_key = $1',
          [orderId],
        )
      ).rows
    : []
  const parkedMessages =
    present.has('parked_messages') && parkedKeys.length > 0
      ? (
          await db.query<{
            seq: string
            group_id: string
            topic: string
            partition: number
            message_offset: string
            event_id: string | null
            parked_at: Date | string
          }>(
            `SELECT seq::text, group_id, topic, partition, message_offset, event_id, parked_at FROM parked_messages
              WHERE group_id = ANY($1::text[]) AND message_key = $2 ORDER BY seq LIMIT 1000`,
            [parkedKeys.map((k) => k.group_id), orderId],
          )
        ).rows
      : []

  const positionOf = new Map(positions.filter((p) => p.event_id).map((p) => [`${p.topic}/${p.event_id}`, p]))
  const handledOf = new Map<string, { group: string; at: string | null }[]>()
  for (const row of handled) {
    const list = handledOf.get(row.message_id) ?? []
    list.push({ group: row.consumer, at: iso(row.handled_at) })
    handledOf.set(row.message_id, list)
  }
  const messages: JourneyMessage[] = outbox.map((row) => {
    const eventId = row.headers['event-id'] ?? null
    // A topic prefix (KAFKA_TOPIC_PREFIX) names the log's topic; the outbox keeps the service's name.
    const position =
      eventId === null
        ? undefined
        : (positionOf.get(`${row.topic}/${eventId}`) ?? positions.find((p) => p.event_id === eventId))
    const handledBy = eventId === null ? [] : (handledOf.get(eventId) ?? [])
    const publishedAt = iso(row.published_at)
    // The relay marks a row once the broker acknowledged it, often after a consumer handled it.
    const firstHandled = handledBy
      .map((h) => h.at ?? '')
      .filter(Boolean)
      .sort()[0]
    const onTopicAt = position
      ? iso(position.created_at)
      : publishedAt && firstHandled && firstHandled < publishedAt
        ? firstHandled
        : publishedAt
    return {
      outboxId: row.id,
      eventId,
      type: row.headers['event-type'] ?? null,
      topic: row.topic,
      createdAt: iso(row.created_at),
      publishedAt,
      onTopicAt,
      publishAttempts: row.publish_attempts,
      lastError: row.last_error,
      traceparent: row.headers.traceparent ?? null,
      // The embedded log's row, else where the relay was told it landed (Kafka's acknowledgement).
      partition: position?.partition ?? row.published_partition ?? null,
      offset: position?.offset ?? row.published_offset ?? null,
      handledBy,
    }
  })

  // A request's id is the correlation id of everything that follows from it: the first event of
  // each correlation id that no message caused is the one the request itself wrote (an operator's
  // request later on starts a correlation of its own).
  const requests = new Map<string, Journey['requests'][number]>()
  for (const event of events) {
    const correlationId = typeof event.metadata.correlationId === 'string' ? event.metadata.correlationId : null
    const traceId = traceIdOf(event.metadata.traceparent)
    const key = `${correlationId}/${traceId}`
    const entry = requests.get(key)
    if (entry) {
      if (!event.metadata.causationId && entry.events.length === 0) entry.events.push(event.event_type)
      continue
    }
    requests.set(key, {
      correlationId,
      traceId,
      at: iso(event.recorded_at) ?? '',
      events: event.metadata.causationId ? [] : [event.event_type],
    })
  }
  const traceIds = [
    ...new Set(
      [
        ...events.map((e) => traceIdOf(e.metadata.traceparent)),
        ...messages.map((m) => traceIdOf(m.traceparent)),
      ].filter((t): t is string => t !== null),
    ),
  ]

  const sagaState = (sagaRow?.state ?? {}) as {
    history?: SagaHistoryEntry[]
    deadlines?: unknown[]
    attempts?: Record<string, number>
  }
  const saga: Journey['saga'] = sagaRow
    ? {
        id: sagaRow.id,
        status: sagaRow.status,
        step: sagaRow.step,
        attempt: sagaRow.attempt,
        outcome: sagaRow.outcome,
        parkedReason: sagaRow.parked_reason,
        nextDeadline: iso(sagaRow.next_deadline),
        startedAt: iso(sagaRow.started_at),
        updatedAt: iso(sagaRow.updated_at),
        history: Array.isArray(sagaState.history) ? sagaState.history : [],
        deadlines: Array.isArray(sagaState.deadlines) ? sagaState.deadlines : [],
        attempts: sagaState.attempts ?? {},
      }
    : null

  const timeline: TimelineEntry[] = []
  for (const event of events) {
    timeline.push({
      at: iso(event.recorded_at) ?? '',
      kind: 'event',
      title: event.event_type,
      eventId: event.event_id,
      detail: `${event.stream_id} v${event.version}`,
    })
  }
  for (const message of messages) {
    if (!message.onTopicAt) continue
    timeline.push({
      at: message.onTopicAt,
      kind: 'published',
      title: message.type ?? 'message',
      topic: message.topic,
      ...(message.partition !== null ? { partition: message.partition } : {}),
      ...(message.offset !== null ? { offset: message.offset } : {}),
      ...(message.eventId ? { eventId: message.eventId } : {}),
      ...(message.publishAttempts > 1 ? { detail: `after ${message.publishAttempts} attempts` } : {}),
    })
    for (const handler of message.handledBy) {
      timeline.push({
        at: handler.at ?? message.onTopicAt,
        kind: 'handled',
        title: message.type ?? 'message',
        topic: message.topic,
        group: handler.group,
        ...(message.eventId ? { eventId: message.eventId } : {}),
      })
    }
  }
  for (const entry of saga?.history ?? []) {
    // Messages in and commands out are on the timeline already, as handled and published.
    if (entry.direction === 'in' || (entry.direction === 'out' && entry.topic)) continue
    timeline.push({
      at: entry.at,
      kind: 'saga',
      title: entry.type === 'Schedule' ? `deadline for ${entry.step ?? 'step'}` : entry.type,
      ...(entry.detail ? { detail: entry.detail } : {}),
    })
  }
  for (const retry of retries) {
    timeline.push({
      at: iso(retry.failed_at) ?? '',
      kind: 'retry',
      title: `attempt ${retry.attempt} failed, retried`,
      topic: retry.topic,
      group: retry.group_id,
      partition: retry.partition,
      offset: retry.message_offset,
      ...(retry.event_id ? { eventId: retry.event_id } : {}),
      detail: `${retry.error.code ? `${retry.error.code}: ` : ''}${retry.error.message ?? ''} (next in ${retry.retry_in_ms} ms)`,
    })
  }
  for (const dead of deadLetters) {
    timeline.push({
      at: iso(dead.failed_at) ?? '',
      kind: 'dead-letter',
      title: `dead letter: ${dead.reason}`,
      topic: dead.topic,
      group: dead.group_id,
      partition: dead.partition,
      offset: dead.message_offset,
      ...(dead.event_id ? { eventId: dead.event_id } : {}),
      detail: `${dead.error?.message ?? ''} (after ${dead.attempts} attempts)`,
    })
    if (dead.resolved_at) {
      timeline.push({
        at: iso(dead.resolved_at) ?? '',
        kind: 'resolved',
        title: `dead letter ${dead.state}`,
        group: dead.group_id,
        ...(dead.resolved_by ? { detail: `by ${dead.resolved_by}` } : {}),
      })
    }
  }
  for (const parked of parkedMessages) {
    timeline.push({
      at: iso(parked.parked_at) ?? '',
      kind: 'parked',
      title: 'parked behind a dead letter',
      topic: parked.topic,
      group: parked.group_id,
      partition: parked.partition,
      offset: parked.message_offset,
      ...(parked.event_id ? { eventId: parked.event_id } : {}),
    })
  }
  const order: Record<TimelineKind, number> = {
    event: 0,
    published: 1,
    handled: 2,
    saga: 3,
    retry: 4,
    'dead-letter': 5,
    parked: 6,
    resolved: 7,
  }
  timeline.sort((a, b) => a.at.localeCompare(b.at) || order[a.kind] - order[b.kind])

  const state = orderRow?.state ?? {}
  return {
    orderId,
    found: orderRow !== undefined || events.length > 0,
    order: orderRow
      ? {
          status: orderRow.status,
          customerId: orderRow.customer_id,
          version: orderRow.version,
          createdAt: iso(orderRow.created_at),
          updatedAt: iso(orderRow.updated_at),
          totalAmount: typeof state.totalAmount === 'number' ? state.totalAmount / 100 : null,
          currency: typeof state.currency === 'string' ? state.currency : null,
          cancellationReason: typeof state.cancellationReason === 'string' ? state.cancellationReason : null,
        }
      : null,
    traceIds,
    requests: [...requests.values()],
    events: events.map((e) => ({
      position: e.global_position,
      streamId: e.stream_id,
      streamType: e.stream_type,
      version: e.version,
      eventId: e.event_id,
      type: e.event_type,
      occurredOn: iso(e.occurred_on),
      recordedAt: iso(e.recorded_at),
      metadata: e.metadata,
      data: e.data,
    })),
    messages,
    saga,
    timers: timers.map((t) => ({
      id: t.id,
      kind: t.kind,
      dueAt: iso(t.due_at),
      armed: t.due_at !== null,
      attempts: count(t.attempts),
      lastError: t.last_error,
    })),
    retries: retries.map((r) => ({
      group: r.group_id,
      topic: r.topic,
      partition: r.partition,
      offset: r.message_offset,
      eventId: r.event_id,
      attempt: r.attempt,
      error: r.error.message ?? '',
      code: r.error.code ?? null,
      retryInMs: r.retry_in_ms,
      at: iso(r.failed_at),
    })),
    deadLetters: deadLetters.map((d) => ({
      id: d.id,
      topic: d.topic,
      group: d.group_id,
      partition: d.partition,
      offset: d.message_offset,
      eventId: d.event_id,
      reason: d.reason,
      attempts: d.attempts,
      failedAt: iso(d.failed_at),
      state: d.state,
      errorMessage: d.error?.message ?? null,
      resolvedAt: iso(d.resolved_at),
      resolvedBy: d.resolved_by,
    })),
    parked: parkedKeys.map((k) => ({
      group: k.group_id,
      topic: k.topic,
      deadLetterId: k.dead_letter_id,
      parkedAt: iso(k.parked_at),
      messages: parkedMessages
        .filter((m) => m.group_id === k.group_id)
        .map((m) => ({
          seq: m.seq,
          topic: m.topic,
          partition: m.partition,
          offset: m.message_offset,
          eventId: m.event_id,
          parkedAt: iso(m.parked_at),
        })),
    })),
    timeline,
  }
}
