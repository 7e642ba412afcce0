import {
  encodeOrderEvent,
  ORDER_EVENTS_TOPIC,
  type OrderEvent,
  type OrderEventData,
  orderEvents,
} from '../../contracts/order/events.ts'
import { PERSONAL_FIELDS } from '../../contracts/personal.ts'
import { notFound } from '../../platform/errors.ts'
import {
  type CommandMetadata,
  type DomainEvent,
  type CommandResult as HandlerResult,
  toDomainEvent,
} from '../../platform/es/command-handler.ts'
import { eventMessage } from '../../platform/es/messages.ts'
import { stateTable } from '../../platform/es/state-table.ts'
import { upcastStored } from '../../platform/es/upcast-stored.ts'
import { type EventMetadata, readStream, type StoredEvent } from '../../platform/eventstore/event-store.ts'
import type { CommittedWrites } from '../../platform/outbox/outbox.ts'
import type { PersonalData } from '../../platform/personal-data/personal-data.ts'
import { type Aggregate, type AggregateDefinition, createAggregate } from '../../platform/service.ts'
import type { SqlDatabase, SqlExecutor } from '../../platform/sql/port.ts'
import type { OutgoingMessage } from '../../platform/transport/port.ts'
import { type Order, type OrderCommand, type OrderState, orderDecider } from '../domain/order.ts'

/**
 * The order service's write side, on the platform's command handler: one command = one transaction
 * that appends the events, writes the order's current state (seed 001's "orders table") and puts
 * the events in the outbox for `order-events`, keyed by order id.
 */

export const STREAM_TYPE = 'order'

export type { CommandMetadata }

export interface CommandResult {
  order: Order
  events: DomainEvent<OrderEventData>[]
  /** True when the inbox had seen the message already and nothing was done. */
  duplicate: boolean
}

export interface OrderStoreDeps {
  db: SqlDatabase
  /** Seals an order's personal fields (tools that only read may leave it out). */
  personalData?: PersonalData
  /** Wakes the outbox relay and the projections after a commit. */
  onCommitted: (written?: CommittedWrites) => void
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

/** A stored order event as the newest version of its type (an older one goes through its upcasters). */
export const toOrderEvent = (stored: StoredEvent): OrderEvent =>
  upcastStored(orderEvents, toDomainEvent(stored) as OrderEvent)

/** The message an event becomes on `order-events`: keyed by order id, envelope at the top level. */
export function toOrderEventMessage(event: OrderEvent, metadata: EventMetadata = {}): OutgoingMessage {
  return eventMessage({
    topic: ORDER_EVENTS_TOPIC,
    key: event.aggregateId,
    body: encodeOrderEvent(event),
    event,
    metadata,
  })
}

/** The `orders` table: the current state, with customer and status as columns for queries. */
const ordersTable = stateTable<OrderState>({
  table: 'orders',
  initialState: () => null,
  columns: {
    customer_id: { type: 'text', of: (order) => order.customerId },
    status: { type: 'text', of: (order) => order.status },
    created_at: { type: 'timestamptz', of: (order) => order.createdAt, onUpdate: 'keep' },
    updated_at: { type: 'timestamptz', of: (order) => order.updatedAt },
  },
})

/** An order: stream `<orderId>`, row in `orders`, events on `order-events` keyed by the order id. */
export const orderAggregate: AggregateDefinition<OrderCommand, OrderEventData, OrderState> = {
  streamType: STREAM_TYPE,
  streamOf: (command) => command.orderId,
  decider: orderDecider,
  state: ordersTable,
  publishes: orderEvents,
  // Sealed with the customer's data key before the event is stored, so the state, the read model,
  // the outbox and order-events hold them encrypted only.
  personal: {
    fields: { OrderCreated: PERSONAL_FIELDS },
    subjectOf: (data) => String(data.customerId),
  },
}

export function createOrderStore(deps: OrderStoreDeps): OrderStore {
  return orderStoreOver(
    createAggregate(orderAggregate, {
      db: deps.db,
      committed: deps.onCommitted,
      clock: deps.clock ?? (() => new Date()),
      ...(deps.newEventId ? { newEventId: deps.newEventId } : {}),
      ...(deps.personalData ? { personalData: deps.personalData } : {}),
    }),
    deps.db,
  )
}

/** The order store the HTTP API and the tools use, over the aggregate the platform runs. */
export function orderStoreOver(
  aggregate: Aggregate<OrderCommand, OrderEventData, OrderState>,
  db: SqlDatabase,
): OrderStore {
  const toResult = (orderId: string, result: HandlerResult<OrderEventData, OrderState>): CommandResult => {
    // A redelivered command for an order that does not exist (any more) has nothing to show.
    if (!result.state) throw notFound('order', orderId, `order ${orderId} does not exist`)
    return { order: result.state, events: result.events, duplicate: result.duplicate }
  }

  const executeWith = async <T>(
    command: OrderCommand,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult) => Promise<T>,
  ) => {
    const { result, extra } = await aggregate.executeWith(command, metadata, (tx, raw) =>
      after(tx, toResult(command.orderId, raw)),
    )
    return { result: toResult(command.orderId, result), extra }
  }

  return {
    async execute(command, metadata = {}) {
      return (await executeWith(command, metadata, async () => undefined)).result
    },
    executeWith,
    get: (orderId) => aggregate.load(orderId),
    // Stream ids are unique per stream type only in practice: another service's stream with this id
    // (a cart's, say) is not this order's history.
    history: async (orderId) => (await readStream(db, orderId)).filter((e) => e.streamType === STREAM_TYPE),
  }
}
