import { v7 as uuidv7 } from 'uuid'
import { HeaderNames } from '../../contracts/envelope.ts'
import {
  encodeOrderEvent,
  ORDER_EVENTS_TOPIC,
  type OrderEvent,
  type OrderEventData,
} from '../../contracts/order/events.ts'
import { AppError, notFound } from '../../platform/errors.ts'
import {
  appendToStream,
  type EventMetadata,
  readStream,
  type StoredEvent,
} from '../../platform/eventstore/event-store.ts'
import { markHandled } from '../../platform/inbox/inbox.ts'
import { enqueue, type OutboxSignal } from '../../platform/outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor } from '../../platform/sql/port.ts'
import { EVENT_ID_HEADER } from '../../platform/transport/instrumented.ts'
import type { OutgoingMessage } from '../../platform/transport/port.ts'
import { decide, evolve, type Order, type OrderCommand, type OrderState } from '../domain/order.ts'

/**
 * The order service's write side. One command = one transaction that appends the events to the
 * event store, writes the order's current state (seed 001's "orders table") and puts the events in
 * the outbox. Nothing is published here: the outbox relay does that once the transaction committed.
 */

export const STREAM_TYPE = 'order'

export const orderStoreSchema = `
CREATE TABLE IF NOT EXISTS orders (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL,
  version integer NOT NULL,
  state jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
`

export interface CommandMetadata {
  correlationId?: string
  causationId?: string
  traceparent?: string
  tracestate?: string
  /** The version the caller last saw (HTTP If-Match, a command's expectedVersion). */
  expectedVersion?: number
  /** Set by consumers: the message is applied once per consumer, whatever the redeliveries. */
  inbox?: { consumer: string; messageId: string }
}

export interface CommandResult {
  order: Order
  events: OrderEvent[]
  /** True when the inbox had seen the message already and nothing was done. */
  duplicate: boolean
}

export interface OrderStoreDeps {
  db: SqlDatabase
  signal: OutboxSignal
  clock?: () => Date
  newEventId?: () => string
}

export interface OrderStore {
  execute(command: OrderCommand, metadata?: CommandMetadata): Promise<CommandResult>
  /** Current state, from the orders table (read-your-writes). */
  get(orderId: string): Promise<Order | null>
  history(orderId: string): Promise<StoredEvent[]>
  /** Runs `work` in one transaction with the command (e.g. to store an idempotent HTTP response). */
  executeWith<T>(
    command: OrderCommand,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult) => Promise<T>,
  ): Promise<{ result: CommandResult; extra: T }>
}

export function toOrderEvent(stored: StoredEvent): OrderEvent {
  return {
    ...(stored.data as unknown as OrderEventData),
    eventType: stored.eventType,
    eventId: stored.eventId,
    aggregateId: stored.streamId,
    occurredOn: stored.occurredOn,
    version: stored.version,
    schemaVersion: stored.schemaVersion,
    ...(stored.metadata.correlationId ? { correlationId: stored.metadata.correlationId } : {}),
    ...(stored.metadata.causationId ? { causationId: stored.metadata.causationId } : {}),
  } as OrderEvent
}

/** The message an event becomes on `order-events`: keyed by order id, envelope at the top level. */
export function toOrderEventMessage(event: OrderEvent, metadata: EventMetadata = {}): OutgoingMessage {
  return {
    topic: ORDER_EVENTS_TOPIC,
    key: event.aggregateId,
    value: JSON.stringify(encodeOrderEvent(event)),
    headers: {
      [EVENT_ID_HEADER]: event.eventId,
      [HeaderNames.eventType]: event.eventType,
      [HeaderNames.schemaVersion]: String(event.schemaVersion),
      [HeaderNames.contentType]: 'application/json',
      ...(metadata.traceparent ? { [HeaderNames.traceparent]: metadata.traceparent } : {}),
      ...(metadata.tracestate ? { [HeaderNames.tracestate]: metadata.tracestate } : {}),
    },
  }
}

async function loadState(tx: SqlExecutor, orderId: string, forUpdate: boolean): Promise<OrderState> {
  const { rows } = await tx.query<{ state: Order }>(
    `SELECT state FROM orders WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`,
    [orderId],
  )
  return rows[0]?.state ?? null
}

