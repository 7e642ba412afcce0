import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { v7 as uuidv7 } from 'uuid'
import { z } from 'zod'
import { COFFEE_ORDERS_TOPIC, type CoffeeOrder, coffeeOrder, decodeCoffeeOrder } from '../contracts/coffee/orders.ts'
import { HeaderNames } from '../contracts/envelope.ts'
import { documentRoute, problemResponse, problemResponses } from '../platform/http/openapi.ts'
import { sendProblem } from '../platform/http/problem.ts'
import type { ServiceModule } from '../platform/module.ts'
import { EVENT_ID_HEADER } from '../platform/transport/instrumented.ts'
import type { Subscription, Transport } from '../platform/transport/port.ts'

/**
 * Seed 003's coffee shop, and the smallest service on the platform: a producer route and a
 * consumer, nothing else. Write your own service by copying this file.
 *
 * - `POST /order` takes `{"customer_name":"John Doe","coffee_type":"Latte"}`, publishes exactly
 *   that JSON to the topic and waits for the broker's acknowledgement (acks and retries from
 *   KAFKA_REQUIRED_ACKS and KAFKA_RETRY_MAX). When publishing fails the client gets a 500 problem:
 *   that is the seed's contract, so there is no outbox here (compare seed 002's shop).
 * - The consumer group reads the topic from the oldest offset, logs each order as structured JSON,
 *   and dead-letters a message that is not an order (with the reason) and goes on. Two instances
 *   with the same group split the partitions.
 */

export const COFFEE_GROUP = 'coffee-consumers'

export interface CoffeeOptions {
  topic?: string
  groupId?: string
  /** Run the producer route (default true). */
  producer?: boolean
  /** Run the consumer (default true). */
  consumer?: boolean
  /** How long a publish may take before the request fails with 500 (default 15 s). */
  publishTimeoutMs?: number
}

export interface CoffeeModule {
  /** The consumer's subscription, when this instance consumes. */
  consumer?: Subscription
}

export function coffeeModule(options: CoffeeOptions = {}): ServiceModule<CoffeeModule> {
  const topic = options.topic ?? COFFEE_ORDERS_TOPIC
  return {
    name: 'coffee',
    plainTopics: [
      {
        topic,
        description:
          "Seed 003's coffee orders: the order's JSON as the producer received it, no envelope. The consumer group logs each one; a message that is not an order goes to the dead-letter topic with the reason.",
        key: 'a fresh id per order (the event-id header holds the same id): orders spread over the partitions',
        messageName: 'CoffeeOrder',
        summary: 'A coffee order, exactly as POST /order received it',
        schema: coffeeOrder,
      },
    ],
    async start(context) {
      let consumer: Subscription | undefined
      if (options.consumer !== false) {
        consumer = await context.consume<CoffeeOrder>({
          groupId: options.groupId ?? COFFEE_GROUP,
          topics: [topic],
          decode: (message) => decodeCoffeeOrder(message.value),
          handle: async (order, message) => {
            context.logger.info(
              {
                ...order,
                orderId: message.headers[EVENT_ID_HEADER],
                topic: message.topic,
                partition: message.partition,
                offset: message.offset,
              },
              `Brewing ${order.coffee_type} for ${order.customer_name}`,
            )
          },
        })
      }
      return {
        ...(consumer ? { consumer } : {}),
        ...(options.producer === false
          ? {}
          : {
              routes: coffeeRoutes(context.transport, topic, options.publishTimeoutMs ?? 15_000, context.brokerProblem),
            }),
      }
    },
  }
}

const placed = z.object({
  success: z.literal(true),
  msg: z.string(),
  orderId: z.string().describe('The id the order was published with (message key and event-id header)'),
})

function coffeeRoutes(
  transport: Transport,
  topic: string,
  publishTimeoutMs: number,
  brokerProblem: () => string | undefined,
): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    app.post(
      '/order',
      {
        schema: {
          summary: `Place a coffee order: publish it to ${topic} and wait for the acknowledgement`,
          operationId: 'placeCoffeeOrder',
          tags: ['seed 003: coffee'],
          body: coffeeOrder,
          response: {
            200: placed,
            400: problemResponses[400],
            500: problemResponse('The order could not be published (PUBLISH_FAILED); it was not placed'),
            503: problemResponse(
              'No broker of KAFKA_BROKERS can be reached (BROKER_UNAVAILABLE); the order was not placed. Retry after Retry-After seconds',
            ),
          },
        },
        config: { auth: 'customer', swaggerTransform: documentRoute() },
      },
      async (request, reply) => {
        const order = request.body
        const orderId = uuidv7()
        // No broker can be reached at all: say so at once, naming it, instead of waiting for a timeout.
        const unreachable = brokerProblem()
        if (unreachable) {
          return sendProblem(reply.header('retry-after', '5'), {
            type: 'https://orderflow.dev/problems/broker-unavailable',
            title: 'Service Unavailable',
            status: 503,
            detail: `${unreachable}; the order was not placed`,
            code: 'BROKER_UNAVAILABLE',
            instance: request.url,
          })
        }
        try {
          await withTimeout(
            transport.publish([
              {
                topic,
                // A fresh key per order spreads orders over the partitions, as the seed's keyless messages do.
                key: orderId,
                value: JSON.stringify(order),
                headers: { [EVENT_ID_HEADER]: orderId, [HeaderNames.contentType]: 'application/json' },
              },
            ]),
            publishTimeoutMs,
          )
        } catch (error) {
          request.log.error({ err: error, topic, orderId }, 'coffee order could not be published')
          return sendProblem(reply, {
            type: 'https://orderflow.dev/problems/publish-failed',
            title: 'Internal Server Error',
            status: 500,
            detail: `the order could not be published to ${topic} (Kafka at KAFKA_BROKERS): ${(error as Error).message}`,
            code: 'PUBLISH_FAILED',
            instance: request.url,
          })
        }
        return { success: true as const, msg: `Order for ${order.customer_name} placed successfully!`, orderId }
      },
    )
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no acknowledgement within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}
