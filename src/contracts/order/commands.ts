import { z } from 'zod'
import { currencyCode, DEFAULT_CURRENCY, decimalAmount } from '../money.ts'
import { describeIssues, parseJson } from '../registry.ts'
import { id, notes, orderItems, reason, requestedOrderStatus } from './events.ts'

/**
 * The order service's commands: the messages it takes on `order_commands` and its HTTP request
 * bodies. Amounts are decimals on the wire and minor units once decoded (see money.ts).
 */

export const ORDER_COMMANDS_TOPIC = 'order_commands'

// ---------------------------------------------------------------------------------------------
// Commands on `order_commands` (seed 000: sent by the Create-Order saga orchestrator and the
// fulfilment services).
// ---------------------------------------------------------------------------------------------

const commandEnvelope = {
  commandId: z.uuid({ error: 'commandId must be a UUID' }),
  orderId: id('orderId'),
  issuedOn: z.iso.datetime({ offset: false, error: 'issuedOn must be an ISO-8601 UTC timestamp' }),
  correlationId: z.string().min(1).optional(),
  causationId: z.string().min(1).optional(),
  /** The order version the sender last saw; the application layer checks it against the stream. */
  expectedVersion: z.number().int().nonnegative('expectedVersion must be a whole number ≥ 0').optional(),
}

const commandEnvelopeSchema = z.looseObject({
  ...commandEnvelope,
  commandType: z.string({ error: 'commandType must be a string' }).min(1, 'commandType must not be empty'),
})

/**
 * The Create-Order saga orchestrator speaks in approve/reject; they mean confirm/cancel here. The
 * alias is resolved at the boundary so the domain knows one name per intent.
 */
export const ORDER_COMMAND_ALIASES: Readonly<Record<string, OrderCommandType>> = {
  ApproveOrder: 'ConfirmOrder',
  RejectOrder: 'CancelOrder',
}

export const confirmOrderCommand = z.looseObject({
  ...commandEnvelope,
  commandType: z.literal('ConfirmOrder'),
  paymentId: id('paymentId'),
})

export const cancelOrderCommand = z.looseObject({
  ...commandEnvelope,
  commandType: z.literal('CancelOrder'),
  reason,
})

export const changeOrderStatusCommand = z.looseObject({
  ...commandEnvelope,
  commandType: z.literal('ChangeOrderStatus'),
  status: requestedOrderStatus,
  /** Needed only when `status` is CONFIRMED: a confirmation names its payment. */
  paymentId: id('paymentId').optional(),
  /** Used only when `status` is CANCELLED. */
  reason: reason.optional(),
})

export const orderCommandMessage = z.discriminatedUnion('commandType', [
  confirmOrderCommand,
  cancelOrderCommand,
  changeOrderStatusCommand,
])

export type OrderCommandMessage = z.output<typeof orderCommandMessage>
export type OrderCommandType = OrderCommandMessage['commandType']

const commandTypes = new Set<string>(['ConfirmOrder', 'CancelOrder', 'ChangeOrderStatus'] satisfies OrderCommandType[])

export type CommandDecodeResult =
  | { ok: true; command: OrderCommandMessage }
  | {
      ok: false
      reason: 'NOT_JSON' | 'INVALID_ENVELOPE' | 'UNKNOWN_COMMAND_TYPE' | 'INVALID_COMMAND'
      message: string
    }

/** Decodes an `order_commands` message; anything that fails is a poison message with a reason. */
export function decodeOrderCommand(raw: string): CommandDecodeResult {
  const parsed = parseJson(raw)
  if (!parsed.ok) return parsed
  const json = parsed.json
  const envelope = commandEnvelopeSchema.safeParse(json)
  if (!envelope.success) {
    return { ok: false, reason: 'INVALID_ENVELOPE', message: describeIssues(envelope.error.issues) }
  }
  const commandType = ORDER_COMMAND_ALIASES[envelope.data.commandType] ?? envelope.data.commandType
  if (!commandTypes.has(commandType)) {
    return {
      ok: false,
      reason: 'UNKNOWN_COMMAND_TYPE',
      message: `unknown commandType '${envelope.data.commandType}'`,
    }
  }
  const command = orderCommandMessage.safeParse({ ...(json as Record<string, unknown>), commandType })
  if (!command.success) {
    return { ok: false, reason: 'INVALID_COMMAND', message: describeIssues(command.error.issues) }
  }
  return { ok: true, command: command.data }
}

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
})

export const updateOrderBody = z
  .object({
    items: orderItems.optional(),
    notes: notes.optional(),
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
