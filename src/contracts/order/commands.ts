import { z } from 'zod'
import { defineCommandTopic, type TopicMessage } from '../define.ts'
import { commandEnvelopeSchema } from '../envelope.ts'
import { currencyCode, DEFAULT_CURRENCY, decimalAmount } from '../money.ts'
import { contactSchema, deliveryAddressSchema } from '../personal.ts'
import type { ContractRegistry, TopicContract } from '../registry.ts'
import { id, notes, orderEventsTopic, orderItems, reason, requestedOrderStatus } from './events.ts'

/**
 * The order service's commands: the messages it takes on `order_commands` and its HTTP request
 * bodies. Amounts are decimals on the wire and minor units once decoded (see money.ts).
 */

export const ORDER_COMMANDS_TOPIC = 'order_commands'

// ---------------------------------------------------------------------------------------------
// Commands on `order_commands` (seed 000: sent by the Create-Order saga orchestrator and the
// fulfilment services).
// ---------------------------------------------------------------------------------------------

/** The platform's command envelope, with the order id that every order command addresses. */
const orderCommandEnvelope = commandEnvelopeSchema.extend({ orderId: id('orderId') })

export const confirmOrderCommand = orderCommandEnvelope.extend({
  commandType: z.literal('ConfirmOrder'),
  paymentId: id('paymentId'),
})

export const cancelOrderCommand = orderCommandEnvelope.extend({
  commandType: z.literal('CancelOrder'),
  reason,
})

export const changeOrderStatusCommand = orderCommandEnvelope.extend({
  commandType: z.literal('ChangeOrderStatus'),
  status: requestedOrderStatus,
  /** Needed only when `status` is CONFIRMED: a confirmation names its payment. */
  paymentId: id('paymentId').optional(),
  /** Used only when `status` is CANCELLED. */
  reason: reason.optional(),
})

/**
 * `order_commands`. The Create-Order saga orchestrator speaks in approve/reject; they mean
 * confirm/cancel here. The aliases are resolved at the boundary so the domain knows one name per
 * intent.
 */
export const orderCommands = defineCommandTopic({
  topic: ORDER_COMMANDS_TOPIC,
  description:
    'Commands to the order service (seed 000): from the Create-Order saga orchestrator and the fulfilment services. The envelope (commandId, orderId, issuedOn, correlationId, causationId, expectedVersion) and the command’s fields share one JSON object. A command is applied once: its commandId is remembered with the events it produced.',
  key: {
    description: 'the order id: all commands to one order are on one partition, in the order they were sent',
    of: (command) => command.orderId,
  },
  envelope: orderCommandEnvelope,
  messages: {
    ConfirmOrder: {
      schema: confirmOrderCommand,
      aliases: ['ApproveOrder'],
      description: 'Confirm a pending order once it is paid for. The saga’s ApproveOrder means the same.',
    },
    CancelOrder: {
      schema: cancelOrderCommand,
      aliases: ['RejectOrder'],
      description:
        'Cancel an order that has not been dispatched, with the reason. The saga’s RejectOrder means the same.',
    },
    ChangeOrderStatus: {
      schema: changeOrderStatusCommand,
      description:
        'Move an order to a status (any case): CONFIRMED needs a paymentId, CANCELLED takes a reason; DISPATCHED and DELIVERED come from the fulfilment services.',
    },
  },
})

/** A decoded `order_commands` message, aliases resolved. */
export type OrderCommandMessage = TopicMessage<typeof orderCommands>
export type OrderCommandType = OrderCommandMessage['commandType']

export const orderCommandsTopic: TopicContract<'commandType'> = orderCommands.contract

/** Every topic of the order service, for the AsyncAPI document. */
export const orderTopics: readonly TopicContract[] = [orderEventsTopic, orderCommandsTopic]

export const orderCommandRegistry: ContractRegistry<'commandType'> = orderCommands.registry

/** Other names for order commands, by the name they stand for (kept for callers that list them). */
export const ORDER_COMMAND_ALIASES: Readonly<Record<string, OrderCommandType>> = Object.fromEntries(
  orderCommandsTopic.messages.flatMap((c) => (c.aliases ?? []).map((alias) => [alias, c.eventType])),
) as Record<string, OrderCommandType>

/** Decodes an `order_commands` message; anything that fails is a poison message with a reason. */
export const decodeOrderCommand = orderCommands.decode

// ---------------------------------------------------------------------------------------------
// HTTP request bodies. They check shapes only; business rules (a total below its items) are the
// domain's, so they come back as the domain's field-level rejections.
// ---------------------------------------------------------------------------------------------

/**
 * `POST /api/orders`. `totalAmount`, when given, is what the customer is charged and may include
 * fees on top of the items (seed 001 charges 45.99 for 25.98 of pizza); without it the total is the
 * items' subtotal.
 */
export const createOrderBody = z.object({
  customerId: id('customerId'),
  restaurantId: id('restaurantId').optional(),
  items: orderItems,
  totalAmount: decimalAmount.optional(),
  currency: currencyCode.default(DEFAULT_CURRENCY),
  notes: notes.optional(),
  /** Personal: sealed with the customer's key before it is stored or sent (contracts/personal.ts). */
  deliveryAddress: deliveryAddressSchema.optional(),
  /** Personal, as the address. */
  contact: contactSchema.optional(),
})

/**
 * `PATCH /api/orders/:id`. The total is fixed once the order is placed (its payment is requested
 * for it at once): new items must add up to the same total, and `totalAmount`, when given, must be
 * the order's total; anything else is refused with ORDER_TOTAL_FIXED.
 */
export const updateOrderBody = z
  .object({
    items: orderItems.optional(),
    notes: notes.optional(),
    totalAmount: decimalAmount.optional(),
  })
  .refine((body) => body.items !== undefined || body.notes !== undefined, {
    message: 'at least one of items or notes is required',
  })

export const confirmOrderBody = z.object({ paymentId: id('paymentId') })

export const cancelOrderBody = z.object({ reason })

export const changeStatusBody = z.object({
  status: requestedOrderStatus,
  paymentId: id('paymentId').optional(),
  reason: reason.optional(),
})

export type CreateOrderBody = z.output<typeof createOrderBody>
export type UpdateOrderBody = z.output<typeof updateOrderBody>
export type ConfirmOrderBody = z.output<typeof confirmOrderBody>
export type CancelOrderBody = z.output<typeof cancelOrderBody>
export type ChangeStatusBody = z.output<typeof changeStatusBody>
