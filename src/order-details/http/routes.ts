import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { toDecimal } from '../../contracts/money.ts'
import { SHIPPING_COST_RULE, shippingCostFor } from '../../contracts/shipping.ts'
import { decodeShopOrderEvent, ShopOrderStatuses } from '../../contracts/shop/events.ts'
import { AppError } from '../../platform/errors.ts'
import { documentRoute, problemResponse, problemResponses } from '../../platform/http/openapi.ts'
import type { Transport } from '../../platform/transport/port.ts'
import type { OrderDetailsStore } from '../application/order-details-store.ts'

/**
 * Seed 002's order service API: `GET /order-details` (the order as learnt from orders.events, with
 * the shipping cost by the dispatch service's rule) and `GET /getAllOrderIdsFromTopic` (the order
 * ids a topic holds, read from the topic itself).
 *
 * With authentication on, order details need the service role (the seed's orders have no owner a
 * customer token could match), and reading whole topics the operator role.
 */

export interface OrderDetailsRoutesDeps {
  store: OrderDetailsStore
  /** The log the topics are read from (the broker's, or the embedded log). */
  topics: Pick<Transport, 'readTopic'>
  /** How long reading a whole topic may take before answering with what was read. */
  topicReadTimeoutMs: number
}

/** Set to `false` on `/getAllOrderIdsFromTopic` when the timeout cut the read short. */
export const READ_COMPLETE_HEADER = 'orderflow-read-complete'

const amount = z.number().nonnegative().describe('Decimal amount, e.g. 150.00')

const orderDetailsView = z.object({
  order: z.object({
    orderId: z.string(),
    customerId: z.string(),
    orderDate: z.string().describe('ISO 8601 UTC'),
    items: z.array(z.object({ itemId: z.string(), name: z.string(), price: amount, quantity: z.number().int() })),
    totalAmount: amount,
    currency: z.string(),
    status: z.enum(ShopOrderStatuses),
  }),
  shippingCost: amount.describe(`Shipping: ${SHIPPING_COST_RULE}`),
})

const orderDetailsQuery = z.object({
  orderId: z
    .string({ error: 'orderId is required, e.g. ?orderId=ORD-123' })
    .trim()
    .min(1, 'orderId must not be empty')
    .max(200, 'orderId must be at most 200 characters'),
})

const topicQuery = z.object({
  topicName: z
    .string({ error: 'topicName is required, e.g. ?topicName=orders.events' })
    .regex(/^[a-zA-Z0-9._-]{1,249}$/, 'topicName must be 1 to 249 of a-z A-Z 0-9 . _ -'),
})

const topicOrderIds = z.object({
  topicName: z.string(),
  orderIds: z.array(z.string()).describe('Each order id once, in the order the topic first names it'),
})

