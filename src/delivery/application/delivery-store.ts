import {
  DELIVERY_EVENTS_TOPIC,
  type DeliveryEvent,
  deliveryStreamId,
  encodeDeliveryEvent,
} from '../../contracts/delivery/events.ts'
import {
  type CommandMetadata,
  createCommandHandler,
  type DomainEvent,
  type StateStore,
} from '../../platform/es/command-handler.ts'
import { eventMessage } from '../../platform/es/messages.ts'
import { scheduleTimer } from '../../platform/es/scheduler.ts'
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

export interface DeliveryResult {
  delivery: DeliveryState
  events: DeliveryEvent[]
  duplicate: boolean
}

export interface DeliveryStore {
  execute(command: DeliveryCommand, metadata?: CommandMetadata): Promise<DeliveryResult>
  get(orderId: string): Promise<Delivery | null>
}

const deliveriesTable: StateStore<DeliveryState> = {
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

export function createDeliveryStore(deps: {
  db: SqlDatabase
  onCommitted: () => void
  /** A delivery due in `delayMs` (by the database's clock) was committed: wake the timer. */
  onScheduled: (delayMs: number) => void
  clock?: () => Date
}): DeliveryStore {
  const handler = createCommandHandler({
    db: deps.db,
    onCommitted: deps.onCommitted,
    streamType: DELIVERY_STREAM_TYPE,
    decider: deliveryDecider,
    stateStore: deliveriesTable,
    toMessages: (event, metadata) => {
      const e = event as DomainEvent<unknown> as DeliveryEvent
      return [
        eventMessage({ topic: DELIVERY_EVENTS_TOPIC, key: e.orderId, body: encodeDeliveryEvent(e), event, metadata }),
      ]
    },
    ...(deps.clock ? { clock: deps.clock } : {}),
  })
  return {
    async execute(command, metadata = {}) {
      const { result, extra: delayMs } = await handler.handleWith(
        deliveryStreamId(command.orderId),
        command,
        metadata,
        async (tx, result) => {
          const scheduled = (result.events as DeliveryEvent[]).find((e) => e.eventType === 'DeliveryScheduled')
          if (scheduled?.eventType !== 'DeliveryScheduled' || command.commandType !== 'ScheduleDelivery') {
            return undefined
          }
          // The event's dueAt is the app's reckoning (what the delivery shows); the timer counts
          // the delay on the database's clock, so a jump of the app's clock moves no delivery.
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
        },
      )
      if (delayMs !== undefined) deps.onScheduled(delayMs)
      return { delivery: result.state, events: result.events as DeliveryEvent[], duplicate: result.duplicate }
    },
    get: async (orderId) => (await deliveriesTable.load(deps.db, deliveryStreamId(orderId))).state,
  }
}
