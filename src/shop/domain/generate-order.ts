import { DEFAULT_CURRENCY } from '../../contracts/money.ts'
import { ORDER_ID_PREFIX, type ShopOrder, type ShopOrderItem } from '../../contracts/shop/events.ts'

/**
 * Seed 002's order generator, pure: the caller brings the randomness and the time. An order of
 * `numberOfItems` lines, each one unit of `ITEM-<n>` at a price from 5.00 to 100.00, for a
 * `CUST-…` customer, in USD, status `created`.
 */

export const MIN_ITEM_PRICE = 500
export const MAX_ITEM_PRICE = 10_000

/** `ORD-<order_id>`, as the seed names orders; an id that already has the prefix keeps it. */
export function shopOrderId(requested: string): string {
  const id = requested.trim()
  return id.startsWith(ORDER_ID_PREFIX) ? id : `${ORDER_ID_PREFIX}${id}`
}

export interface GenerateOrderInput {
  orderId: string
  numberOfItems: number
  /** The time of the request, ISO 8601 UTC. */
  now: string
  /** Uniform in [0, 1), e.g. Math.random. */
  random: () => number
}

export function generateOrder(input: GenerateOrderInput): ShopOrder {
  const items: ShopOrderItem[] = Array.from({ length: input.numberOfItems }, (_, i) => ({
    itemId: `ITEM-${i + 1}`,
    name: `Item ${i + 1}`,
    price: MIN_ITEM_PRICE + Math.floor(input.random() * (MAX_ITEM_PRICE - MIN_ITEM_PRICE + 1)),
    quantity: 1,
  }))
  const customer = Array.from({ length: 8 }, () => Math.floor(input.random() * 36).toString(36))
    .join('')
    .toUpperCase()
  return {
    orderId: shopOrderId(input.orderId),
    customerId: `CUST-${customer}`,
    // Seconds, as the seed shows it: 2024-01-18T12:00:00Z.
    orderDate: input.now.replace(/\.\d+Z$/, 'Z'),
    items,
    totalAmount: items.reduce((sum, item) => sum + item.price * item.quantity, 0),
    currency: DEFAULT_CURRENCY,
    status: 'created',
  }
}
