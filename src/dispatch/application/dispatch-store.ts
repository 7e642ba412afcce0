import {
  DISPATCH_EVENTS_TOPIC,
  type DispatchEvent,
  dispatchStreamId,
  encodeDispatchEvent,
} from '../../contracts/dispatch/events.ts'
import {
  type CommandMetadata,
  createCommandHandler,
  type DomainEvent,
  type StateStore,
} from '../../platform/es/command-handler.ts'
import { eventMessage } from '../../platform/es/messages.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import {
  DISPATCH_STREAM_TYPE,
  type DispatchCommand,
  type DispatchState,
  dispatchDecider,
  type Shipment,
} from '../domain/dispatch.ts'

/**
 * The dispatch service's write side: one command = one transaction (inbox, events, the `shipments`
 * row, the outbox for `dispatch-events` keyed by the order id).
 */
export interface DispatchResult {
  shipment: DispatchState
  events: DispatchEvent[]
  duplicate: boolean
}

export interface DispatchStore {
  execute(command: DispatchCommand, metadata?: CommandMetadata): Promise<DispatchResult>
  get(orderId: string): Promise<Shipment | null>
}

const shipmentsTable: StateStore<DispatchState> = {
  async load(tx, streamId) {
    const { rows } = await tx.query<{ state: Shipment }>('SELECT state FROM shipments WHERE id = $1', [streamId])
    const shipment = rows[0]?.state ?? null
    return { state: shipment, version: shipment?.version ?? 0 }
  },
  async save(tx, streamId, shipment, version) {
    if (!shipment) throw new Error('a dispatch event left no shipment state')
    await tx.query(
      `INSERT INTO shipments (id, order_id, status, shipping_cost, version, state, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, now())
       ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, shipping_cost = EXCLUDED.shipping_cost,
         version = EXCLUDED.version, state = EXCLUDED.state, updated_at = now()`,
      [
        streamId,
        shipment.orderId,
        shipment.dispatched ? 'DISPATCHED' : 'QUOTED',
        shipment.dispatched?.shippingCost ?? shipment.quote?.shippingCost ?? null,
        version,
        JSON.stringify(shipment),
      ],
    )
  },
}

export function createDispatchStore(deps: {
  db: SqlDatabase
  onCommitted: () => void
  clock?: () => Date
}): DispatchStore {
  const handler = createCommandHandler({
    db: deps.db,
    onCommitted: deps.onCommitted,
    streamType: DISPATCH_STREAM_TYPE,
    decider: dispatchDecider,
    stateStore: shipmentsTable,
    toMessages: (event, metadata) => {
      const e = event as DomainEvent<unknown> as DispatchEvent
      return [
        eventMessage({ topic: DISPATCH_EVENTS_TOPIC, key: e.orderId, body: encodeDispatchEvent(e), event, metadata }),
      ]
    },
    ...(deps.clock ? { clock: deps.clock } : {}),
  })
  return {
    async execute(command, metadata = {}) {
      const result = await handler.handle(dispatchStreamId(command.orderId), command, metadata)
      return { shipment: result.state, events: result.events as DispatchEvent[], duplicate: result.duplicate }
    },
    get: async (orderId) => (await shipmentsTable.load(deps.db, dispatchStreamId(orderId))).state,
  }
}
