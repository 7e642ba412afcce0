import { decodeOrderCommand, ORDER_COMMANDS_TOPIC, type OrderCommandMessage } from '../../contracts/order/commands.ts'
import { causedBy, decodeWith } from '../../platform/es/consumed.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { Subscription } from '../../platform/transport/port.ts'
import type { OrderStore } from '../application/order-store.ts'
import type { OrderCommand } from '../domain/order.ts'

export const ORDER_COMMANDS_GROUP = 'order-service-commands'

/**
 * Seed 000: the order service executes commands that the Create-Order saga orchestrator and the
 * fulfilment services send on `order_commands`. Each command is applied once in effect: its
 * `commandId` goes into the inbox in the same transaction as the events it produced. A command
 * that does not decode, or that the domain rejects (a stale expected version included), goes to
 * `order_commands-dlq` with the reason at once.
 */
export async function startOrderCommandsConsumer(
  context: Pick<ModuleContext, 'consume' | 'logger'>,
  store: OrderStore,
  groupId = ORDER_COMMANDS_GROUP,
): Promise<Subscription> {
  return context.consume<OrderCommandMessage>({
    groupId,
    topics: [ORDER_COMMANDS_TOPIC],
    decode: decodeWith(decodeOrderCommand),
    handle: async (message, raw) => {
      const result = await store.execute(message as unknown as OrderCommand, {
        ...causedBy(raw, groupId, message),
        ...(message.expectedVersion !== undefined ? { expectedVersion: message.expectedVersion } : {}),
      })
      context.logger.debug(
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
