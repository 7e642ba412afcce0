import { decodeOrderEvent, ORDER_EVENTS_TOPIC, type OrderEvent } from '../../contracts/order/events.ts'
import {
  decodePaymentCommand,
  PAYMENT_COMMANDS_TOPIC,
  type PaymentCommandBody,
  type PaymentCommandMessage,
} from '../../contracts/payment/commands.ts'
import type { CommandMetadata } from '../../platform/es/command-handler.ts'
import { causedBy, decodeWith } from '../../platform/es/consumed.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { Subscription } from '../../platform/transport/port.ts'
import type { PaymentResult, PaymentStore } from '../application/payment-store.ts'
import { paymentCommandFor } from '../domain/payment.ts'

/** Orchestration: the Create-Order saga's commands on `payment_commands`. */
export const PAYMENT_COMMANDS_GROUP = 'payment-service-commands'
/** Choreography (seed 004): the payment service reads `order-events` as group `payment-service`. */
export const PAYMENT_ORDER_EVENTS_GROUP = 'payment-service'

type Context = Pick<ModuleContext, 'consume' | 'logger'>

async function apply(
  store: PaymentStore,
  command: PaymentCommandBody,
  metadata: CommandMetadata,
  context: Context,
): Promise<PaymentResult> {
  const result =
    command.commandType === 'ProcessPayment'
      ? await store.process(command, metadata)
      : await store.refund(command, metadata)
  context.logger.debug(
    {
      orderId: command.orderId,
      commandType: command.commandType,
      duplicate: result.duplicate,
      events: result.events.map((e) => e.eventType),
    },
    result.duplicate
      ? `${command.commandType} for order ${command.orderId} was already handled; skipped`
      : `applied ${command.commandType} to the payment of order ${command.orderId}`,
  )
  return result
}

/**
 * Commands from the saga. A command that does not decode, or that the domain rejects (another
 * amount for a payment already decided), goes to `payment_commands-dlq` with the reason.
 */
export function consumePaymentCommands(context: Context, store: PaymentStore, groupId = PAYMENT_COMMANDS_GROUP) {
  return context.consume<PaymentCommandMessage>({
    groupId,
    topics: [PAYMENT_COMMANDS_TOPIC],
    decode: decodeWith(decodePaymentCommand),
    handle: async (message, raw) => {
      const body: PaymentCommandBody =
        message.commandType === 'ProcessPayment'
          ? {
              commandType: 'ProcessPayment',
              orderId: message.orderId,
              customerId: message.customerId,
              amount: message.amount,
              currency: message.currency,
            }
          : { commandType: 'RefundPayment', orderId: message.orderId, reason: message.reason }
      await apply(store, body, causedBy(raw, groupId, message), context)
    },
  })
}

/**
 * Choreography: OrderCreated → ProcessPayment, OrderCancelled → RefundPayment (payment.ts's
 * `paymentCommandFor`), each applied once: the event id goes into the inbox.
 */
export function consumeOrderEventsForPayment(
  context: Context,
  store: PaymentStore,
  groupId = PAYMENT_ORDER_EVENTS_GROUP,
): Promise<Subscription> {
  return context.consume<OrderEvent>({
    groupId,
    topics: [ORDER_EVENTS_TOPIC],
    decode: decodeWith(decodeOrderEvent),
    handle: async (event, raw) => {
      const command = paymentCommandFor(event)
      if (!command) return
      await apply(store, command, causedBy(raw, groupId, event), context)
    },
  })
}
