import type { OrderCommandMessage } from '../../contracts/order/commands.ts'
import { ErrorCodes } from '../../platform/errors.ts'
import type { Refusal } from '../../platform/service.ts'
import type { OrderCommand, OrderState } from '../domain/order.ts'

export const ORDER_COMMANDS_GROUP = 'order-service-commands'

/**
 * Seed 000: the order service executes commands that the Create-Order saga orchestrator and the
 * fulfilment services send on `order_commands`. Each command is applied once in effect: its
 * `commandId` goes into the inbox in the same transaction as the events it produced, and its
 * `expectedVersion` is checked against the order. A command that does not decode, or that the
 * domain rejects (a stale expected version included), goes to `order_commands-dlq` with the reason
 * at once, except one race that is not a fault (`whenCommandRefused`).
 */

/** An `order_commands` message as the order's command: the envelope stays with the message. */
export function toOrderCommand(message: OrderCommandMessage): OrderCommand {
  switch (message.commandType) {
    case 'ConfirmOrder':
      return { commandType: 'ConfirmOrder', orderId: message.orderId, paymentId: message.paymentId }
    case 'CancelOrder':
      return { commandType: 'CancelOrder', orderId: message.orderId, reason: message.reason }
    case 'ChangeOrderStatus':
      return {
        commandType: 'ChangeOrderStatus',
        orderId: message.orderId,
        status: message.status,
        ...(message.paymentId !== undefined ? { paymentId: message.paymentId } : {}),
        ...(message.reason !== undefined ? { reason: message.reason } : {}),
      }
  }
}

/**
 * A customer cancelled the order while the saga's ApproveOrder or ChangeOrderStatus was on its way:
 * the saga learns of the cancel from OrderCancelled and compensates (refunds), so the late command
 * is logged and skipped, not left as a dead letter for an operator. Anything else refused is one.
 */
export function whenCommandRefused(error: { code: string }, command: OrderCommand, order: OrderState): Refusal {
  if (error.code === ErrorCodes.INVALID_TRANSITION && command.commandType !== 'CancelOrder') {
    if (order?.status === 'CANCELLED') {
      return {
        action: 'skip',
        why: `order ${command.orderId} was cancelled before ${command.commandType} reached it (the saga compensates from OrderCancelled)`,
        warn: true,
      }
    }
  }
  return { action: 'dead-letter' }
}
