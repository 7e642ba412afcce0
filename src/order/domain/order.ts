import type { Envelope } from '../../contracts/envelope.ts'
import { formatAmount } from '../../contracts/money.ts'
import {
  type OrderEventData,
  type OrderItem,
  type OrderStatus,
  OrderStatuses,
  type OrderUpdated,
} from '../../contracts/order/events.ts'
import type { Contact, DeliveryAddress, Personal } from '../../contracts/personal.ts'
import { type ErrorCode, ErrorCodes, type FieldError } from '../../platform/errors.ts'
import type { DecideContext, Decider, Decision as PlatformDecision, Rejection } from '../../platform/es/decider.ts'

/**
 * The order aggregate as a pure decider: `decide` turns a command and the current state into the
 * events that happened (or a rejection), `evolve` folds one event into the state. No I/O, clock or
 * randomness: the order id comes in with CreateOrder, the time in `context`, and the envelope
 * (eventId, version, occurredOn) is the application layer's to add.
 *
 * Amounts are integer minor units throughout (see contracts/money.ts).
 *
 * Lifecycle: PENDING → CONFIRMED → DISPATCHED → DELIVERED, and PENDING or CONFIRMED → CANCELLED.
 * The total is fixed at placement (see `updateOrderDetails`): the payment is requested for it at
 * once, so the total delivered is always the total captured.
 *
 * Redelivery: commands arrive at least once (a saga or a fulfilment service may send the same
 * command again, and a consumer that crashed before committing replays a batch), so a command
 * whose outcome is already part of the order's history succeeds with no events instead of
 * failing:
 * - ConfirmOrder with the payment the order was confirmed with (whatever happened since);
 * - CancelOrder of a CANCELLED order with the same reason;
 * - ChangeOrderStatus to DISPATCHED or DELIVERED once the order has reached that step.
 * The same command with different data (another paymentId, another reason) is a real conflict and
 * is rejected with INVALID_TRANSITION.
 */

export type { OrderStatus }
export { OrderStatuses }

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

export interface CreateOrder {
  commandType: 'CreateOrder'
  /** Chosen by the caller (ids come from outside the domain). */
  orderId: string
  customerId: string
  restaurantId?: string | undefined
  items: OrderItem[]
  /** What the customer is charged; may include fees above the items. Defaults to the subtotal. */
  totalAmount?: number | undefined
  currency: string
  notes?: string | undefined
  /**
   * Personal: the platform seals it with the customer's key before the event is stored; one that
   * arrives sealed (a cart's checkout) is carried on as it is.
   */
  deliveryAddress?: Personal<DeliveryAddress> | undefined
  /** Personal, as the address. */
  contact?: Personal<Contact> | undefined
}

export interface UpdateOrderDetails {
  commandType: 'UpdateOrderDetails'
  orderId: string
  items?: OrderItem[] | undefined
  notes?: string | undefined
  /** The total the caller expects; it must be the order's, which is fixed at placement. */
  totalAmount?: number | undefined
}

export interface ConfirmOrder {
  commandType: 'ConfirmOrder'
  orderId: string
  paymentId: string
}

export interface CancelOrder {
  commandType: 'CancelOrder'
  orderId: string
  reason: string
}

/**
 * A fulfilment step (DISPATCHED, DELIVERED). CONFIRMED and CANCELLED are accepted too and follow
 * ConfirmOrder's and CancelOrder's rules, so CONFIRMED needs the `paymentId`.
 */
export interface ChangeOrderStatus {
  commandType: 'ChangeOrderStatus'
  orderId: string
  status: OrderStatus
  paymentId?: string | undefined
  reason?: string | undefined
  /**
   * DELIVERED only, from the delivery service's own report (choreography): a CONFIRMED order, whose
   * dispatch event has not been applied yet (it travels on another topic and can be overtaken),
   * records its dispatch first, then its delivery, so the history keeps them in the order they
   * happened. The dispatch event that follows changes nothing (the order is past it).
   */
  recordsDispatch?: boolean | undefined
}

export type OrderCommand = CreateOrder | UpdateOrderDetails | ConfirmOrder | CancelOrder | ChangeOrderStatus

