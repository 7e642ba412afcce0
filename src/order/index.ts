import { cartEventsTopic } from '../contracts/cart/events.ts'
import { orderCommandsTopic } from '../contracts/order/commands.ts'
import { ORDER_EVENTS_TOPIC, orderEventsTopic } from '../contracts/order/events.ts'
import type { ReplaySource } from '../platform/es/replay.ts'
import type { ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import type { Subscription } from '../platform/transport/port.ts'
import {
  createOrderStore,
  type OrderStore,
  STREAM_TYPE,
  toOrderEvent,
  toOrderEventMessage,
} from './application/order-store.ts'
import { orderReadModel } from './application/read-model.ts'
import { CART_CHECKOUT_GROUP, startCartCheckoutConsumer } from './consumers/cart-checkout.ts'
import { ORDER_JOURNEY_GROUP, startOrderJourneyConsumer } from './consumers/journey.ts'
import { ORDER_COMMANDS_GROUP, startOrderCommandsConsumer } from './consumers/order-commands.ts'
import { orderRoutes } from './http/routes.ts'

/**
 * The order service (seeds 000, 001 and 004): event-sourced orders, their HTTP API, the read model,
 * the commands it takes on `order_commands`, the carts checked out on `cart-events` (each becomes
 * one order), and in choreography its reactions to the payment, dispatch and delivery events
 * (consumers/journey.ts).
 */
export interface OrderModule {
  store: OrderStore
  /** The consumer turning CartCheckedOut into orders (tests wait on its lag). */
  cartCheckouts: Subscription
}

/** Which stored events replay reads for orders, and the messages they become. */
export const orderReplaySource: ReplaySource = {
  streamType: STREAM_TYPE,
  topics: [ORDER_EVENTS_TOPIC],
  toMessages: (event) => [toOrderEventMessage(toOrderEvent(event), event.metadata)],
}

export function orderModule(
  options: { commandsGroupId?: string; journeyGroupId?: string; cartCheckoutGroupId?: string } = {},
): ServiceModule<OrderModule> {
  return {
    name: 'order',
    migrations: migrationsBeside(import.meta.url),
    topics: [orderEventsTopic, orderCommandsTopic, cartEventsTopic],
    projections: [orderReadModel],
    async start(context) {
      const store = createOrderStore({ db: context.db, onCommitted: context.committed, clock: context.clock })
      await startOrderCommandsConsumer(context, store, options.commandsGroupId ?? ORDER_COMMANDS_GROUP)
      const cartCheckouts = await startCartCheckoutConsumer(
        context,
        store,
        options.cartCheckoutGroupId ?? CART_CHECKOUT_GROUP,
      )
      // Choreography: the order service follows payment, dispatch and delivery itself; in
      // orchestration the Create-Order saga tells it what to do on order_commands instead.
      if (context.config.sagaMode === 'choreography') {
        await startOrderJourneyConsumer(context, store, options.journeyGroupId ?? ORDER_JOURNEY_GROUP)
      }
      return { store, cartCheckouts, routes: orderRoutes({ store, db: context.db }) }
    },
  }
}
