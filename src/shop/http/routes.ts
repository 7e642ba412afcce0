import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { v7 as uuidv7 } from 'uuid'
import { z } from 'zod'
import {
  encodeShopOrderEvent,
  SHOP_ORDER_EVENTS_TOPIC,
  type ShopOrder,
  type ShopOrderEvent,
  ShopOrderStatuses,
  shopOrderStatus,
} from '../../contracts/shop/events.ts'
import { AppError, notFound } from '../../platform/errors.ts'
import { eventMessage } from '../../platform/es/messages.ts'
import { documentRoute, problemResponse, problemResponses } from '../../platform/http/openapi.ts'
import { commandMetadata } from '../../platform/http/request.ts'
import { enqueue } from '../../platform/outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor } from '../../platform/sql/port.ts'
import { generateOrder, shopOrderId } from '../domain/generate-order.ts'

/**
 * Seed 002's cart service API, with the seed's paths, bodies and response fields:
 * `POST /create-order` and `PUT /update-order`.
 *
 * Where the seed publishes to Kafka inside the request (and answers 503 when Kafka is away), the
 * order and its event are written in one transaction here, and the outbox relay publishes the
 * event (idempotent producer, acks=all, retries with backoff). So a request succeeds while the
 * broker is down and its event follows when the broker is back; 503 means the database is down.
 *
 * With authentication on, both routes need the service role: the seed's orders belong to customers
 * the service generates (CUST-…), not to the caller, so no customer could be scoped to their own;
 * and a status change is a service transition.
 */

export interface ShopRoutesDeps {
  db: SqlDatabase
  clock: () => Date
  /** Wakes the outbox relay after a commit. */
  committed: () => void
  random?: () => number
}

export const MAX_ITEMS = 100

const createOrderBody = z.object({
  order_id: z
    .string({ error: 'order_id must be a string, such as "123"' })
    .trim()
    .min(1, 'order_id must not be empty')
    .max(100, 'order_id must be at most 100 characters')
    .regex(/^[A-Za-z0-9._-]+$/, 'order_id may only contain letters, digits, ".", "_" and "-"'),
  number_of_items: z
    .number({ error: `number_of_items must be a whole number from 1 to ${MAX_ITEMS}` })
    .int(`number_of_items must be a whole number from 1 to ${MAX_ITEMS}`)
    .min(1, `number_of_items must be a whole number from 1 to ${MAX_ITEMS}`)
    .max(MAX_ITEMS, `number_of_items must be a whole number from 1 to ${MAX_ITEMS}`),
})

const updateOrderBody = z.object({
  order_id: z
    .string({ error: 'order_id must be a string, such as "ORD-123"' })
    .trim()
    .min(1, 'order_id must not be empty')
    .max(200, 'order_id must be at most 200 characters'),
  status: shopOrderStatus.describe(`One of ${ShopOrderStatuses.join(', ')} (case-insensitive)`),
})

const accepted = (message: string) =>
  z.object({ message: z.literal(message), orderId: z.string().describe('The order id, ORD-…') })

export const CREATED_MESSAGE = 'order created and published successfully'
export const UPDATED_MESSAGE = 'order status updated and published successfully'

const responses503 = problemResponse(
  'The database is unavailable (DATABASE_UNAVAILABLE). Kafka being away is not an error: the event is published once it is back.',
)

export function shopRoutes(deps: ShopRoutesDeps): FastifyPluginAsync {
  const random = deps.random ?? Math.random
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    const tags = ['seed 002: cart service']

    app.post(
      '/create-order',
      {
        schema: {
          summary: 'Create an order and publish ORDER_CREATED to orders.events',
          description:
            'Generates the order (a CUST- customer, number_of_items items, their total in USD, the date) as ORD-<order_id>. The event is published through the outbox, keyed by the order id.',
          operationId: 'seed002CreateOrder',
          tags,
          body: createOrderBody,
          response: {
            200: accepted(CREATED_MESSAGE),
            400: problemResponses[400],
            409: problemResponse('An order with this id exists already (VERSION_CONFLICT)'),
            503: responses503,
          },
        },
        config: { auth: 'service', swaggerTransform: documentRoute() },
      },
      async (request) => {
        const now = deps.clock().toISOString()
        const order = generateOrder({
          orderId: request.body.order_id,
          numberOfItems: request.body.number_of_items,
          now,
          random,
        })
        const event: ShopOrderEvent = {
          eventType: 'ORDER_CREATED',
          eventId: uuidv7(),
          occurredOn: now,
          orderId: order.orderId,
          order,
        }
        const metadata = commandMetadata(request)
        await deps.db.transaction(async (tx) => {
          const { rowCount } = await tx.query(
            `INSERT INTO shop_orders (order_id, customer_id, order_date, items, total_amount, currency, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id) DO NOTHING`,
            [
              order.orderId,
              order.customerId,
              order.orderDate,
              JSON.stringify(order.items),
              order.totalAmount,
              order.currency,
              order.status,
            ],
          )
          if (rowCount === 0) {
            throw new AppError('VERSION_CONFLICT', `order ${order.orderId} already exists`, {
              details: { orderId: order.orderId },
            })
          }
          await publishLater(tx, event, metadata.traceparent)
        })
        deps.committed()
        return { message: CREATED_MESSAGE, orderId: order.orderId }
      },
    )

    app.put(
      '/update-order',
      {
        schema: {
          summary: "Change an order's status and publish ORDER_STATUS_UPDATED to orders.events",
          operationId: 'seed002UpdateOrder',
          tags,
          body: updateOrderBody,
          response: {
            200: accepted(UPDATED_MESSAGE),
            400: problemResponse(`The body is invalid; status must be one of ${ShopOrderStatuses.join(', ')}`),
            404: problemResponses[404],
            503: responses503,
          },
        },
        config: { auth: 'service', swaggerTransform: documentRoute() },
      },
      async (request) => {
        const orderId = shopOrderId(request.body.order_id)
        const now = deps.clock().toISOString()
        const event: ShopOrderEvent = {
          eventType: 'ORDER_STATUS_UPDATED',
          eventId: uuidv7(),
          occurredOn: now,
          orderId,
          status: request.body.status,
        }
        const metadata = commandMetadata(request)
        await deps.db.transaction(async (tx) => {
          const { rowCount } = await tx.query(
            'UPDATE shop_orders SET status = $2, updated_at = $3 WHERE order_id = $1',
            [orderId, request.body.status, now],
          )
          if (rowCount === 0) throw notFound('order', orderId)
          await publishLater(tx, event, metadata.traceparent)
        })
        deps.committed()
        return { message: UPDATED_MESSAGE, orderId }
      },
    )
  }
}

/** The event goes into the outbox in the request's transaction, keyed by the order id. */
async function publishLater(tx: SqlExecutor, event: ShopOrderEvent, traceparent: string | undefined) {
  await enqueue(tx, [
    eventMessage({
      topic: SHOP_ORDER_EVENTS_TOPIC,
      key: event.orderId,
      body: encodeShopOrderEvent(event),
      event: { eventId: event.eventId ?? uuidv7(), eventType: event.eventType, schemaVersion: 1 },
      metadata: traceparent ? { traceparent } : {},
    }),
  ])
}

export type { ShopOrder }
