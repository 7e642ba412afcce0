import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { v7 as uuidv7 } from 'uuid'
import { z } from 'zod'
import { toDecimal } from '../../contracts/money.ts'
import {
  cancelOrderBody,
  changeStatusBody,
  confirmOrderBody,
  createOrderBody,
  updateOrderBody,
} from '../../contracts/order/commands.ts'
import { encodeOrderEvent, orderStatus, requestedOrderStatus } from '../../contracts/order/events.ts'
import {
  type Contact,
  contactSchema,
  type DeliveryAddress,
  deliveryAddressSchema,
  ERASED,
  PERSONAL_FIELDS,
  type Personal,
} from '../../contracts/personal.ts'
import { notFound } from '../../platform/errors.ts'
import { type AuthRequirement, customerScope, mayAccess } from '../../platform/http/auth.ts'
import { requestHash, respondOnce, type StoredResponse } from '../../platform/http/idempotency.ts'
import { documentRoute, problemResponses, responseHeaders } from '../../platform/http/openapi.ts'
import {
  clientOf,
  commandHeaders,
  commandMetadata,
  createHeaders,
  etagOf as versionTag,
} from '../../platform/http/request.ts'
import type { PersonalData } from '../../platform/personal-data/personal-data.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import { type OrderStore, toOrderEvent } from '../application/order-store.ts'
import { decodeCursor, queryOrders } from '../application/read-model.ts'
import type { Order, OrderCommand } from '../domain/order.ts'

/**
 * The order service's HTTP API: commands in (create, update, confirm, cancel, change status), the
 * order's current state, its history and a paginated list out.
 *
 * - Request bodies are the contracts' zod schemas: amounts are decimals on the wire (45.99) and
 *   minor units in the domain. Invalid input is a 400 problem naming each field (`items.0.price`).
 * - Every response carrying an order has `ETag: "<version>"`; updates take it back in `If-Match`
 *   and answer 409 VERSION_CONFLICT if the order moved on.
 * - `GET /api/orders/:id` reads the write side (read-your-writes); the list reads the read model,
 *   which follows a moment behind.
 * - With authentication on, a customer reaches only their own orders: the list is theirs, another
 *   customer's order answers 404 exactly like a missing one (ids cannot be probed), and a new
 *   order's customerId is the token's subject whatever the body says. Services and operators reach
 *   every order; confirm and status changes are for services only.
 */

export interface OrderRoutesDeps {
  store: OrderStore
  db: SqlDatabase
  /** Opens the order's personal fields for the reader (they are stored and kept sealed). */
  personalData: Pick<PersonalData, 'openFields'>
}

export const DEFAULT_PAGE_SIZE = 20
export const MAX_PAGE_SIZE = 100

const amount = z.number().nonnegative().describe('Decimal amount, e.g. 12.99')

const orderItemView = z.object({
  menuItemId: z.string().optional(),
  productId: z.string().optional(),
  name: z.string().optional(),
  price: amount,
  quantity: z.number().int(),
})

/** An order as the API shows it: the domain's `Order` with decimal amounts. */
export const orderView = z.object({
  id: z.string(),
  version: z.number().int().describe('Increases with every change; the ETag'),
  status: orderStatus,
  customerId: z.string(),
  restaurantId: z.string().nullable(),
  items: z.array(orderItemView),
  subtotal: amount.describe("The items' prices times quantities"),
  totalAmount: amount.describe('What the customer is charged: the subtotal plus any fees'),
  currency: z.string(),
  notes: z.string().nullable(),
  paymentId: z.string().nullable(),
  cancellationReason: z.string().nullable(),
  deliveryAddress: z
    .union([deliveryAddressSchema, z.literal(ERASED)])
    .nullable()
    .describe(
      `Personal: stored sealed, opened for the reader; "${ERASED}" once the customer's personal data was erased`,
    ),
  contact: z
    .union([contactSchema, z.literal(ERASED)])
    .nullable()
    .describe(`Personal, as deliveryAddress; "${ERASED}" once erased`),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
})

export type OrderView = z.output<typeof orderView>