export function orderDetailsRoutes(deps: OrderDetailsRoutesDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    const tags = ['seed 002: order service']

    app.get(
      '/order-details',
      {
        schema: {
          summary: 'An order learnt from orders.events, with its shipping cost',
          operationId: 'seed002OrderDetails',
          tags,
          querystring: orderDetailsQuery,
          response: {
            200: orderDetailsView,
            400: problemResponses[400],
            404: problemResponse(
              'No ORDER_CREATED for this order has been consumed (NOT_FOUND); pendingStatusUpdates counts updates waiting for it',
            ),
            503: problemResponses[503],
          },
        },
        config: { auth: 'service', swaggerTransform: documentRoute() },
      },
      async (request) => {
        const { orderId } = request.query
        const order = await deps.store.get(orderId)
        if (!order) {
          const pending = await deps.store.pendingUpdates(orderId)
          throw new AppError(
            'NOT_FOUND',
            pending > 0
              ? `order ${orderId} not found: ${pending} status update(s) arrived before its ORDER_CREATED and wait for it`
              : `order ${orderId} not found`,
            { details: { resource: 'order', id: orderId, pendingStatusUpdates: pending } },
          )
        }
        return {
          order: {
            orderId: order.orderId,
            customerId: order.customerId,
            orderDate: order.orderDate,
            items: order.items.map((item) => ({ ...item, price: toDecimal(item.price) })),
            totalAmount: toDecimal(order.totalAmount),
            currency: order.currency,
            status: order.status,
          },
          shippingCost: toDecimal(shippingCostFor(order.totalAmount)),
        }
      },
    )

    app.get(
      '/getAllOrderIdsFromTopic',
      {
        schema: {
          summary: 'The order ids a topic holds, read from the topic itself',
          description:
            'Reads every partition from the beginning, up to what the topic held when the request came, within a timeout (the orderflow-read-complete: false header says the timeout cut it short). Order ids come from ORDER_CREATED and ORDER_STATUS_UPDATED events, from a top-level orderId in any other JSON message, from the aggregateId of order events (order-events), and from the message a dead letter holds (<topic>-dlq topics, listed like any other).',
          operationId: 'seed002GetAllOrderIdsFromTopic',
          tags,
          querystring: topicQuery,
          response: {
            200: topicOrderIds,
            400: problemResponses[400],
            404: problemResponse('The topic does not exist (NOT_FOUND)'),
            503: problemResponse('The database or the broker is unavailable'),
          },
        },
        config: { auth: 'operator', swaggerTransform: documentRoute() },
      },
      async (request, reply) => {
        const { topicName } = request.query
        const found: { id: string; at: number; partition: number; offset: bigint }[] = []
        let result: { complete: boolean } | null
        try {
          result = await deps.topics.readTopic(
            topicName,
            (message) => {
              const id = orderIdOf(message.value)
              if (id) {
                found.push({
                  id,
                  at: message.timestamp.getTime(),
                  partition: message.partition,
                  offset: BigInt(message.offset),
                })
              }
            },
            { timeoutMs: deps.topicReadTimeoutMs },
          )
        } catch (error) {
          throw new AppError(
            'TRANSPORT_UNAVAILABLE',
            `could not read topic ${topicName}: ${(error as Error).message}`,
            {
              cause: error,
            },
          )
        }
        if (!result) {
          throw new AppError('NOT_FOUND', `topic ${topicName} does not exist`, {
            details: { resource: 'topic', id: topicName },
          })
        }
        if (!result.complete) {
          request.log.warn(
            { topicName, read: found.length },
            'reading the topic timed out; answering with what was read',
          )
          reply.header(READ_COMPLETE_HEADER, 'false')
        }
        found.sort((a, b) => a.at - b.at || a.partition - b.partition || (a.offset < b.offset ? -1 : 1))
        return { topicName, orderIds: [...new Set(found.map((f) => f.id))] }
      },
    )
  }
}

/**
 * The order a message is about: a seed 002 event's orderId, any JSON message's top-level orderId,
 * an order event's aggregateId (`order-events` carries the order id there), and for a dead letter
 * (`<topic>-dlq`) the order of the message it holds.
 */
export function orderIdOf(value: string, depth = 0): string | undefined {
  const decoded = decodeShopOrderEvent(value)
  if (decoded.ok) return decoded.event.orderId
  let json: {
    orderId?: unknown
    aggregateId?: unknown
    eventType?: unknown
    originalTopic?: unknown
    payload?: unknown
  }
  try {
    json = JSON.parse(value)
  } catch {
    return undefined
  }
  if (typeof json !== 'object' || json === null) return undefined
  if (typeof json.orderId === 'string' && json.orderId !== '') return json.orderId
  if (
    typeof json.eventType === 'string' &&
    json.eventType.startsWith('Order') &&
    typeof json.aggregateId === 'string'
  ) {
    return json.aggregateId || undefined
  }
  if (depth === 0 && typeof json.originalTopic === 'string' && typeof json.payload === 'string') {
    return orderIdOf(json.payload, 1)
  }
  return undefined
}
