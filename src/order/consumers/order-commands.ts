import { decodeOrderCommand, ORDER_COMMANDS_TOPIC, type OrderCommandMessage } from '../../contracts/order/commands.ts'
import { AppError, ErrorCodes } from '../../platform/errors.ts'
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
 * `order_commands-dlq` with the reason at once, except one race that is not a fault: a customer
 * cancelled the order while the saga's ApproveOrder or ChangeOrderStatus was on its way. The saga
 * learns of the cancel from OrderCancelled and compensates (refunds); the late command is logged
 * and skipped, not left as a dead letter for an operator.
 */
export async function startOrderCommandsConsumer(
  context: Pick<ModuleContext, 'consume' | 'logger'>,
  store: OrderStore,
  groupId = ORDER_COMMANDS_GROUP,
): Promise<Subscription> {
  return context.consume<OrderCommandMessage>({
    groupId,
    batch: true,
    topics: [ORDER_COMMANDS_TOPIC],
    decode: decodeWith(decodeOrderCommand),
    handle: async (message, raw) => {
      let result: Awaited<ReturnType<OrderStore['execute']>>
      try {
        result = await store.execute(message as unknown as OrderCommand, {
          ...causedBy(raw, groupId, message),
          ...(message.expectedVersion !== undefined ? { expectedVersion: message.expectedVersion } : {}),
        })
      } catch (error) {
        if (
          error instanceof AppError &&
          error.code === ErrorCodes.INVALID_TRANSITION &&
          message.commandType !== 'CancelOrder' &&
          (await store.get(message.orderId))?.status === 'CANCELLED'
        ) {
          context.logger.warn(
            { commandId: message.commandId, commandType: message.commandType, orderId: message.orderId },
            `order ${message.orderId} was cancelled before ${message.commandType} reached it; skipped (the saga compensates from OrderCancelled)`,
          )
          return
        }
        throw error
      }
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