/** An order's view as kept (an idempotent response): its personal fields still sealed. */
export type SealedOrderView = Omit<OrderView, 'deliveryAddress' | 'contact'> & {
  deliveryAddress: Personal<DeliveryAddress>
  contact: Personal<Contact>
}

export function toOrderView(order: Order): SealedOrderView {
  return {
    id: order.id,
    version: order.version,
    status: order.status,
    customerId: order.customerId,
    restaurantId: order.restaurantId,
    items: order.items.map((item) => ({ ...item, price: toDecimal(item.price) })),
    subtotal: toDecimal(order.subtotal),
    totalAmount: toDecimal(order.totalAmount),
    currency: order.currency,
    notes: order.notes,
    paymentId: order.paymentId,
    cancellationReason: order.cancellationReason,
    deliveryAddress: order.deliveryAddress ?? null,
    contact: order.contact ?? null,
    createdAt: order.createdAt,
    updatedAt: order.updatedAt,
  }
}

const orderPage = z.object({
  orders: z.array(orderView),
  nextCursor: z.string().nullable().describe('Pass as `cursor` for the next page; null on the last page'),
})

/** An event as published on `order-events` (seed 001's shape): the envelope and the event's fields. */
const eventView = z
  .looseObject({
    eventId: z.string(),
    aggregateId: z.string(),
    occurredOn: z.iso.datetime(),
    version: z.number().int(),
    eventType: z.string(),
    schemaVersion: z.number().int(),
    correlationId: z.string().optional(),
    causationId: z.string().optional(),
  })
  .describe("The envelope plus the event's own fields (amounts as decimals)")

const historyView = z.object({ orderId: z.string(), events: z.array(eventView) })

const orderParams = z.object({ id: z.string().min(1).max(200, 'id must be at most 200 characters') })

const pageSizeMessage = `must be a whole number from 1 to ${MAX_PAGE_SIZE}`

const listQuery = z.object({
  customerId: z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters').optional(),
  status: requestedOrderStatus
    .optional()
    .describe('PENDING, CONFIRMED, DISPATCHED, DELIVERED or CANCELLED (case-insensitive)'),
  limit: z.coerce
    .number({ error: pageSizeMessage })
    .int(pageSizeMessage)
    .min(1, pageSizeMessage)
    .max(MAX_PAGE_SIZE, pageSizeMessage)
    .default(DEFAULT_PAGE_SIZE),
  cursor: z
    .string()
    .transform((value, ctx) => {
      const position = decodeCursor(value)
      if (position) return position
      ctx.addIssue({ code: 'custom', message: 'is not a cursor this API returned' })
      return z.NEVER
    })
    .optional()
    .describe('nextCursor of the previous page'),
})

const etagOf = (order: Order) => versionTag(order.version)

function createdResponse(order: Order): StoredResponse {
  return {
    status: 201,
    headers: { location: `/api/orders/${encodeURIComponent(order.id)}`, etag: etagOf(order) },
    body: toOrderView(order),
  }
}

