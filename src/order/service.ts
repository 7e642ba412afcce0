import { migrateEventStore } from '../platform/eventstore/event-store.ts'
import { migrateInbox } from '../platform/inbox/inbox.ts'
import type { Logger } from '../platform/logger.ts'
import type { Metrics } from '../platform/metrics.ts'
import { createOutboxSignal, migrateOutbox, type OutboxRelay, startOutboxRelay } from '../platform/outbox/outbox.ts'
import { migrate } from '../platform/sql/migrate.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import type { Subscription, Transport } from '../platform/transport/port.ts'
import type { RetryPolicy } from '../platform/transport/reliable-consumer.ts'
import { createOrderStore, type OrderStore, orderStoreSchema } from './application/order-store.ts'
import { migrateReadModel, type ReadModelProjection, startReadModelProjection } from './application/read-model.ts'
import { startOrderCommandsConsumer } from './consumers/order-commands.ts'

export interface OrderServiceDeps {
  db: SqlDatabase
  transport: Transport
  logger: Logger
  metrics?: Metrics
  retry: RetryPolicy
  clock?: () => Date
  /** Poll interval of the relay and projection for rows written by other processes. */
  pollIntervalMs?: number
  /** Consumer group reading `order_commands` (one per deployment; tests use their own). */
  commandsGroupId?: string
}

export interface OrderService {
  store: OrderStore
  db: SqlDatabase
  relay: OutboxRelay
  projection: ReadModelProjection
  commands: Subscription
  stop(): Promise<void>
}

export async function migrateOrderService(db: SqlDatabase): Promise<void> {
  await migrate(db, [
    migrateEventStore,
    migrateOutbox,
    migrateInbox,
    (tx) => tx.exec(orderStoreSchema),
    migrateReadModel,
  ])
}

/** The order service: its store, outbox relay, read-model projection and command consumer. */
export async function createOrderService(deps: OrderServiceDeps): Promise<OrderService> {
  const logger = deps.logger.child({ service: 'order' })
  await migrateOrderService(deps.db)
  const signal = createOutboxSignal()
  const store = createOrderStore({ db: deps.db, signal, ...(deps.clock ? { clock: deps.clock } : {}) })
  const relay = startOutboxRelay({
    db: deps.db,
    transport: deps.transport,
    signal,
    logger: logger.child({ component: 'outbox-relay' }),
    ...(deps.pollIntervalMs ? { pollIntervalMs: deps.pollIntervalMs } : {}),
  })
  const projection = startReadModelProjection({
    db: deps.db,
    signal,
    logger,
    ...(deps.pollIntervalMs ? { pollIntervalMs: deps.pollIntervalMs } : {}),
  })
  const commands = await startOrderCommandsConsumer({
    transport: deps.transport,
    store,
    logger,
    retry: deps.retry,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
    ...(deps.commandsGroupId ? { groupId: deps.commandsGroupId } : {}),
  })
  return {
    store,
    db: deps.db,
    relay,
    projection,
    commands,
    async stop() {
      await commands.close()
      await relay.stop()
      await projection.stop()
    },
  }
}
