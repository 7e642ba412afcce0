import type { DispatchCommandBody } from '../../contracts/dispatch/commands.ts'
import { type DispatchEventData, dispatchStreamId, shipmentIdFor } from '../../contracts/dispatch/events.ts'
import type { OrderEvent } from '../../contracts/order/events.ts'
import type { Sealed } from '../../contracts/personal.ts'
import { shippingCostFor } from '../../contracts/shipping.ts'
import { ErrorCodes } from '../../platform/errors.ts'
import { accept, assertNever, type Decider, type Decision, type Recorded, reject } from '../../platform/es/decider.ts'

/**
 * An order's shipment as a pure decider, in the stream `dispatch-<orderId>`; the shipment id is
 * `shipment-<orderId>`, so a re-sent DispatchOrder names the same shipment.
 *
 * Shipping cost: contracts/shipping.ts (2 % of the order's total, rounded half up to the cent).
 *
 * "On a paid and confirmed order": dispatch acts on the order's confirmation, never on the payment
 * alone.
 * - Orchestration: the saga sends DispatchOrder (with the order's total) once it has seen
 *   PaymentProcessed and then OrderConfirmed.
 * - Choreography: dispatch consumes `order-events`, not PaymentProcessed. OrderConfirmed is written
 *   only after the order service accepted the payment, so an order cancelled meanwhile is never
 *   shipped, and the order service never sees OrderDispatched for an order it has not confirmed
 *   (its confirmation is committed before OrderConfirmed is published). OrderConfirmed carries no
 *   amount, so dispatch quotes the shipping from OrderCreated (and again from OrderUpdated), which
 *   come before it on the same partition: QuoteShipment → ShipmentQuoted, then DispatchOrder without
 *   an amount uses the quote. Acting on PaymentProcessed would be simpler but racy: it would ship
 *   orders whose confirmation the order service refused (cancelled while the payment ran) and could
 *   reach the order service before its own confirmation did.
 * Both modes end with the same OrderDispatched: same shipment id, same cost for the same total.
 *
 * Rules:
 * - QuoteShipment records the cost of a total; the same total again, or any total once dispatched,
 *   emits nothing. The first quote needs a currency (OrderUpdated does not repeat it).
 * - DispatchOrder dispatches once; again, it emits nothing. It needs an amount, given or quoted.
 */

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

export interface QuoteShipment {
  commandType: 'QuoteShipment'
  orderId: string
  /** The order's total, minor units. */
  orderAmount: number
  currency?: string | undefined
  /** Sealed with the customer's key (the order service sealed it): kept for the carrier. */
  deliveryAddress?: Sealed | null | undefined
}

export interface DispatchOrder {
  commandType: 'DispatchOrder'
  orderId: string
  /** The order's total, minor units; without it, the quote's. */
  orderAmount?: number | undefined
  currency?: string | undefined
  /** Sealed; without it, the one the quote kept. */
  deliveryAddress?: Sealed | null | undefined
}

export type DispatchCommand = QuoteShipment | DispatchOrder

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

export interface Shipment {
  orderId: string
  quote: { orderAmount: number; shippingCost: number; currency: string } | null
  dispatched: { shipmentId: string; shippingCost: number; currency: string; dispatchedAt: string } | null
  /** Where it goes, sealed (never in clear here): dispatch opens it only for its carrier. */
  deliveryAddress?: Sealed | null
  version: number
}

export type DispatchState = Shipment | null

export function initialState(): DispatchState {
  return null
}

export function evolve(state: DispatchState, event: Recorded<DispatchEventData>): DispatchState {
  const current: Shipment = state ?? { orderId: event.orderId, quote: null, dispatched: null, version: 0 }
  switch (event.eventType) {
    case 'ShipmentQuoted':
      return {
        ...current,
        ...(event.deliveryAddress ? { deliveryAddress: event.deliveryAddress } : {}),
        quote: { orderAmount: event.orderAmount, shippingCost: event.shippingCost, currency: event.currency },
        version: event.version,
      }
    case 'OrderDispatched':
      return {
        ...current,
        ...(event.deliveryAddress ? { deliveryAddress: event.deliveryAddress } : {}),
        dispatched: {
          shipmentId: event.shipmentId,
          shippingCost: event.shippingCost,
          currency: event.currency,
          dispatchedAt: event.occurredOn,
        },
        version: event.version,
      }
    default:
      return assertNever(event)
  }
}

