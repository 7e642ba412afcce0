import { type DeliveryEventData, deliveryEvents, deliveryStreamId } from '../../contracts/delivery/events.ts'
import type { CommandMetadata, CommandResult, StateStore } from '../../platform/es/command-handler.ts'
import { scheduleTimer } from '../../platform/es/scheduler.ts'
import { type Aggregate, type AggregateDefinition, createAggregate } from '../../platform/service.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import {
  DELIVERY_STREAM_TYPE,
  type Delivery,
  type DeliveryCommand,
  type DeliveryState,
  deliveryDecider,
} from '../domain/delivery.ts'

/**
 * The delivery service's write side: one command = one transaction (inbox, events, the
 * `deliveries` row, the outbox for `delivery-events` keyed by the order id) and, when a delivery is
 * scheduled, its durable timer in the same transaction: a delivery is never scheduled without the
 * timer that will deliver it.
 */

/** The timer kind of due deliveries (platform/es/scheduler.ts). */
export const DELIVERY_DUE_TIMER = 'delivery-due'

const deliveries: StateStore<DeliveryState> = {
  async load(tx, streamId) {
    const { rows } = await tx.query<{ state: Delivery }>('SELECT state FROM deliveries WHERE id = $1', [streamId])
    const delivery = rows[0]?.state ?? null
    return { state: delivery, version: delivery?.version ?? 0 }
  },
  async save(tx, streamId, delivery, version) {
    if (!delivery) throw new Error('a delivery event left no delivery state')
    await tx.query(
      `INSERT INTO deliveries (id, order_id, status, due_at, delivered_at, version, state, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now())
       ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, due_at = EXCLUDED.due_at,
         delivered_at = EXCLUDED.delivered_at, version = EXCLUDED.version, state = EXCLUDED.state, updated_at = now()`,
      [
        streamId,
        delivery.orderId,
        delivery.status,
        delivery.dueAt,
        delivery.deliveredAt,
        version,
        JSON.stringify(delivery),
      ],
    )
  },
}

/** An order's delivery: stream `delivery-<orderId>`, row in `deliveries`, events on `delivery-events`. */
export const deliveryAggregate: AggregateDefinition<DeliveryCommand, DeliveryEventData, DeliveryState> = {
  streamType: DELIVERY_STREAM_TYPE,
  streamOf: (command) => deliveryStreamId(command.orderId),
  decider: deliveryDecider,
  state: deliveries,
  publishes: deliveryEvents,
}

export type DeliveryResult = CommandResult<DeliveryEventData, DeliveryState>

/**
 * Carries a delivery command out, and a ScheduleDelivery's timer in its transaction; `onScheduled`
 * hears the delay once that committed (inside a consumer's batch: once the batch did).
 */
export async function executeDelivery(
  aggregate: Aggregate<DeliveryCommand, DeliveryEventData, DeliveryState>,
  command: DeliveryCommand,
  metadata: CommandMetadata,
  onScheduled: (delayMs: number) => void,
): Promise<DeliveryResult> {
  if (command.commandType !== 'ScheduleDelivery') return aggregate.execute(command, metadata)
  const { result, extra: delayMs } = await aggregate.executeWith(command, metadata, async (tx, result) => {
    const scheduled = result.events.find((e) => e.eventType === 'DeliveryScheduled')
    if (!scheduled) return undefined
    // The event's dueAt is the app's reckoning (what the delivery shows); the timer counts the
    // delay on the database's clock, so a jump of the app's clock moves no delivery.
    await scheduleTimer(tx, {
      id: `${DELIVERY_DUE_TIMER}:${scheduled.orderId}`,
      kind: DELIVERY_DUE_TIMER,
      delayMs: command.delayMs,
      // The journey's correlation (and trace) carry over the wait: OrderDelivered belongs to the
      // request that placed the order, not to a timer.
      payload: {
        orderId: scheduled.orderId,
        ...(metadata.correlationId ? { correlationId: metadata.correlationId } : {}),
        ...(metadata.traceparent ? { traceparent: metadata.traceparent } : {}),
      },
    })
    return command.delayMs
  })
  if (delayMs !== undefined) onScheduled(delayMs)
  return result
}

export interface DeliveryStore {
  execute(command: DeliveryCommand, metadata?: CommandMetadata): Promise<DeliveryResult>
  get(orderId: string): Promise<DeliveryState>
}

/** The delivery aggregate on its own, with its timers: what the module runs, for tests and tools. */
export function createDeliveryStore(deps: {
  db: SqlDatabase
  onCommitted: () => void
  /** A delivery due in `delayMs` (by the database's clock) was committed: wake the timer. */
  onScheduled: (delayMs: number) => void
  clock?: () => Date
}): DeliveryStore {
  const aggregate = createAggregate(deliveryAggregate, {
    db: deps.db,
    committed: deps.onCommitted,
    clock: deps.clock ?? (() => new Date()),
  })
  return {
    execute: (command, metadata = {}) => executeDelivery(aggregate, command, metadata, deps.onScheduled),
    get: (orderId) => aggregate.load(deliveryStreamId(orderId)),
  }
}
