import { shopOrderEventsTopic } from '../contracts/shop/events.ts'
import type { ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { type TopicReader, topicReaderFor } from '../platform/transport/topic-reader.ts'
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
  /** Default: the reader for the configured transport (the broker, or the embedded log). */
  topicReader?: TopicReader
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
          topics: options.topicReader ?? topicReaderFor(context.platform, context.db),
          topicReadTimeoutMs: options.topicReadTimeoutMs ?? 10_000,
        }),
      }
    },
  }
}