// ---------------------------------------------------------------------------------------------
// Decide
// ---------------------------------------------------------------------------------------------

export function decide(command: DispatchCommand, state: DispatchState): Decision<DispatchEventData> {
  switch (command.commandType) {
    case 'QuoteShipment':
      return quote(command, state)
    case 'DispatchOrder':
      return dispatch(command, state)
    default:
      return assertNever(command)
  }
}

function quote(command: QuoteShipment, state: DispatchState): Decision<DispatchEventData> {
  if (state?.dispatched) return accept()
  const currency = command.currency ?? state?.quote?.currency
  if (currency === undefined) {
    return reject(
      ErrorCodes.VALIDATION_FAILED,
      `order ${command.orderId} has no quote yet, so a quote needs a currency`,
      [{ field: 'currency', message: 'currency is required for the first quote' }],
    )
  }
  if (state?.quote && state.quote.orderAmount === command.orderAmount && state.quote.currency === currency) {
    return accept()
  }
  const deliveryAddress = command.deliveryAddress ?? state?.deliveryAddress
  return accept({
    eventType: 'ShipmentQuoted',
    orderId: command.orderId,
    orderAmount: command.orderAmount,
    shippingCost: shippingCostFor(command.orderAmount),
    currency,
    ...(deliveryAddress ? { deliveryAddress } : {}),
  })
}

function dispatch(command: DispatchOrder, state: DispatchState): Decision<DispatchEventData> {
  if (state?.dispatched) return accept()
  const orderAmount = command.orderAmount ?? state?.quote?.orderAmount
  const currency = command.currency ?? state?.quote?.currency
  if (orderAmount === undefined || currency === undefined) {
    return reject(
      ErrorCodes.VALIDATION_FAILED,
      `order ${command.orderId} has no shipping quote, so DispatchOrder needs the order's amount and currency`,
      [
        ...(orderAmount === undefined ? [{ field: 'orderAmount', message: 'orderAmount is required' }] : []),
        ...(currency === undefined ? [{ field: 'currency', message: 'currency is required' }] : []),
      ],
    )
  }
  const deliveryAddress = command.deliveryAddress ?? state?.deliveryAddress
  return accept({
    eventType: 'OrderDispatched',
    orderId: command.orderId,
    shipmentId: shipmentIdFor(command.orderId),
    shippingCost: shippingCostFor(orderAmount),
    currency,
    ...(deliveryAddress ? { deliveryAddress } : {}),
  })
}

/** The dispatch decider, for the platform's command handler (stream type `dispatch`). */
export const dispatchDecider: Decider<DispatchCommand, DispatchEventData, DispatchState> = {
  initialState,
  decide: (command, state) => decide(command, state),
  evolve,
}

export const DISPATCH_STREAM_TYPE = 'dispatch'

export { dispatchStreamId }

// ---------------------------------------------------------------------------------------------
// Choreography (seed 004): the dispatch service consumes `order-events` (see above for why).
// ---------------------------------------------------------------------------------------------

/**
 * The dispatch command an order event calls for, or null: OrderCreated and OrderUpdated →
 * QuoteShipment of the order's total; OrderConfirmed → DispatchOrder (the quote gives the amount).
 */
export function dispatchCommandFor(event: OrderEvent): DispatchCommandBody | null {
  switch (event.eventType) {
    case 'OrderCreated':
      return {
        commandType: 'QuoteShipment',
        orderId: event.aggregateId,
        orderAmount: event.totalAmount,
        currency: event.currency,
        // Recorded events hold it sealed (the order service sealed it before storing it).
        ...(event.deliveryAddress ? { deliveryAddress: event.deliveryAddress as Sealed } : {}),
      }
    case 'OrderUpdated':
      return { commandType: 'QuoteShipment', orderId: event.aggregateId, orderAmount: event.totalAmount }
    case 'OrderConfirmed':
      return { commandType: 'DispatchOrder', orderId: event.aggregateId }
    case 'OrderCancelled':
    case 'OrderStatusChanged':
      return null
    default:
      return assertNever(event)
  }
}