/** The reason recorded when a status change to CANCELLED gives none. */
export const STATUS_CHANGE_CANCELLATION_REASON = 'cancelled by status change'

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/** Everything `GET /api/orders/:id` answers with; amounts in minor units. */
export interface Order {
  id: string
  customerId: string
  restaurantId: string | null
  items: OrderItem[]
  subtotal: number
  totalAmount: number
  currency: string
  notes: string | null
  /** Sealed (as recorded), or null when the customer gave none; the API opens it for its reader. */
  deliveryAddress: Personal<DeliveryAddress>
  contact: Personal<Contact>
  status: OrderStatus
  paymentId: string | null
  cancellationReason: string | null
  createdAt: string
  updatedAt: string
  /** The version of the last event applied: the stream position an update must expect. */
  version: number
}

/** `null` until the order is created. */
export type OrderState = Order | null

export function initialState(): OrderState {
  return null
}

/** An event as read back from the store: its data plus the envelope fields evolve needs. */
export type RecordedOrderEvent = OrderEventData & Pick<Envelope, 'aggregateId' | 'occurredOn' | 'version'>

export function evolve(state: OrderState, event: RecordedOrderEvent): OrderState {
  if (event.eventType === 'OrderCreated') {
    return {
      id: event.aggregateId,
      customerId: event.customerId,
      restaurantId: event.restaurantId ?? null,
      items: event.items,
      subtotal: event.subtotal,
      totalAmount: event.totalAmount,
      currency: event.currency,
      notes: event.notes ?? null,
      // `?? null`: an OrderCreated of version 1 read without its upcaster has neither.
      deliveryAddress: event.deliveryAddress ?? null,
      contact: event.contact ?? null,
      status: OrderStatuses.PENDING,
      paymentId: null,
      cancellationReason: null,
      createdAt: event.occurredOn,
      updatedAt: event.occurredOn,
      version: event.version,
    }
  }
  // Any other event before OrderCreated means a broken stream; evolve stays total and decide will
  // answer NOT_FOUND rather than act on half an order.
  if (state === null) return state
  const touched = { ...state, updatedAt: event.occurredOn, version: event.version }
  switch (event.eventType) {
    case 'OrderUpdated':
      return {
        ...touched,
        items: event.items ?? state.items,
        notes: event.notes ?? state.notes,
        subtotal: event.subtotal,
        totalAmount: event.totalAmount,
      }
    case 'OrderConfirmed':
      return { ...touched, status: OrderStatuses.CONFIRMED, paymentId: event.paymentId }
    case 'OrderCancelled':
      return { ...touched, status: OrderStatuses.CANCELLED, cancellationReason: event.reason }
    case 'OrderStatusChanged':
      return { ...touched, status: event.to }
    default:
      return assertNever(event)
  }
}

// ---------------------------------------------------------------------------------------------
// Decide
// ---------------------------------------------------------------------------------------------

export type { DecideContext }

export type OrderRejection = Rejection

export type Decision = PlatformDecision<OrderEventData>

export function decide(command: OrderCommand, state: OrderState, _context: DecideContext): Decision {
  switch (command.commandType) {
    case 'CreateOrder':
      return createOrder(command, state)
    case 'UpdateOrderDetails':
      return updateOrderDetails(command, state)
    case 'ConfirmOrder':
      return confirm(command.orderId, command.paymentId, state)
    case 'CancelOrder':
      return cancel(command.orderId, command.reason, state)
    case 'ChangeOrderStatus':
      return changeStatus(command, state)
    default:
      return assertNever(command)
  }
}

/** The items' subtotal in minor units: whole numbers only, so it is exact. */
export function subtotalOf(items: readonly OrderItem[]): number {
  return items.reduce((sum, item) => sum + item.price * item.quantity, 0)
}

function createOrder(command: CreateOrder, state: OrderState): Decision {
  if (state !== null) {
    // Creating a stream that exists is an expected-version conflict (it was expected not to exist).
    return reject(ErrorCodes.VERSION_CONFLICT, `order ${command.orderId} already exists`)
  }
  const amounts = priceItems(command.items, command.totalAmount)
  if (!amounts.ok) return amounts
  return accept({
    eventType: 'OrderCreated',
    customerId: command.customerId,
    ...(command.restaurantId === undefined ? {} : { restaurantId: command.restaurantId }),
    items: command.items,
    subtotal: amounts.subtotal,
    totalAmount: amounts.totalAmount,
    currency: command.currency,
    ...(command.notes === undefined ? {} : { notes: command.notes }),
    deliveryAddress: command.deliveryAddress ?? null,
    contact: command.contact ?? null,
  })
}

