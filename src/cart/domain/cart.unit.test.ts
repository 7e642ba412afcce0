import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { CartEventData } from '../../contracts/cart/events.ts'
import { deciderSpec } from '../../platform/testing/decider-spec.ts'
import { type CartCommand, cartDecider, MAX_QUANTITY } from './cart.ts'

const cartId = 'cart-1'
const spec = deciderSpec(cartDecider, { aggregateId: cartId })
const created: CartEventData = { eventType: 'CartCreated', customerId: 'customer-1', currency: 'USD' }
const coffee: CartEventData = {
  eventType: 'CartItemAdded',
  productId: 'coffee',
  name: 'Coffee beans',
  price: 1250,
  quantity: 2,
}
const mug: CartEventData = { eventType: 'CartItemAdded', productId: 'mug', price: 800, quantity: 1 }
const add = (productId: string, price: number, quantity: number): CartCommand => ({
  commandType: 'AddCartItem',
  cartId,
  item: { productId, price, quantity },
})
const checkOut = (orderId = 'order-1'): CartCommand => ({ commandType: 'CheckOutCart', cartId, orderId })

describe('cart decider', () => {
  it('opens a cart for a customer', () => {
    spec
      .given()
      .when({ commandType: 'CreateCart', cartId, customerId: 'customer-1', currency: 'USD' })
      .thenEmits([created])
  })

  it('refuses to open a cart twice and to touch a cart that does not exist', () => {
    spec
      .given(created)
      .when({ commandType: 'CreateCart', cartId, customerId: 'x', currency: 'USD' })
      .thenRejects({ code: 'VERSION_CONFLICT' })
    spec
      .given()
      .when(add('coffee', 100, 1))
      .thenRejects({ code: 'NOT_FOUND' })
  })

  it('adds to the quantity of a product the cart holds, and totals the lines', () => {
    const { state } = spec.given(created, coffee, mug, { ...coffee, quantity: 1, price: 1200 })
    assert.deepEqual(
      state?.items.map((item) => [item.productId, item.price, item.quantity]),
      [
        ['coffee', 1200, 3],
        ['mug', 800, 1],
      ],
    )
    assert.equal(state?.items[0]?.name, 'Coffee beans', 'the name stays when a later add gives none')
    assert.equal(state?.totalAmount, 1200 * 3 + 800)
  })

  it('caps the quantity of one product', () => {
    spec
      .given(created, coffee)
      .when(add('coffee', 1250, MAX_QUANTITY - 1))
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['quantity'] })
  })

  it('changes and removes lines, and says when the product is not in the cart', () => {
    spec
      .given(created, coffee)
      .when({ commandType: 'ChangeCartItemQuantity', cartId, productId: 'coffee', quantity: 5 })
      .thenEmits([{ eventType: 'CartItemQuantityChanged', productId: 'coffee', quantity: 5 }])
    spec
      .given(created, coffee)
      .when({ commandType: 'ChangeCartItemQuantity', cartId, productId: 'coffee', quantity: 2 })
      .thenNothingHappened()
    spec
      .given(created, coffee)
      .when({ commandType: 'RemoveCartItem', cartId, productId: 'coffee' })
      .thenEmits([{ eventType: 'CartItemRemoved', productId: 'coffee' }])
    spec
      .given(created)
      .when({ commandType: 'RemoveCartItem', cartId, productId: 'coffee' })
      .thenRejects({ code: 'NOT_FOUND', message: /coffee is not in cart/ })
    const { state } = spec.given(created, coffee, mug, { eventType: 'CartItemRemoved', productId: 'coffee' })
    assert.deepEqual(
      state?.items.map((item) => item.productId),
      ['mug'],
    )
    assert.equal(state?.totalAmount, 800)
  })

  it('checks out into the order to create, with the items and their total', () => {
    spec
      .given(created, coffee, mug)
      .when(checkOut())
      .thenEmits([
        {
          eventType: 'CartCheckedOut',
          orderId: 'order-1',
          customerId: 'customer-1',
          items: [
            { productId: 'coffee', name: 'Coffee beans', price: 1250, quantity: 2 },
            { productId: 'mug', price: 800, quantity: 1 },
          ],
          totalAmount: 3300,
          currency: 'USD',
          deliveryAddress: null,
          contact: null,
        },
      ])
  })

  it('refuses to check out an empty cart', () => {
    spec.given(created).when(checkOut()).thenRejects({ code: 'INVALID_TRANSITION', message: /empty/ })
  })

  it('treats the same checkout again as done, and freezes a checked-out cart', () => {
    const checkedOut: CartEventData = {
      eventType: 'CartCheckedOut',
      orderId: 'order-1',
      customerId: 'customer-1',
      items: [{ productId: 'mug', price: 800, quantity: 1 }],
      totalAmount: 800,
      currency: 'USD',
    }
    spec.given(created, mug, checkedOut).when(checkOut('order-1')).thenNothingHappened()
    spec.given(created, mug, checkedOut).when(checkOut('order-2')).thenRejects({ code: 'INVALID_TRANSITION' })
    spec
      .given(created, mug, checkedOut)
      .when(add('coffee', 100, 1))
      .thenRejects({ code: 'INVALID_TRANSITION', message: /checked out as order order-1/ })
  })
})