export function orderRoutes(deps: OrderRoutesDeps): FastifyPluginAsync {
  /**
   * Another customer's order is NOT_FOUND before anything is read or changed. An order's customer
   * never changes, so checking before the command leaves no window. Unscoped callers skip the read.
   */
  const requireVisible = async (request: FastifyRequest, orderId: string) => {
    const scope = customerScope(request)
    if (scope === undefined) return
    const order = await deps.store.get(orderId)
    if (!order || order.customerId !== scope) throw notFound('order', orderId)
  }
  /** The view its reader gets: personal fields opened (or ERASED), never kept so. */
  const opened = (view: SealedOrderView) =>
    deps.personalData.openFields(view as Record<string, unknown>, PERSONAL_FIELDS) as Promise<OrderView>
  const sendOrder = async (reply: FastifyReply, order: Order) =>
    reply.header('etag', etagOf(order)).send(await opened(toOrderView(order)))
  const sendStored = async (reply: FastifyReply, response: StoredResponse, replayed: boolean) => {
    reply.status(response.status).headers(response.headers)
    if (replayed) reply.header('idempotent-replayed', 'true')
    const body = response.status === 201 ? await opened(response.body as SealedOrderView) : response.body
    return reply.send(body)
  }
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    const tags = ['orders']
    const orderResponse = { 200: orderView.describe('The order; ETag is its version') }

    app.post(
      '/api/orders',
      {
        schema: {
          summary: 'Create an order',
          operationId: 'createOrder',
          tags,
          headers: createHeaders,
          body: createOrderBody,
          response: {
            201: orderView.describe('The order, created (or, for a replayed Idempotency-Key, as first created)'),
            400: problemResponses[400],
            422: problemResponses[422],
            503: problemResponses[503],
          },
        },
        config: {
          auth: 'customer',
          swaggerTransform: documentRoute({
            201: { location: responseHeaders.location, etag: responseHeaders.etag },
          }),
        },
      },
      async (request, reply) => {
        const orderId = `order-${uuidv7()}`
        // The customer is who the token says, not what the body says.
        const scope = customerScope(request)
        const body = scope === undefined ? request.body : { ...request.body, customerId: scope }
        const command: OrderCommand = { commandType: 'CreateOrder', orderId, ...body }
        const metadata = commandMetadata(request)
        const key = request.headers['idempotency-key']
        if (key === undefined) {
          const result = await deps.store.execute(command, metadata)
          return sendStored(reply, createdResponse(result.order), false)
        }
        const { response, replayed } = await respondOnce(
          deps.db,
          {
            scope: 'order',
            client: clientOf(request),
            key,
            hash: requestHash({ method: 'POST', path: '/api/orders', body }),
          },
          async (remember) => {
            const { extra } = await deps.store.executeWith(command, metadata, async (tx, result) => {
              const created = createdResponse(result.order)
              await remember(tx, created)
              return created
            })
            return extra
          },
        )
        return sendStored(reply, response, replayed)
      },
    )

    app.get(
      '/api/orders',
      {
        schema: {
          summary: 'List orders, newest first',
          description:
            'From the read model, which follows the writes by a moment: an order just created may take a moment to appear.',
          operationId: 'listOrders',
          tags,
          querystring: listQuery,
          response: { 200: orderPage, 400: problemResponses[400], 503: problemResponses[503] },
        },
        config: { auth: 'customer', swaggerTransform: documentRoute() },
      },
      async (request) => {
        const { status, limit, cursor } = request.query
        // A customer lists their own orders; asking for someone else's finds none.
        const scope = customerScope(request)
        if (scope !== undefined && request.query.customerId !== undefined && request.query.customerId !== scope) {
          return { orders: [], nextCursor: null }
        }
        const customerId = scope ?? request.query.customerId
        const page = await queryOrders(
          deps.db,
          {
            limit,
            ...(customerId === undefined ? {} : { customerId }),
            ...(status === undefined ? {} : { status }),
          },
          cursor ?? null,
        )
        return {
          orders: await Promise.all(page.orders.map((order) => opened(toOrderView(order)))),
          nextCursor: page.nextCursor,
        }
      },
    )

    app.get(
      '/api/orders/:id',
      {
        schema: {
          summary: 'Get an order',
          description: 'The current state, including writes made just before (read-your-writes).',
          operationId: 'getOrder',
          tags,
          params: orderParams,
          response: {
            ...orderResponse,
            400: problemResponses[400],
            404: problemResponses[404],
            503: problemResponses[503],
          },
        },
        config: { auth: 'customer', swaggerTransform: documentRoute({ 200: { etag: responseHeaders.etag } }) },
      },
      async (request, reply) => {
        const order = await deps.store.get(request.params.id)
        if (!order || !mayAccess(request, order.customerId)) throw notFound('order', request.params.id)
        return sendOrder(reply, order)
      },
    )

    app.get(
      '/api/orders/:id/events',
      {
        schema: {
          summary: "An order's history",
          description:
            'Every event of the order, oldest first, in the shape published on order-events, with its personal fields opened for the reader ("[erased]" once erased).',
          operationId: 'getOrderEvents',
          tags,
          params: orderParams,
          response: {
            200: historyView,
            400: problemResponses[400],
            404: problemResponses[404],
            503: problemResponses[503],
          },
        },
        config: { auth: 'customer', swaggerTransform: documentRoute() },
      },
      async (request) => {
        await requireVisible(request, request.params.id)
        const history = await deps.store.history(request.params.id)
        if (history.length === 0) throw notFound('order', request.params.id)
        // Each as the newest version of its type, as a consumer of order-events reads it (an event
        // stored by an older version goes through its upcasters).
        // Personal fields are opened for the reader as GET /api/orders/:id opens them ("[erased]"
        // once the customer was erased); on the topic they stay sealed.
        const events = await Promise.all(
          history.map((stored) => {
            const event = toOrderEvent(stored)
            const wire = { ...encodeOrderEvent(event), schemaVersion: event.schemaVersion }
            return deps.personalData.openFields(wire as Record<string, unknown>, PERSONAL_FIELDS) as Promise<
              typeof wire
            >
          }),
        )
        return { orderId: request.params.id, events }
      },
    )

    const commandResponses = {
      ...orderResponse,
      400: problemResponses[400],
      404: problemResponses[404],
      409: problemResponses[409],
      503: problemResponses[503],
    }
    const commandConfig = (auth: AuthRequirement) => ({
      auth,
      swaggerTransform: documentRoute({ 200: { etag: responseHeaders.etag } }),
    })
    const execute = async (request: FastifyRequest, reply: FastifyReply, command: OrderCommand) => {
      await requireVisible(request, command.orderId)
      const result = await deps.store.execute(command, commandMetadata(request))
      return sendOrder(reply, result.order)
    }

    app.patch(
      '/api/orders/:id',
      {
        schema: {
          summary: "Change a pending order's items or notes",
          description:
            'The total is fixed once the order is placed (its payment is requested at once): items must come to the same total, and a totalAmount, if given, must be the order’s; otherwise 409 ORDER_TOTAL_FIXED.',
          operationId: 'updateOrder',
          tags,
          headers: commandHeaders,
          params: orderParams,
          body: updateOrderBody,
          response: commandResponses,
        },
        config: commandConfig('customer'),
      },
      (request, reply) =>
        execute(request, reply, { commandType: 'UpdateOrderDetails', orderId: request.params.id, ...request.body }),
    )

    app.post(
      '/api/orders/:id/confirm',
      {
        schema: {
          summary: 'Confirm an order with its payment',
          operationId: 'confirmOrder',
          tags,
          headers: commandHeaders,
          params: orderParams,
          body: confirmOrderBody,
          response: commandResponses,
        },
        config: commandConfig('service'),
      },
      (request, reply) =>
        execute(request, reply, {
          commandType: 'ConfirmOrder',
          orderId: request.params.id,
          paymentId: request.body.paymentId,
        }),
    )

    app.post(
      '/api/orders/:id/cancel',
      {
        schema: {
          summary: 'Cancel an order',
          operationId: 'cancelOrder',
          tags,
          headers: commandHeaders,
          params: orderParams,
          body: cancelOrderBody,
          response: commandResponses,
        },
        config: commandConfig('customer'),
      },
      (request, reply) =>
        execute(request, reply, {
          commandType: 'CancelOrder',
          orderId: request.params.id,
          reason: request.body.reason,
        }),
    )

    app.post(
      '/api/orders/:id/status',
      {
        schema: {
          summary: 'Move an order along its fulfilment (DISPATCHED, DELIVERED)',
          description:
            'CONFIRMED (with paymentId) and CANCELLED (with an optional reason) follow the confirm and cancel rules.',
          operationId: 'changeOrderStatus',
          tags,
          headers: commandHeaders,
          params: orderParams,
          body: changeStatusBody,
          response: commandResponses,
        },
        config: commandConfig('service'),
      },
      (request, reply) =>
        execute(request, reply, { commandType: 'ChangeOrderStatus', orderId: request.params.id, ...request.body }),
    )
  }
}
