import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateOrder, MAX_ITEM_PRICE, MIN_ITEM_PRICE, shopOrderId } from './generate-order.ts'

describe("seed 002's order generator", () => {
  const now = '2024-01-18T12:00:00.123Z'

  it('names the order ORD-<order_id> and keeps an id that has the prefix already', () => {
    assert.equal(shopOrderId('123'), 'ORD-123')
    assert.equal(shopOrderId(' 123 '), 'ORD-123')
    assert.equal(shopOrderId('ORD-123'), 'ORD-123')
  })

  it('generates number_of_items items whose prices add up to the total, for a CUST- customer, in USD', () => {
    let seed = 0.37
    const random = () => {
      seed = (seed * 9301 + 0.49297) % 1
      return seed
    }
    const order = generateOrder({ orderId: '123', numberOfItems: 3, now, random })
    assert.equal(order.orderId, 'ORD-123')
    assert.match(order.customerId, /^CUST-[0-9A-Z]{8}$/)
    assert.equal(order.items.length, 3)
    assert.equal(
      order.totalAmount,
      order.items.reduce((sum, item) => sum + item.price * item.quantity, 0),
    )
    for (const item of order.items) {
      assert.ok(item.price >= MIN_ITEM_PRICE && item.price <= MAX_ITEM_PRICE, `price ${item.price}`)
    }
    assert.equal(order.currency, 'USD')
    assert.equal(order.status, 'created')
    assert.equal(order.orderDate, '2024-01-18T12:00:00Z')
  })

  it('spans the whole price range: the lowest and the highest random values', () => {
    assert.equal(generateOrder({ orderId: '1', numberOfItems: 1, now, random: () => 0 }).totalAmount, MIN_ITEM_PRICE)
    assert.equal(
      generateOrder({ orderId: '1', numberOfItems: 1, now, random: () => 0.999999999 }).totalAmount,
      MAX_ITEM_PRICE,
    )
  })
})
