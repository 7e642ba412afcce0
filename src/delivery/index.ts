import { deliveryCommandsTopic } from '../contracts/delivery/commands.ts'
import { deliveryEventsTopic } from '../contracts/delivery/events.ts'
import { dispatchEventsTopic } from '../contracts/dispatch/events.ts'
import { startTimerPoller } from '../platform/es/scheduler.ts'
import type { ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { createDeliveryStore, DELIVERY_DUE_TIMER, type DeliveryStore } from './application/delivery-store.ts'
import { consumeDeliveryCommands, consumeDispatchEventsForDelivery } from './consumers/delivery-consumers.ts'

/**
 * The delivery service (seed 004): a dispatched order is scheduled for DELIVERY_DELAY_MS and
 * delivered when due (OrderDelivered on `delivery-events`). The delay is a durable timer, not a
 * sleep: no consumer waits, and a restart finds scheduled deliveries again.
 */
export interface DeliveryModule {
  store: DeliveryStore
}

export function deliveryModule(): ServiceModule<DeliveryModule> {
  return {
    name: 'delivery',
    migrations: migrationsBeside(import.meta.url),
    topics: [deliveryEventsTopic, deliveryCommandsTopic, dispatchEventsTopic],
    async start(context) {
      const delayMs = context.config.delivery.delayMs
      let wake: (inMs: number) => void = () => {}
      const store = createDeliveryStore({
        db: context.db,
        onCommitted: context.committed,
        onScheduled: (delayMs) => context.afterCommit(() => wake(delayMs)),
        clock: context.clock,
      })
      const timers = startTimerPoller<{ orderId: string; correlationId?: string; traceparent?: string }>({
        db: context.db,
        kind: DELIVERY_DUE_TIMER,
        logger: context.logger.child({ component: 'delivery-timer' }),
        pollIntervalMs: context.config.schedulerPollIntervalMs,
        // DeliverOrder is idempotent (a second one emits nothing), so a timer fired twice is harmless.
        fire: async (timer) => {
          const { orderId, correlationId, traceparent } = timer.payload
          await store.execute(
            { commandType: 'DeliverOrder', orderId },
            { ...(correlationId ? { correlationId } : {}), ...(traceparent ? { traceparent } : {}) },
          )
        },
      })
      wake = (inMs) => timers.wake(inMs)
      try {
        await consumeDeliveryCommands(context, store, delayMs)
        if (context.config.sagaMode === 'choreography') await consumeDispatchEventsForDelivery(context, store, delayMs)
      } catch (error) {
        await timers.stop()
        throw error
      }
      return { store, stop: () => timers.stop() }
    },
  }
}
