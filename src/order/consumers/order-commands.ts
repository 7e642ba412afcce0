import { HeaderNames } from '../../contracts/envelope.ts'
import { decodeOrderCommand, ORDER_COMMANDS_TOPIC, type OrderCommandMessage } from '../../contracts/order/commands.ts'
import type { Logger } from '../../platform/logger.ts'
import type { Metrics } from '../../platform/metrics.ts'
import type { Subscription, Transport } from '../../platform/transport/port.ts'
import { type RetryPolicy, startReliableConsumer } from '../../platform/transport/reliable-consumer.ts'
import type { OrderStore } from '../application/order-store.ts'
import type { OrderCommand } from '../domain/order.ts'

export const ORDER_COMMANDS_GROUP = 'order-service-commands'

/**
 * Seed 000: the order service executes commands that the Create-Order saga orchestrator and the
 * fulfilment services send on `order_commands`. Each command is applied once in effect: its
 * `commandId` goes into the inbox in the same transaction as the events it produced. A command
 * that does not decode, or that the domain rejects, goes to `order_commands-dlq` with the reason.
 */
export async function startOrderCommandsConsumer(deps: {
  transport: Transport
  store: OrderStore
  logger: Logger
  metrics?: Metrics
  retry: RetryPolicy
  groupId?: string
}): Promise<Subscription> {
  const groupId = deps.groupId ?? ORDER_COMMANDS_GROUP
  return startReliableConsumer<OrderCommandMessage>({
    transport: deps.transport,
    groupId,
    topics: [ORDER_COMMANDS_TOPIC],
    retry: deps.retry,
    logger: deps.logger.child({ consumer: groupId }),
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
    decode: (message) => {
      const decoded = decodeOrderCommand(message.value)
      return decoded.ok ? { ok: true, value: decoded.command } : decoded
    },
    handle: async (message, raw) => {
      const result = await deps.store.execute(message as unknown as OrderCommand, {
        correlationId: message.correlationId ?? message.commandId,
        causationId: message.commandId,
        ...(message.expectedVersion !== undefined ? { expectedVersion: message.expectedVersion } : {}),
        ...(raw.headers[HeaderNames.traceparent] ? { traceparent: raw.headers[HeaderNames.traceparent] } : {}),
        inbox: { consumer: groupId, messageId: message.commandId },
      })
      deps.logger.info(
        {
          commandId: message.commandId,
          commandType: message.commandType,
          orderId: message.orderId,
          duplicate: result.duplicate,
          events: result.events.map((e) => e.eventType),
        },
        result.duplicate
          ? `command ${message.commandId} was already applied; skipped`
          : `applied ${message.commandType} to order ${message.orderId}`,
      )
    },
  })
}
