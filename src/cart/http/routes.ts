import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { v7 as uuidv7 } from 'uuid'
import { z } from 'zod'
import {
  addCartItemBody,
  type CartEventData,
  CartStatuses,
  changeCartItemBody,
  createCartBody,
} from '../../contracts/cart/events.ts'
import { toDecimal } from '../../contracts/money.ts'
import { contactSchema, deliveryAddressSchema } from '../../contracts/personal.ts'
import { notFound } from '../../platform/errors.ts'
import { customerScope, mayAccess } from '../../platform/http/auth.ts'
import { documentRoute, problemResponses, responseHeaders } from '../../platform/http/openapi.ts'
import { commandHeaders, commandMetadata, etagOf, requestHeaders } from '../../platform/http/request.ts'
import type { Aggregate, ServiceParts } from '../../platform/service.ts'
import type { Cart, CartCommand, CartState } from '../domain/cart.ts'

/**
 * Seed 004's cart API: open a cart, put products in, change or remove them, check out. Checkout
 * emits CartCheckedOut on `cart-events`, which the order service turns into an order (its id is in
 * the response and the Location header; the order appears there a moment later).
 *
 * Amounts are decimals on the wire; every response carrying a cart has `ETag: "<version>"`, and
 * changes take it back in `If-Match` (409 VERSION_CONFLICT if the cart moved on).
 *
 * With authentication on, a customer reaches only their own carts: another customer's cart answers
 * 404 exactly like a missing one, and a new cart's customerId is the token's subject.
 */

const amount = z.number().nonnegative().describe('Decimal amount, e.g. 12.50')

export const cartView = z.object({
  id: z.string(),
  version: z.number().int().describe('Increases with every change; the ETag'),
  status: z.enum([CartStatuses.OPEN, CartStatuses.CHECKED_OUT]),
  customerId: z.string(),
  currency: z.string(),
  items: z.array(
    z.object({ productId: z.string(), name: z.string().optional(), price: amount, quantity: z.number().int() }),
  ),
  totalAmount: amount.describe("The items' prices times quantities"),
  orderId: z.string().nullable().describe('The order the cart became at checkout'),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
})

export function toCartView(cart: Cart): z.output<typeof cartView> {
  return {
    id: cart.id,
    version: cart.version,
    status: cart.status,
    customerId: cart.customerId,
    currency: cart.currency,
    items: cart.items.map((item) => ({ ...item, price: toDecimal(item.price) })),
    totalAmount: toDecimal(cart.totalAmount),
    orderId: cart.orderId,
    createdAt: cart.createdAt,
    updatedAt: cart.updatedAt,
  }
}

const idPattern = z.string().min(1).max(200, 'must be at most 200 characters')
const cartParams = z.object({ id: idPattern })
const itemParams = z.object({ id: idPattern, productId: idPattern })

/**
 * `POST /api/carts/:id/checkout` may say where the order goes and how to reach the customer; both
 * personal (sealed with the customer's key before they are stored), both optional, and so is the body.
 */
const checkoutBody = z
  .strictObject({
    deliveryAddress: deliveryAddressSchema.optional(),
    contact: contactSchema.optional(),
  })
  // No body at all (seed 004's checkout) arrives as null.
  .nullish()

