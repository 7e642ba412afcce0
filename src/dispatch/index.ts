import { dispatchCommandsTopic } from '../contracts/dispatch/commands.ts'
import { dispatchEventsTopic } from '../contracts/dispatch/events.ts'
import { orderEventsTopic } from '../contracts/order/events.ts'
import type { ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { createDispatchStore, type DispatchStore } from './application/dispatch-store.ts'
import { consumeDispatchCommands, consumeOrderEventsForDispatch } from './consumers/dispatch-consumers.ts'

/**
 * The dispatch service (seed 004): ships paid and confirmed orders once, with the shipping cost,
 * on `dispatch-events`. Orchestration: DispatchOrder from the saga; choreography: `order-events`.
 */
export interface DispatchModule {
  store: DispatchStore
}

export function dispatchModule(): ServiceModule<DispatchModule> {
  return {
    name: 'dispatch',
    migrations: migrationsBeside(import.meta.url),
    topics: [dispatchEventsTopic, dispatchCommandsTopic, orderEventsTopic],
    async start(context) {
      const store = createDispatchStore({ db: context.db, onCommitted: context.committed, clock: context.clock })
      await consumeDispatchCommands(context, store)
      if (context.config.sagaMode === 'choreography') await consumeOrderEventsForDispatch(context, store)
      return { store }
    },
  }
}
