import type { DeliveryCommandBody } from '../../contracts/delivery/commands.ts'
import { type DeliveryEventData, deliveryStreamId } from '../../contracts/delivery/events.ts'
import type { DispatchEvent } from '../../contracts/dispatch/events.ts'
import type { Sealed } from '../../contracts/personal.ts'
import { ErrorCodes } from '../../platform/errors.ts'
import {
  accept,
  assertNever,
  type DecideContext,
  type Decider,
  type Decision,
  type Recorded,
  reject,
} from '../../platform/es/decider.ts'

/**
 * An order's delivery as a pure decider, in the stream `delivery-<orderId>`.
 *
 * Delivery is simulated with a configurable delay, and the delay must survive a restart, so it is
 * recorded rather than slept: ScheduleDelivery → DeliveryScheduled with `dueAt` (the decision's time
 * plus the delay the application configures); when `dueAt` has come (`isDeliveryDue`), the delivery
 * service's timer decides DeliverOrder → OrderDelivered. No consumer blocks for the delay, and a
 * delivery scheduled before a crash is found again from its state.
 *
 * Both modes: the saga sends ScheduleDelivery after OrderDispatched; in choreography the delivery
 * service makes the same command from OrderDispatched (`deliveryCommandFor`). Same stream, same end.
 *
 * Rules:
 * - ScheduleDelivery schedules once; again (or once delivered), it emits nothing.
 * - DeliverOrder delivers a scheduled order once; again, it emits nothing. It does not check
 *   `dueAt`: the timer decides when, and an operator may deliver early. Delivering an order that
 *   was never scheduled is NOT_FOUND (nothing was dispatched to deliver).
 */

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

export interface ScheduleDelivery {
  commandType: 'ScheduleDelivery'
  orderId: string
  shipmentId: string
  /** The simulated travel time, from the delivery service's configuration. */
  delayMs: number
  /** Where the courier goes, sealed as the order service sealed it. */
  deliveryAddress?: Sealed | null | undefined
}

export interface DeliverOrder {
  commandType: 'DeliverOrder'
  orderId: string
}

export type DeliveryCommand = ScheduleDelivery | DeliverOrder

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

export interface Delivery {
  orderId: string
  shipmentId: string
  status: 'SCHEDULED' | 'DELIVERED'
  dueAt: string
  deliveredAt: string | null
  /** Sealed (never in clear here); the courier's to open. */
  deliveryAddress?: Sealed | null
  version: number
}

export type DeliveryState = Delivery | null

export function initialState(): DeliveryState {
  return null
}

export function evolve(state: DeliveryState, event: Recorded<DeliveryEventData>): DeliveryState {
  switch (event.eventType) {
    case 'DeliveryScheduled':
      return {
        orderId: event.orderId,
        shipmentId: event.shipmentId,
        status: 'SCHEDULED',
        dueAt: event.dueAt,
        deliveredAt: null,
        ...(event.deliveryAddress ? { deliveryAddress: event.deliveryAddress } : {}),
        version: event.version,
      }
    case 'OrderDelivered':
      return {
        orderId: event.orderId,
        shipmentId: event.shipmentId,
        dueAt: state?.dueAt ?? event.occurredOn,
        status: 'DELIVERED',
        deliveredAt: event.occurredOn,
        ...(state?.deliveryAddress ? { deliveryAddress: state.deliveryAddress } : {}),
        version: event.version,
      }
    default:
      return assertNever(event)
  }
}

// ---------------------------------------------------------------------------------------------
// Decide
// ---------------------------------------------------------------------------------------------

export function decide(
  command: DeliveryCommand,
  state: DeliveryState,
  context: DecideContext,
): Decision<DeliveryEventData> {
  switch (command.commandType) {
    case 'ScheduleDelivery': {
      if (state !== null) return accept()
      if (!Number.isSafeInteger(command.delayMs) || command.delayMs < 0) {
        return reject(ErrorCodes.VALIDATION_FAILED, 'the delivery delay must be a whole number of milliseconds ≥ 0', [
          { field: 'delayMs', message: 'must be a whole number ≥ 0' },
        ])
      }
      return accept({
        eventType: 'DeliveryScheduled',
        orderId: command.orderId,
        shipmentId: command.shipmentId,
        dueAt: new Date(Date.parse(context.now) + command.delayMs).toISOString(),
        ...(command.deliveryAddress ? { deliveryAddress: command.deliveryAddress } : {}),
      })
    }
    case 'DeliverOrder':
      if (state === null) return reject(ErrorCodes.NOT_FOUND, `no delivery is scheduled for order ${command.orderId}`)
      if (state.status === 'DELIVERED') return accept()
      return accept({ eventType: 'OrderDelivered', orderId: state.orderId, shipmentId: state.shipmentId })
    default:
      return assertNever(command)
  }
}

/** Whether the delivery service's timer should deliver now. */
export function isDeliveryDue(state: DeliveryState, now: string): boolean {
  return state?.status === 'SCHEDULED' && Date.parse(state.dueAt) <= Date.parse(now)
}

/** The delivery decider, for the platform's command handler (stream type `delivery`). */
export const deliveryDecider: Decider<DeliveryCommand, DeliveryEventData, DeliveryState> = {
  initialState,
  decide,
  evolve,
}

export const DELIVERY_STREAM_TYPE = 'delivery'

export { deliveryStreamId }

// ---------------------------------------------------------------------------------------------
// Choreography (seed 004): the delivery service consumes `dispatch-events`.
// ---------------------------------------------------------------------------------------------

/**
 * The delivery command a dispatch event calls for, or null: OrderDispatched → ScheduleDelivery of
 * its shipment. The application adds the configured `delayMs`.
 */
export function deliveryCommandFor(event: DispatchEvent): DeliveryCommandBody | null {
  switch (event.eventType) {
    case 'OrderDispatched':
      return {
        commandType: 'ScheduleDelivery',
        orderId: event.orderId,
        shipmentId: event.shipmentId,
        ...(event.deliveryAddress ? { deliveryAddress: event.deliveryAddress } : {}),
      }
    case 'ShipmentQuoted':
      return null
    default:
      return assertNever(event)
  }
}
