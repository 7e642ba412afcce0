import { type DispatchCommandMessage, dispatchCommands } from '../contracts/dispatch/commands.ts'
import { dispatchEvents, dispatchStreamId, shipmentIdFor } from '../contracts/dispatch/events.ts'
import { orderEvents } from '../contracts/order/events.ts'
import { stateTable } from '../platform/es/state-table.ts'
import { accept, defineService, react } from '../platform/service.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { inChoreography, journeySettings } from '../saga/settings.ts'
import { type Carrier, type CarrierLabel, simulatedCarrier } from './carrier.ts'
import {
  DISPATCH_STREAM_TYPE,
  type DispatchCommand,
  type DispatchState,
  dispatchCommandFor,
  dispatchDecider,
} from './domain/dispatch.ts'

/**
 * The dispatch service (seed 004): ships paid and confirmed orders once, with the shipping cost,
 * on `dispatch-events`. Orchestration: DispatchOrder from the saga; choreography: `order-events`.
 * What it is, the platform runs: consumers, inbox, batches, retries and dead letters.
 */

/** Orchestration: the saga's DispatchOrder (and QuoteShipment) on `dispatch_commands`. */
export const DISPATCH_COMMANDS_GROUP = 'dispatch-service-commands'
/** Choreography: `order-events` (OrderCreated/OrderUpdated quote, OrderConfirmed dispatches). */
export const DISPATCH_ORDER_EVENTS_GROUP = 'dispatch-service'

/** One row per order's shipment in `shipments`: status and cost as columns, the state as jsonb. */
const shipments = stateTable<DispatchState>({
  table: 'shipments',
  initialState: () => null,
  locks: false,
  columns: {
    order_id: { type: 'text', of: (shipment) => shipment.orderId },
    status: { type: 'text', of: (shipment) => (shipment.dispatched ? 'DISPATCHED' : 'QUOTED') },
    shipping_cost: {
      type: 'bigint',
      of: (shipment) => shipment.dispatched?.shippingCost ?? shipment.quote?.shippingCost ?? null,
    },
  },
})

/** A command off the wire, without its envelope. */
const toCommand = (message: DispatchCommandMessage): DispatchCommand =>
  message.commandType === 'QuoteShipment'
    ? {
        commandType: 'QuoteShipment',
        orderId: message.orderId,
        orderAmount: message.orderAmount,
        currency: message.currency,
        deliveryAddress: message.deliveryAddress,
      }
    : {
        commandType: 'DispatchOrder',
        orderId: message.orderId,
        orderAmount: message.orderAmount,
        currency: message.currency,
        deliveryAddress: message.deliveryAddress,
      }

export const dispatchService = defineService({
  name: 'dispatch',
  migrations: migrationsBeside(import.meta.url),
  settings: [journeySettings],
  setup: () => ({ carrier: simulatedCarrier() as Carrier & { labels?: ReadonlyMap<string, CarrierLabel> } }),
  // The order goes to the carrier with its address opened here, before the command's transaction
  // (a call out never holds one open); the address stays sealed in the shipment and its events.
  prepare: async (command, { carrier, context, load }) => {
    if (command.commandType !== 'DispatchOrder') return command
    const shipment = await load(dispatchStreamId(command.orderId))
    if (shipment?.dispatched) return command
    const sealed = command.deliveryAddress ?? shipment?.deliveryAddress
    if (sealed) {
      const address = (await context.personalData.open(sealed, 'deliveryAddress')) as CarrierLabel['address']
      await carrier.book({ orderId: command.orderId, shipmentId: shipmentIdFor(command.orderId), address })
    }
    return command
  },
  aggregate: {
    streamType: DISPATCH_STREAM_TYPE,
    streamOf: (command: DispatchCommand) => dispatchStreamId(command.orderId),
    decider: dispatchDecider,
    state: shipments,
    publishes: dispatchEvents,
  },
  intake: [
    accept(dispatchCommands, { group: DISPATCH_COMMANDS_GROUP, toCommand }),
    react(orderEvents, { group: DISPATCH_ORDER_EVENTS_GROUP, when: inChoreography, commandFor: dispatchCommandFor }),
  ],
})

/** The dispatch service as a module (`SERVICES=dispatch`). */
export const dispatchModule = () => dispatchService
