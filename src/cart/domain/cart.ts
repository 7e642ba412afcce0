import { type CartEventData, type CartItem, type CartStatus, CartStatuses } from '../../contracts/cart/events.ts'
import { formatAmount } from '../../contracts/money.ts'
import type { Contact, DeliveryAddress } from '../../contracts/personal.ts'
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
 * Seed 004's cart as a pure decider. A cart is OPEN while the customer fills it, and CHECKED_OUT
 * once it became an order; nothing changes a checked-out cart. Ids (the cart's, the order's) and
 * time come from outside. Amounts are integer minor units.
 *
 * Adding a product the cart already holds adds to its quantity (at the price given last). Checking
 * out again with the same order id is a redelivery and changes nothing; with another, a conflict.
 */

export const MAX_LINES = 100
export const MAX_QUANTITY = 10_000

export interface CreateCart {
  commandType: 'CreateCart'
  cartId: string
  customerId: string
  currency: string
}
export interface AddCartItem {
  commandType: 'AddCartItem'
  cartId: string
  item: CartItem
}
export interface ChangeCartItemQuantity {
  commandType: 'ChangeCartItemQuantity'
  cartId: string
  productId: string
  quantity: number
}
export interface RemoveCartItem {
  commandType: 'RemoveCartItem'
  cartId: string
  productId: string
}
export interface CheckOutCart {
  commandType: 'CheckOutCart'
  cartId: string
  /** The order the cart becomes, chosen by the caller. */
  orderId: string
  /** Personal: sealed with the customer's key before the event is stored, and carried on to the order. */
  deliveryAddress?: DeliveryAddress | undefined
  contact?: Contact | undefined
}

export type CartCommand = CreateCart | AddCartItem | ChangeCartItemQuantity | RemoveCartItem | CheckOutCart

export interface Cart {
  id: string
  customerId: string
  currency: string
  items: CartItem[]
  /** What the items add up to, in minor units. */
  totalAmount: number
  status: CartStatus
  orderId: string | null
  createdAt: string
  updatedAt: string
  version: number
}

export type CartState = Cart | null

export const initialState = (): CartState => null

const totalOf = (items: readonly CartItem[]) => items.reduce((sum, item) => sum + item.price * item.quantity, 0)

export function evolve(state: CartState, event: Recorded<CartEventData>): CartState {
  if (event.eventType === 'CartCreated') {
    return {
      id: event.aggregateId,
      customerId: event.customerId,
      currency: event.currency,
      items: [],
      totalAmount: 0,
      status: CartStatuses.OPEN,
      orderId: null,
      createdAt: event.occurredOn,
      updatedAt: event.occurredOn,
      version: event.version,
    }
  }
  if (state === null) return state
  const touched = { ...state, updatedAt: event.occurredOn, version: event.version }
  const withItems = (items: CartItem[]) => ({ ...touched, items, totalAmount: totalOf(items) })
  switch (event.eventType) {
    case 'CartItemAdded': {
      const existing = state.items.find((item) => item.productId === event.productId)
      const line: CartItem = {
        productId: event.productId,
        ...(event.name !== undefined ? { name: event.name } : existing?.name ? { name: existing.name } : {}),
        price: event.price,
        quantity: (existing?.quantity ?? 0) + event.quantity,
      }
      return withItems(
        existing
          ? state.items.map((item) => (item.productId === event.productId ? line : item))
          : [...state.items, line],
      )
    }
    case 'CartItemQuantityChanged':
      return withItems(
        state.items.map((item) => (item.productId === event.productId ? { ...item, quantity: event.quantity } : item)),
      )
    case 'CartItemRemoved':
      return withItems(state.items.filter((item) => item.productId !== event.productId))
    case 'CartCheckedOut':
      return { ...touched, status: CartStatuses.CHECKED_OUT, orderId: event.orderId }
    default:
      return assertNever(event)
  }
}

