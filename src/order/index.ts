import { Counter, Gauge } from 'prom-client'
import { cartEvents } from '../contracts/cart/events.ts'
import { deliveryEvents } from '../contracts/delivery/events.ts'
import { dispatchEvents } from '../contracts/dispatch/events.ts'
import { orderCommands } from '../contracts/order/commands.ts'
import { ORDER_EVENTS_TOPIC, type OrderEvent, type OrderEventData, orderEvents } from '../contracts/order/events.ts'
import { paymentEvents } from '../contracts/payment/events.ts'
import { withPersonalFields } from '../contracts/personal.ts'
import { toDomainEvent } from '../platform/es/command-handler.ts'
import { eventMessage } from '../platform/es/messages.ts'
import type { ReplaySource } from '../platform/es/replay.ts'
import { encodeAsStored } from '../platform/es/upcast-stored.ts'
import type { ModuleContext, StartedModule } from '../platform/module.ts'
import { accept, type DeclaredService, defineService, react, type ServiceParts } from '../platform/service.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { trackBrokerHealth } from '../platform/transport/broker-health.ts'
import { inChoreography, journeySettings } from '../saga/settings.ts'
import {
  journeyDeadlines,
  PARKED_JOURNEYS,
  startJourneyDeadlines,
  stepTimeoutsFrom,
} from './application/journey-deadlines.ts'
import { journeyDurations } from './application/journey-duration.ts'
import {
  type OrderStore,
  orderAggregate,
  orderStoreOver,
  STREAM_TYPE,
  toOrderEvent,
  toOrderEventMessage,
} from './application/order-store.ts'
import { orderReadModel } from './application/read-model.ts'
import { CART_CHECKOUT_GROUP, checkoutCommandFor, whenCheckoutRefused } from './consumers/cart-checkout.ts'
import { type JourneyEvent, ORDER_JOURNEY_GROUP, orderCommandFor, whenJourneyRefused } from './consumers/journey.ts'
import { ORDER_COMMANDS_GROUP, toOrderCommand, whenCommandRefused } from './consumers/order-commands.ts'
import type { OrderCommand, OrderState } from './domain/order.ts'
import { orderRoutes } from './http/routes.ts'

/**
 * The order service (seeds 000, 001 and 004): event-sourced orders, their HTTP API, the read model,
 * the commands it takes on `order_commands`, the carts checked out on `cart-events` (each becomes
 * one order), and in choreography its reactions to the payment, dispatch and delivery events
 * (consumers/journey.ts). What it takes in is declared; the platform runs the consumers.
 */

/**
 * Which stored events replay reads for orders, and the messages they become: each event as the
 * newest version of its type (an older one through its upcasters), the one shape today's consumers
 * read.
 */
export const orderReplaySource: ReplaySource = {
  streamType: STREAM_TYPE,
  topics: [ORDER_EVENTS_TOPIC],
  toMessages: (event) => [toOrderEventMessage(toOrderEvent(event), event.metadata)],
}

/**
 * The same events exactly as they were first published: each in the schema version it was stored
 * with (`replay --as-stored`), for a consumer that reads only that version.
 */
export const orderReplaySourceAsStored: ReplaySource = {
  streamType: STREAM_TYPE,
  topics: [ORDER_EVENTS_TOPIC],
  toMessages: (stored) => {
    const event = toDomainEvent(stored) as OrderEvent
    return [
      eventMessage({
        topic: ORDER_EVENTS_TOPIC,
        key: event.aggregateId,
        body: encodeAsStored(orderEvents, withPersonalFieldsAsStored(event)),
        event,
        metadata: stored.metadata,
      }),
    ]
  },
}

/** Version 1 of OrderCreated had no personal fields; a later version's need their null. */
const withPersonalFieldsAsStored = (event: OrderEvent): OrderEvent =>
  event.schemaVersion >= 2 ? (withPersonalFields(event) as OrderEvent) : event

