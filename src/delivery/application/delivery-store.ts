import { type DeliveryEventData, deliveryEvents, deliveryStreamId } from '../../contracts/delivery/events.ts'
import type { CommandMetadata, CommandResult } from '../../platform/es/command-handler.ts'
import { scheduleTimer, type TimerToSchedule } from '../../platform/es/scheduler.ts'
import { stateTable } from '../../platform/es/state-table.ts'
import type { CommittedWrites } from '../../platform/outbox/outbox.ts'
import { type AggregateDefinition, createAggregate } from '../../platform/service.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import { DELIVERY_STREAM_TYPE, type DeliveryCommand, type DeliveryState, deliveryDecider } from '../domain/delivery.ts'

/**
 * The delivery service's write side: one command = one transaction (inbox, events, the
 * `deliveries` row, the outbox for `delivery-events` keyed by the order id) and, when a delivery is
 * scheduled, its durable timer in the same transaction: a delivery is never scheduled without the
 * timer that will deliver it.
 */

/** The timer kind of due deliveries (platform/es/scheduler.ts). */
export const DELIVERY_DUE_TIMER = 'delivery-due'

const deliveries = stateTable<DeliveryState>({
  table: 'deliveries',
  initialState: () => null,
  locks: false,
  columns: {
    order_id: { type: 'text', of: (delivery) => delivery.orderId },
    status: { type: 'text', of: (delivery) => delivery.status },
    due_at: { type: 'timestamptz', of: (delivery) => delivery.dueAt },
    delivered_at: { type: 'timestamptz', of: (delivery) => delivery.deliveredAt },
  },
})

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
 * The durable timer of a delivery just scheduled, written in the transaction that scheduled it: a
 * delivery is never scheduled without what will deliver it. None when nothing was scheduled.
 */
export function deliveryTimerFor(
  result: DeliveryResult,
  command: DeliveryCommand,
  metadata: CommandMetadata,
): TimerToSchedule | undefined {
  if (command.commandType !== 'ScheduleDelivery') return undefined
  const scheduled = result.events.find((e) => e.eventType === 'DeliveryScheduled')
  if (!scheduled) return undefined
  // The event's dueAt is the app's reckoning (what the delivery shows); the timer counts the
  // delay on the database's clock, so a jump of the app's clock moves no delivery.
  return {
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
  }
}

export interface DeliveryStore {
  execute(command: DeliveryCommand, metadata?: CommandMetadata): Promise<DeliveryResult>
  get(orderId: string): Promise<DeliveryState>
}

/** The delivery aggregate on its own, with its timers: what the module runs, for tests and tools. */
export function createDeliveryStore(deps: {
  db: SqlDatabase
  onCommitted: (written?: CommittedWrites) => void
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
    async execute(command, metadata = {}) {
      const { result, extra: due } = await aggregate.executeWith(command, metadata, async (tx, result) => {
        const due = deliveryTimerFor(result, command, metadata)
        if (due) await scheduleTimer(tx, due)
        return due
      })
      if (due) deps.onScheduled(due.delayMs)
      return result
    },
    get: (orderId) => aggregate.load(deliveryStreamId(orderId)),
  }
}