export function decide(command: CartCommand, state: CartState, _context: DecideContext): Decision<CartEventData> {
  if (command.commandType === 'CreateCart') {
    if (state !== null) return reject(ErrorCodes.VERSION_CONFLICT, `cart ${command.cartId} already exists`)
    return accept({ eventType: 'CartCreated', customerId: command.customerId, currency: command.currency })
  }
  if (state === null) return reject(ErrorCodes.NOT_FOUND, `cart ${command.cartId} not found`)
  if (state.status === CartStatuses.CHECKED_OUT) {
    if (command.commandType === 'CheckOutCart' && command.orderId === state.orderId) return accept()
    return reject(
      ErrorCodes.INVALID_TRANSITION,
      `cart ${state.id} was checked out as order ${state.orderId}; it cannot change any more`,
    )
  }
  switch (command.commandType) {
    case 'AddCartItem': {
      const { item } = command
      const existing = state.items.find((line) => line.productId === item.productId)
      if (!existing && state.items.length >= MAX_LINES) {
        return reject(ErrorCodes.VALIDATION_FAILED, `a cart holds at most ${MAX_LINES} products`, [
          { field: 'productId', message: `the cart already holds ${MAX_LINES} products` },
        ])
      }
      const quantity = (existing?.quantity ?? 0) + item.quantity
      if (quantity > MAX_QUANTITY) {
        return reject(ErrorCodes.VALIDATION_FAILED, `at most ${MAX_QUANTITY} of one product`, [
          {
            field: 'quantity',
            message: `the cart would hold ${quantity} of ${item.productId}; at most ${MAX_QUANTITY}`,
          },
        ])
      }
      const others = state.items.filter((line) => line.productId !== item.productId)
      if (!Number.isSafeInteger(totalOf([...others, { ...item, quantity }]))) {
        return reject(ErrorCodes.VALIDATION_FAILED, 'the cart total is too large', [
          { field: 'price', message: 'the items add up to more than can be charged' },
        ])
      }
      return accept({
        eventType: 'CartItemAdded',
        productId: item.productId,
        ...(item.name !== undefined ? { name: item.name } : {}),
        price: item.price,
        quantity: item.quantity,
      })
    }
    case 'ChangeCartItemQuantity': {
      const line = state.items.find((item) => item.productId === command.productId)
      if (!line) return reject(ErrorCodes.NOT_FOUND, `product ${command.productId} is not in cart ${state.id}`)
      if (line.quantity === command.quantity) return accept()
      if (!Number.isSafeInteger(totalOf(state.items) + line.price * (command.quantity - line.quantity))) {
        return reject(ErrorCodes.VALIDATION_FAILED, 'the cart total is too large', [
          { field: 'quantity', message: 'the items add up to more than can be charged' },
        ])
      }
      return accept({ eventType: 'CartItemQuantityChanged', productId: command.productId, quantity: command.quantity })
    }
    case 'RemoveCartItem':
      if (!state.items.some((item) => item.productId === command.productId)) {
        return reject(ErrorCodes.NOT_FOUND, `product ${command.productId} is not in cart ${state.id}`)
      }
      return accept({ eventType: 'CartItemRemoved', productId: command.productId })
    case 'CheckOutCart':
      if (state.items.length === 0) {
        return reject(ErrorCodes.INVALID_TRANSITION, `cart ${state.id} is empty: add items before checking out`)
      }
      return accept({
        eventType: 'CartCheckedOut',
        orderId: command.orderId,
        customerId: state.customerId,
        items: state.items,
        totalAmount: state.totalAmount,
        currency: state.currency,
        deliveryAddress: command.deliveryAddress ?? null,
        contact: command.contact ?? null,
      })
    default:
      return assertNever(command)
  }
}

/** The cart as the platform's command handler takes it. */
export const cartDecider: Decider<CartCommand, CartEventData, CartState> = { initialState, decide, evolve }

/** For messages: 12.50 USD. */
export const describeTotal = (cart: Cart) => `${formatAmount(cart.totalAmount)} ${cart.currency}`
