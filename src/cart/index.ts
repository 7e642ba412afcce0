import { cartEvents } from '../contracts/cart/events.ts'
import { PERSONAL_FIELDS } from '../contracts/personal.ts'
import { jsonStateTable } from '../platform/es/command-handler.ts'
import { defineService } from '../platform/service.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { type CartCommand, type CartState, cartDecider } from './domain/cart.ts'
import { cartRoutes } from './http/routes.ts'

/**
 * Seed 004's cart service: event-sourced carts over HTTP, their events on `cart-events`. A checked
 * out cart becomes an order in the order service (`src/order/consumers/cart-checkout.ts`). It
 * consumes nothing: its commands come from its routes alone.
 */

export const CART_STREAM_TYPE = 'cart'

export const cartService = defineService({
  name: 'cart',
  migrations: migrationsBeside(import.meta.url),
  aggregate: {
    streamType: CART_STREAM_TYPE,
    streamOf: (command: CartCommand) => command.cartId,
    decider: cartDecider,
    // One row per cart in `carts`, the cart as jsonb.
    state: jsonStateTable<CartState>('carts', () => null),
    publishes: cartEvents,
    // The delivery address and contact given at checkout, sealed with the customer's data key before
    // the event is stored: the store, `carts`, the outbox and cart-events hold them encrypted only.
    personal: {
      fields: { CartCheckedOut: PERSONAL_FIELDS },
      subjectOf: (data) => String(data.customerId),
    },
  },
  start: (_context, { execute, aggregate }) => ({ routes: cartRoutes({ execute, load: aggregate.load }) }),
})

/** The cart service as a module (`SERVICES=cart`). */
export const cartModule = () => cartService