export function cartRoutes(deps: {
  /** Carries a cart command out: the service's `execute`. */
  execute: ServiceParts<CartCommand, CartEventData, CartState>['execute']
  /** A cart as it is now, read without a lock: the aggregate's `load`. */
  load: Aggregate<CartCommand, CartEventData, CartState>['load']
}): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    const tags = ['carts']
    const config = {
      auth: 'customer' as const,
      swaggerTransform: documentRoute({ 200: { etag: responseHeaders.etag } }),
    }
    const changeResponses = {
      200: cartView.describe('The cart; ETag is its version'),
      400: problemResponses[400],
      404: problemResponses[404],
      409: problemResponses[409],
      503: problemResponses[503],
    }
    const cartAfter = async (command: CartCommand, request: FastifyRequest): Promise<Cart> => {
      const { state } = await deps.execute(command, commandMetadata(request))
      if (!state) throw notFound('cart', command.cartId)
      return state
    }
    const send = (reply: FastifyReply, cart: Cart) => reply.header('etag', etagOf(cart.version)).send(toCartView(cart))
    // Checked before the command runs: a cart's customer never changes, and nothing of another
    // customer's cart is changed or shown.
    const requireVisible = async (request: FastifyRequest, cartId: string) => {
      const scope = customerScope(request)
      if (scope === undefined) return
      const cart = await deps.load(cartId)
      if (!cart || cart.customerId !== scope) throw notFound('cart', cartId)
    }
    const execute = async (request: FastifyRequest, reply: FastifyReply, command: CartCommand) => {
      await requireVisible(request, command.cartId)
      return send(reply, await cartAfter(command, request))
    }

    app.post(
      '/api/carts',
      {
        schema: {
          summary: 'Open a cart',
          operationId: 'createCart',
          tags,
          headers: requestHeaders,
          body: createCartBody,
          response: { 201: cartView, 400: problemResponses[400], 503: problemResponses[503] },
        },
        config: {
          auth: 'customer',
          swaggerTransform: documentRoute({ 201: { location: responseHeaders.location, etag: responseHeaders.etag } }),
        },
      },
      async (request, reply) => {
        const cartId = `cart-${uuidv7()}`
        const scope = customerScope(request)
        const cart = await cartAfter(
          { commandType: 'CreateCart', cartId, ...request.body, ...(scope === undefined ? {} : { customerId: scope }) },
          request,
        )
        return send(reply.status(201).header('location', `/api/carts/${encodeURIComponent(cart.id)}`), cart)
      },
    )

    app.get(
      '/api/carts/:id',
      {
        schema: {
          summary: 'Get a cart',
          operationId: 'getCart',
          tags,
          params: cartParams,
          response: {
            200: cartView,
            400: problemResponses[400],
            404: problemResponses[404],
            503: problemResponses[503],
          },
        },
        config,
      },
      async (request, reply) => {
        const cart = await deps.load(request.params.id)
        if (!cart || !mayAccess(request, cart.customerId)) throw notFound('cart', request.params.id)
        return send(reply, cart)
      },
    )

    app.post(
      '/api/carts/:id/items',
      {
        schema: {
          summary: 'Put a product in the cart (adds to its quantity if it is there already)',
          operationId: 'addCartItem',
          tags,
          headers: commandHeaders,
          params: cartParams,
          body: addCartItemBody,
          response: changeResponses,
        },
        config,
      },
      (request, reply) =>
        execute(request, reply, { commandType: 'AddCartItem', cartId: request.params.id, item: request.body }),
    )

    app.patch(
      '/api/carts/:id/items/:productId',
      {
        schema: {
          summary: "Change a product's quantity",
          operationId: 'changeCartItem',
          tags,
          headers: commandHeaders,
          params: itemParams,
          body: changeCartItemBody,
          response: changeResponses,
        },
        config,
      },
      (request, reply) =>
        execute(request, reply, {
          commandType: 'ChangeCartItemQuantity',
          cartId: request.params.id,
          productId: request.params.productId,
          quantity: request.body.quantity,
        }),
    )

    app.delete(
      '/api/carts/:id/items/:productId',
      {
        schema: {
          summary: 'Take a product out of the cart',
          operationId: 'removeCartItem',
          tags,
          headers: commandHeaders,
          params: itemParams,
          response: changeResponses,
        },
        config,
      },
      (request, reply) =>
        execute(request, reply, {
          commandType: 'RemoveCartItem',
          cartId: request.params.id,
          productId: request.params.productId,
        }),
    )

    app.post(
      '/api/carts/:id/checkout',
      {
        schema: {
          summary: 'Check out: the cart becomes an order',
          description:
            'Emits CartCheckedOut on cart-events; the order service creates the order (orderId in the response and the Location header) once it consumed the event.',
          operationId: 'checkOutCart',
          tags,
          headers: commandHeaders,
          params: cartParams,
          body: checkoutBody,
          response: changeResponses,
        },
        config: {
          auth: 'customer',
          swaggerTransform: documentRoute({ 200: { etag: responseHeaders.etag, location: responseHeaders.location } }),
        },
      },
      async (request, reply) => {
        await requireVisible(request, request.params.id)
        const cart = await cartAfter(
          {
            commandType: 'CheckOutCart',
            cartId: request.params.id,
            orderId: `order-${uuidv7()}`,
            ...(request.body?.deliveryAddress ? { deliveryAddress: request.body.deliveryAddress } : {}),
            ...(request.body?.contact ? { contact: request.body.contact } : {}),
          },
          request,
        )
        if (cart.orderId) reply.header('location', `/api/orders/${encodeURIComponent(cart.orderId)}`)
        return send(reply, cart)
      },
    )
  }
}