/**
 * The total is fixed at placement: in both saga modes the payment is requested for it as soon as
 * the order is created (the saga sends ProcessPayment on OrderCreated; in choreography the payment
 * service reacts to OrderCreated), so a later total could never be the one captured. New items are
 * priced as before (the fee an explicit total carried above the old subtotal stays: total = new
 * subtotal + (old total − old subtotal)), and are accepted only when they come to the same total;
 * otherwise ORDER_TOTAL_FIXED, naming `items` (and `totalAmount` when the caller gave another one).
 * Notes, and items of the same value, still change while the order is PENDING.
 */
function updateOrderDetails(command: UpdateOrderDetails, state: OrderState): Decision {
  if (state === null) return notFound(command.orderId)
  if (state.status !== OrderStatuses.PENDING) {
    return invalidTransition(`cannot update an order that is ${state.status}`)
  }
  if (command.items === undefined && command.notes === undefined) {
    return reject(ErrorCodes.VALIDATION_FAILED, 'nothing to update: give items or notes', [
      { field: 'items', message: 'at least one of items or notes is required' },
    ])
  }
  const event: OrderUpdated = {
    eventType: 'OrderUpdated',
    subtotal: state.subtotal,
    totalAmount: state.totalAmount,
  }
  const fixed: FieldError[] = []
  if (command.items !== undefined) {
    const fee = state.totalAmount - state.subtotal
    const amounts = priceItems(command.items, undefined, fee)
    if (!amounts.ok) return amounts
    if (amounts.totalAmount !== state.totalAmount) {
      fixed.push({
        field: 'items',
        message: `these items bring the total to ${formatAmount(amounts.totalAmount)}; it is fixed at ${formatAmount(state.totalAmount)}`,
      })
    }
    event.items = command.items
    event.subtotal = amounts.subtotal
    event.totalAmount = amounts.totalAmount
  }
  if (command.totalAmount !== undefined && command.totalAmount !== state.totalAmount) {
    fixed.push({
      field: 'totalAmount',
      message: `the total is fixed at ${formatAmount(state.totalAmount)}; ${formatAmount(command.totalAmount)} cannot be charged`,
    })
  }
  if (fixed.length > 0) return totalFixed(state.totalAmount, fixed)
  if (command.notes !== undefined) event.notes = command.notes
  return accept(event)
}

/** Why the order's total cannot change, and what to do instead. */
export const TOTAL_FIXED_REASON = 'the total is fixed once payment is requested; cancel and place a new order'

function totalFixed(totalAmount: number, fields: FieldError[]): Decision {
  return reject(
    ErrorCodes.ORDER_TOTAL_FIXED,
    `cannot change the order's total (${formatAmount(totalAmount)}): ${TOTAL_FIXED_REASON}`,
    fields,
  )
}

function confirm(orderId: string, paymentId: string, state: OrderState): Decision {
  if (state === null) return notFound(orderId)
  if (state.paymentId === paymentId) return accept()
  switch (state.status) {
    case OrderStatuses.PENDING:
      return accept({ eventType: 'OrderConfirmed', paymentId })
    case OrderStatuses.CONFIRMED:
      return invalidTransition(
        `order is already CONFIRMED with payment ${state.paymentId}; cannot confirm it with payment ${paymentId}`,
      )
    case OrderStatuses.DISPATCHED:
    case OrderStatuses.DELIVERED:
    case OrderStatuses.CANCELLED:
      return invalidTransition(`cannot confirm an order that is ${state.status}`)
    default:
      return assertNever(state.status)
  }
}

function cancel(orderId: string, reason: string, state: OrderState): Decision {
  if (state === null) return notFound(orderId)
  switch (state.status) {
    case OrderStatuses.PENDING:
    case OrderStatuses.CONFIRMED:
      return accept({ eventType: 'OrderCancelled', reason })
    case OrderStatuses.CANCELLED:
      if (state.cancellationReason === reason) return accept()
      return invalidTransition(`cannot cancel an order that is CANCELLED (cancelled: ${state.cancellationReason})`)
    case OrderStatuses.DISPATCHED:
    case OrderStatuses.DELIVERED:
      return invalidTransition(`cannot cancel an order that is ${state.status}`)
    default:
      return assertNever(state.status)
  }
}

