import { cartEventsTopic } from '../contracts/cart/events.ts'
import type { ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { type CartStore, createCartStore } from './application/cart-store.ts'
import { cartRoutes } from './http/routes.ts'

/**
 * Seed 004's cart service: event-sourced carts over HTTP, their events on `cart-events`. A checked
 * out cart becomes an order in the order service (`src/order/consumers/cart-checkout.ts`).
 */
export interface CartModule {
  store: CartStore
}

export function cartModule(): ServiceModule<CartModule> {
  return {
    name: 'cart',
    migrations: migrationsBeside(import.meta.url),
    topics: [cartEventsTopic],
    async start(context) {
      const store = createCartStore({
        db: context.db,
        onCommitted: context.committed,
        clock: context.clock,
        personalData: context.personalData,
      })
      return { store, routes: cartRoutes({ store }) }
    },
  }
}
