import { z } from 'zod'
import { type Envelope, envelopeSchema } from './envelope.ts'
import { currencyCode, DEFAULT_CURRENCY, decimalAmount } from './money.ts'
import { type ContractRegistry, createRegistry, describeIssues, type EventContract, parseJson } from './registry.ts'

/**
 * The order service's wire contracts: the events it publishes on `order-events`, the commands it
 * takes on `order_commands`, and its HTTP request bodies.
 *
 * Amounts are decimal numbers on the wire and integer minor units once decoded (see money.ts), so
 * `z.input<…>` is the wire shape and `z.output<…>` the shape the domain works with; `z.encode`
 * goes back from the second to the first.
 */

export const ORDER_EVENTS_TOPIC = 'order-events'
export const ORDER_COMMANDS_TOPIC = 'order_commands'

export const OrderStatuses = {
  PENDING: 'PENDING',
  CONFIRMED: 'CONFIRMED',
  DISPATCHED: 'DISPATCHED',
  DELIVERED: 'DELIVERED',
  CANCELLED: 'CANCELLED',
} as const

export type OrderStatus = (typeof OrderStatuses)[keyof typeof OrderStatuses]

const statusValues = Object.values(OrderStatuses) as [OrderStatus, ...OrderStatus[]]

/** A status in the events this service writes: exactly one of the values above. */
export const orderStatus = z.enum(statusValues, { error: `must be one of ${statusValues.join(', ')}` })

/**
 * A status as other senders write it: seed 002's services send `"confirmed"`, so case is not
 * significant in commands and request bodies. (Events keep the strict form: a transform cannot be
 * encoded back.)
 */
export const requestedOrderStatus = z
  .string({ error: `must be one of ${statusValues.join(', ')}` })
  .transform((s) => s.toUpperCase())
  .pipe(orderStatus)

const id = (name: string) =>
  z
    .string({ error: `${name} must be a string` })
    .trim()
    .min(1, `${name} must not be empty`)
    .max(200)

/**
 * One order line. Items name either a menu item (seed 001, restaurants) or a product (seed 004,
 * shops), never both and never neither, so a consumer always knows what was ordered.
 */
export const orderItem = z
  .object({
    menuItemId: id('menuItemId').optional(),
    productId: id('productId').optional(),
    name: z.string().trim().min(1, 'name must not be empty').max(200).optional(),
    price: decimalAmount,
    quantity: z
      .number({ error: 'quantity must be a number' })
      .int('quantity must be a whole number')
      .min(1, 'quantity must be at least 1')
      .max(10_000, 'quantity must be at most 10000'),
  })
  .superRefine((item, ctx) => {
    if ((item.menuItemId === undefined) === (item.productId === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'exactly one of menuItemId or productId is required',
        path: [item.menuItemId === undefined ? 'menuItemId' : 'productId'],
      })
    }
  })

export type OrderItem = z.output<typeof orderItem>
export type OrderItemWire = z.input<typeof orderItem>

const orderItems = z.array(orderItem, { error: 'items must be a list' }).min(1, 'items must not be empty').max(100)
const notes = z.string({ error: 'notes must be a string' }).max(1000, 'notes must be at most 1000 characters')
const reason = z
  .string({ error: 'reason must be a string' })
  .trim()
  .min(1, 'reason must not be empty')
  .max(500, 'reason must be at most 500 characters')

// ---------------------------------------------------------------------------------------------
// Events on `order-events`. Each is the event's own data plus its `eventType`; the wire schema
// adds the envelope. The data schemas are kept apart so the domain can name event data without the
// envelope (which the application layer adds: ids and time come from outside the domain).
// ---------------------------------------------------------------------------------------------

export const orderCreatedData = z.object({
  eventType: z.literal('OrderCreated'),
  customerId: id('customerId'),
  restaurantId: id('restaurantId').optional(),
  items: orderItems,
  subtotal: decimalAmount,
  totalAmount: decimalAmount,
  currency: currencyCode,
  notes: notes.optional(),
})

export const orderUpdatedData = z.object({
  eventType: z.literal('OrderUpdated'),
  items: orderItems.optional(),
  notes: notes.optional(),
  subtotal: decimalAmount,
  totalAmount: decimalAmount,
})

export const orderConfirmedData = z.object({
  eventType: z.literal('OrderConfirmed'),
  paymentId: id('paymentId'),
})

export const orderCancelledData = z.object({
  eventType: z.literal('OrderCancelled'),
  reason,
})

export const orderStatusChangedData = z.object({
  eventType: z.literal('OrderStatusChanged'),
  from: orderStatus,
  to: orderStatus,
})

export type OrderCreated = z.output<typeof orderCreatedData>
export type OrderUpdated = z.output<typeof orderUpdatedData>
export type OrderConfirmed = z.output<typeof orderConfirmedData>
export type OrderCancelled = z.output<typeof orderCancelledData>
export type OrderStatusChanged = z.output<typeof orderStatusChangedData>

/** An order event's data: what the domain decides and evolves from, amounts in minor units. */
export type OrderEventData = OrderCreated | OrderUpdated | OrderConfirmed | OrderCancelled | OrderStatusChanged
export type OrderEventType = OrderEventData['eventType']

/** An order event as stored and published: envelope plus data. */
export type OrderEvent = OrderEventData & Envelope

const eventSchema = <Shape extends z.ZodRawShape>(data: z.ZodObject<Shape>) => envelopeSchema.extend(data.shape)

export const orderCreatedEvent = eventSchema(orderCreatedData)
export const orderUpdatedEvent = eventSchema(orderUpdatedData)
export const orderConfirmedEvent = eventSchema(orderConfirmedData)
export const orderCancelledEvent = eventSchema(orderCancelledData)
export const orderStatusChangedEvent = eventSchema(orderStatusChangedData)

/** One schema for any order event, for encoding (`z.encode`) and typing. */
export const orderEvent = z.discriminatedUnion('eventType', [
  orderCreatedEvent,
  orderUpdatedEvent,
  orderConfirmedEvent,
  orderCancelledEvent,
  orderStatusChangedEvent,
])

/** The wire shape of an order event (decimal amounts). */
export type OrderEventWire = z.input<typeof orderEvent>

export const orderEventContracts: EventContract[] = [
  { eventType: 'OrderCreated', versions: { 1: orderCreatedEvent } },
  { eventType: 'OrderUpdated', versions: { 1: orderUpdatedEvent } },
  { eventType: 'OrderConfirmed', versions: { 1: orderConfirmedEvent } },
  { eventType: 'OrderCancelled', versions: { 1: orderCancelledEvent } },
  { eventType: 'OrderStatusChanged', versions: { 1: orderStatusChangedEvent } },
]

/** The contracts of the `order-events` topic. */
export const orderEventRegistry: ContractRegistry = createRegistry(orderEventContracts)

/**
 * Decodes an `order-events` message into a typed event (amounts in minor units). The registry has
 * validated it against its eventType's schema, which is what makes the narrowing sound.
 */
export function decodeOrderEvent(
  raw: string,
): { ok: true; event: OrderEvent } | Extract<ReturnType<ContractRegistry['decode']>, { ok: false }> {
  const result = orderEventRegistry.decode(raw)
  return result.ok ? { ok: true, event: result.event as unknown as OrderEvent } : result
}

/** The wire form of an order event: decimal amounts, ready for `JSON.stringify`. */
export function encodeOrderEvent(event: OrderEvent): OrderEventWire {
  return z.encode(orderEvent, event as z.output<typeof orderEvent>)
}

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