/** The fulfilment path in order; a step already reached or passed is a redelivery. */
const fulfilmentPath: readonly OrderStatus[] = [
  OrderStatuses.PENDING,
  OrderStatuses.CONFIRMED,
  OrderStatuses.DISPATCHED,
  OrderStatuses.DELIVERED,
]

function changeStatus(command: ChangeOrderStatus, state: OrderState): Decision {
  if (state === null) return notFound(command.orderId)
  const to = command.status
  switch (to) {
    case OrderStatuses.PENDING:
      return invalidTransition(`cannot move an order that is ${state.status} back to PENDING`)
    case OrderStatuses.CONFIRMED:
      if (command.paymentId === undefined) {
        return reject(ErrorCodes.VALIDATION_FAILED, 'confirming an order needs the payment that confirms it', [
          { field: 'paymentId', message: 'paymentId is required when status is CONFIRMED' },
        ])
      }
      return confirm(command.orderId, command.paymentId, state)
    case OrderStatuses.CANCELLED:
      return cancel(command.orderId, command.reason ?? STATUS_CHANGE_CANCELLATION_REASON, state)
    case OrderStatuses.DISPATCHED:
    case OrderStatuses.DELIVERED: {
      if (to === OrderStatuses.DELIVERED && command.recordsDispatch && state.status === OrderStatuses.CONFIRMED) {
        return accept(
          { eventType: 'OrderStatusChanged', from: OrderStatuses.CONFIRMED, to: OrderStatuses.DISPATCHED },
          { eventType: 'OrderStatusChanged', from: OrderStatuses.DISPATCHED, to: OrderStatuses.DELIVERED },
        )
      }
      const from = to === OrderStatuses.DISPATCHED ? OrderStatuses.CONFIRMED : OrderStatuses.DISPATCHED
      if (state.status === from) return accept({ eventType: 'OrderStatusChanged', from, to })
      if (fulfilmentPath.indexOf(state.status) >= fulfilmentPath.indexOf(to)) return accept()
      const verb = to === OrderStatuses.DISPATCHED ? 'dispatch' : 'deliver'
      return invalidTransition(`cannot ${verb} an order that is ${state.status}`)
    }
    default:
      return assertNever(to)
  }
}

/** Subtotal and total of a set of items, or the field-level reason they cannot be charged. */
function priceItems(
  items: readonly OrderItem[],
  requestedTotal: number | undefined,
  fee = 0,
): { ok: true; subtotal: number; totalAmount: number } | { ok: false; error: OrderRejection } {
  if (items.length === 0) {
    return reject(ErrorCodes.VALIDATION_FAILED, 'an order needs at least one item', [
      { field: 'items', message: 'items must not be empty' },
    ])
  }
  const subtotal = subtotalOf(items)
  const totalAmount = requestedTotal ?? subtotal + fee
  // Beyond 2^53 integers stop being exact; no real order gets there, a malicious one must not.
  if (!Number.isSafeInteger(subtotal) || !Number.isSafeInteger(totalAmount)) {
    return reject(ErrorCodes.VALIDATION_FAILED, 'the order total is too large', [
      { field: 'items', message: 'the items add up to more than can be charged' },
    ])
  }
  if (totalAmount < subtotal) {
    const message = `totalAmount ${formatAmount(totalAmount)} is below the items' subtotal ${formatAmount(subtotal)}`
    return reject(ErrorCodes.VALIDATION_FAILED, message, [{ field: 'totalAmount', message }])
  }
  return { ok: true, subtotal, totalAmount }
}

function accept(...events: OrderEventData[]): Decision {
  return { ok: true, events }
}

function reject(code: ErrorCode, message: string, fields?: FieldError[]): { ok: false; error: OrderRejection } {
  return { ok: false, error: fields === undefined ? { code, message } : { code, message, fields } }
}

function notFound(orderId: string): Decision {
  return reject(ErrorCodes.NOT_FOUND, `order ${orderId} not found`)
}

function invalidTransition(message: string): Decision {
  return reject(ErrorCodes.INVALID_TRANSITION, message)
}

function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`)
}

/** The order aggregate as the platform's command handler takes it. */
export const orderDecider: Decider<OrderCommand, OrderEventData, OrderState> = { initialState, decide, evolve }
