import { shopOrderEventsTopic } from '../contracts/shop/events.ts'
import type { ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { createOrderDetailsStore, type OrderDetailsStore } from './application/order-details-store.ts'
import { ORDER_DETAILS_GROUP, startOrderEventsConsumer } from './consumers/order-events.ts'
import { orderDetailsRoutes } from './http/routes.ts'

/**
 * Seed 002's order service (the consumer): reads `orders.events` and serves `GET /order-details`
 * and `GET /getAllOrderIdsFromTopic`. Named `order-details` for what it serves, because `order` is
 * the event-sourced order service of seeds 000, 001 and 004.
 */
export interface OrderDetailsModule {
  store: OrderDetailsStore
}

export interface OrderDetailsOptions {
  groupId?: string
  /** How long `GET /getAllOrderIdsFromTopic` may read before it answers with what it read. */
  topicReadTimeoutMs?: number
}

export function orderDetailsModule(options: OrderDetailsOptions = {}): ServiceModule<OrderDetailsModule> {
  return {
    name: 'order-details',
    migrations: migrationsBeside(import.meta.url),
    topics: [shopOrderEventsTopic],
    async start(context) {
      const groupId = options.groupId ?? ORDER_DETAILS_GROUP
      const store = createOrderDetailsStore(context.db, groupId)
      await startOrderEventsConsumer(context, store, groupId)
      return {
        store,
        routes: orderDetailsRoutes({
          store,
          topics: context.transport,
          topicReadTimeoutMs: options.topicReadTimeoutMs ?? 10_000,
        }),
      }
    },
  }
}
