import { shopOrderEventsTopic } from '../contracts/shop/events.ts'
import type { ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { shopRoutes } from './http/routes.ts'

/**
 * Seed 002's cart service (the producer): `POST /create-order` and `PUT /update-order`, publishing
 * ORDER_CREATED and ORDER_STATUS_UPDATED to `orders.events` through the outbox. Named `shop`
 * because `cart` is seed 004's cart service, a different thing (a basket that checks out).
 */
export function shopModule(options: { random?: () => number } = {}): ServiceModule {
  return {
    name: 'shop',
    migrations: migrationsBeside(import.meta.url),
    topics: [shopOrderEventsTopic],
    async start(context) {
      return {
        routes: shopRoutes({
          db: context.db,
          clock: context.clock,
          committed: context.committed,
          ...(options.random ? { random: options.random } : {}),
        }),
      }
    },
  }
}