export function orderModule(
  options: { commandsGroupId?: string; journeyGroupId?: string; cartCheckoutGroupId?: string } = {},
): DeclaredService<OrderModule> {
  return defineService({
    name: 'order',
    migrations: migrationsBeside(import.meta.url),
    settings: [journeySettings],
    aggregate: orderAggregate,
    // An order's commands and events are handled in order: one that fails for good holds the
    // order's later ones until an operator redrives or discards it.
    parkKeys: true,
    intake: [
      accept(orderCommands, {
        group: options.commandsGroupId ?? ORDER_COMMANDS_GROUP,
        toCommand: toOrderCommand,
        whenRefused: whenCommandRefused,
      }),
      react(cartEvents, {
        group: options.cartCheckoutGroupId ?? CART_CHECKOUT_GROUP,
        commandFor: checkoutCommandFor,
        whenRefused: whenCheckoutRefused,
      }),
      // Choreography: the order service follows payment, dispatch and delivery itself; in
      // orchestration the Create-Order saga tells it what to do on order_commands instead.
      react<JourneyEvent, OrderCommand, OrderState>([paymentEvents, dispatchEvents, deliveryEvents], {
        group: options.journeyGroupId ?? ORDER_JOURNEY_GROUP,
        when: inChoreography,
        // A capture is checked against the order's total, so that one is read first.
        commandFor: async (event, { load }) =>
          orderCommandFor(
            event,
            event.eventType === 'PaymentProcessed' ? ((await load(event.orderId)) ?? undefined) : undefined,
          ),
        whenRefused: whenJourneyRefused,
      }),
    ],
    projections: [orderReadModel],
    // Choreography: every step the order waits for has the saga's timeout (domain/journey-deadlines.ts).
    // In both modes, a journey that ends is timed (orderflow_journey_duration_seconds).
    within: ({ context }) => {
      const journey = context.settings.get(journeySettings)
      const deadlines = journey.mode === 'choreography' ? journeyDeadlines(stepTimeoutsFrom(journey)) : undefined
      const timeJourney = journeyDurations(context)
      return (result, command, metadata) => {
        timeJourney(result)
        return deadlines ? deadlines(result, command, metadata) : []
      }
    },
    start: (context, { aggregate, execute }): StartedModule & { store: OrderStore } => {
      const store = orderStoreOver(aggregate, context.db)
      const routes = orderRoutes({ store, db: context.db, personalData: context.personalData })
      const journey = context.settings.get(journeySettings)
      if (journey.mode !== 'choreography') return { store, routes }
      const { parked } = journeyMetrics(context)
      const broker = trackBrokerHealth(context.transport)
      const deadlines = startJourneyDeadlines({
        db: context.db,
        logger: context.logger,
        pollIntervalMs: context.platform.schedulerPollIntervalMs,
        timeoutsMs: stepTimeoutsFrom(journey),
        lockOrder: async (tx, orderId) => (await orderAggregate.state.load(tx, orderId, { lock: true })).state,
        cancel: async (orderId, reason, metadata) => {
          await execute({ commandType: 'CancelOrder', orderId, reason }, metadata)
        },
        troubleFreeForMs: () => broker.troubleFreeForMs(),
        committed: context.committed,
        onParked: (step) => parked.inc({ step }),
      })
      return {
        store,
        routes,
        stop: async () => {
          broker.stop()
          await deadlines.stop()
        },
      }
    },
  })
}

function journeyMetrics(context: ModuleContext) {
  const registry = context.metrics.registry
  const parked =
    (registry.getSingleMetric('orderflow_journeys_parked_total') as Counter<'step'> | undefined) ??
    new Counter({
      name: 'orderflow_journeys_parked_total',
      help: 'Choreography: orders whose dispatch or delivery never answered, parked for an operator by this process',
      labelNames: ['step'],
      registers: [registry],
    })
  if (!registry.getSingleMetric('orderflow_journeys_parked')) {
    const db = context.db
    new Gauge({
      name: 'orderflow_journeys_parked',
      help: 'Choreography: orders parked and waiting for an operator (all processes: read from the database)',
      registers: [registry],
      async collect() {
        try {
          const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM (${PARKED_JOURNEYS}) AS p`)
          this.set(Number(rows[0]?.n ?? 0))
        } catch {
          // The database is away: /metrics still answers; /health reports the database.
        }
      },
    })
  }
  return { parked }
}

/** What the order module gives the app and the tests besides its routes. */
export interface OrderModule extends ServiceParts<OrderCommand, OrderEventData, OrderState> {
  store: OrderStore
}