export function createOrderStore(deps: OrderStoreDeps): OrderStore {
  const clock = deps.clock ?? (() => new Date())
  const newEventId = deps.newEventId ?? (() => uuidv7())

  const run = async <T>(
    tx: SqlExecutor,
    command: OrderCommand,
    metadata: CommandMetadata,
    after?: (tx: SqlExecutor, result: CommandResult) => Promise<T>,
  ): Promise<{ result: CommandResult; extra: T | undefined }> => {
    if (metadata.inbox && !(await markHandled(tx, metadata.inbox.consumer, metadata.inbox.messageId))) {
      const order = await loadState(tx, command.orderId, false)
      if (!order) throw notFound('order', command.orderId, `order ${command.orderId} does not exist`)
      const result = { order, events: [], duplicate: true }
      return { result, extra: after ? await after(tx, result) : undefined }
    }
    const state = await loadState(tx, command.orderId, false)
    const currentVersion = state?.version ?? 0
    if (!state && command.commandType !== 'CreateOrder') {
      throw notFound('order', command.orderId, `order ${command.orderId} does not exist`)
    }
    if (metadata.expectedVersion !== undefined && metadata.expectedVersion !== currentVersion) {
      throw new AppError(
        'VERSION_CONFLICT',
        `order ${command.orderId} is at version ${currentVersion}, not the expected ${metadata.expectedVersion}`,
        { details: { currentVersion, expectedVersion: metadata.expectedVersion } },
      )
    }
    const now = clock().toISOString()
    const decision = decide(command, state, { now })
    if (!decision.ok) {
      throw new AppError(decision.error.code, decision.error.message, {
        ...(decision.error.fields ? { fields: decision.error.fields } : {}),
        details: { orderId: command.orderId },
      })
    }
    if (decision.events.length === 0) {
      if (!state) throw notFound('order', command.orderId, `order ${command.orderId} does not exist`)
      const result = { order: state, events: [], duplicate: false }
      return { result, extra: after ? await after(tx, result) : undefined }
    }
    const eventMetadata: EventMetadata = {
      ...(metadata.correlationId ? { correlationId: metadata.correlationId } : {}),
      ...(metadata.causationId ? { causationId: metadata.causationId } : {}),
      ...(metadata.traceparent ? { traceparent: metadata.traceparent } : {}),
      ...(metadata.tracestate ? { tracestate: metadata.tracestate } : {}),
    }
    const stored = await appendToStream(
      tx,
      { id: command.orderId, type: STREAM_TYPE, expectedVersion: currentVersion },
      decision.events.map((data) => {
        const { eventType, ...fields } = data
        return {
          eventId: newEventId(),
          eventType,
          schemaVersion: 1,
          occurredOn: now,
          data: fields as Record<string, unknown>,
          metadata: eventMetadata,
        }
      }),
    )
    const events = stored.map(toOrderEvent)
    let order = state
    for (const event of events) order = evolve(order, event)
    if (!order) throw new Error(`order ${command.orderId} has no state after ${events.length} events`)
    await tx.query(
      `INSERT INTO orders (id, customer_id, status, version, state, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version,
         state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
      [
        order.id,
        order.customerId,
        order.status,
        order.version,
        JSON.stringify(order),
        order.createdAt,
        order.updatedAt,
      ],
    )
    await enqueue(
      tx,
      events.map((e) => toOrderEventMessage(e, eventMetadata)),
    )
    const result = { order, events, duplicate: false }
    return { result, extra: after ? await after(tx, result) : undefined }
  }

  const executeWith = async <T>(
    command: OrderCommand,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult) => Promise<T>,
  ) => {
    const outcome = await deps.db.transaction((tx) => run(tx, command, metadata, after))
    if (outcome.result.events.length > 0) deps.signal.notify()
    return outcome as { result: CommandResult; extra: T }
  }

  return {
    async execute(command, metadata = {}) {
      const { result } = await executeWith(command, metadata, async () => undefined)
      return result
    },
    executeWith,
    get: (orderId) => loadState(deps.db, orderId, false),
    history: (orderId) => readStream(deps.db, orderId),
  }
}
