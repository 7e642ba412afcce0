import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodeDispatchCommand } from '../../contracts/dispatch/commands.ts'
import {
  type DispatchEvent,
  type DispatchEventData,
  decodeDispatchEvent,
  dispatchStreamId,
  encodeDispatchEvent,
  shipmentIdFor,
} from '../../contracts/dispatch/events.ts'
import type { OrderEvent } from '../../contracts/order/events.ts'
import { SHIPPING_COST_RULE, shippingCostFor } from '../../contracts/shipping.ts'
import { deciderSpec } from '../../platform/testing/decider-spec.ts'
import { type DispatchCommand, type DispatchState, dispatchCommandFor, dispatchDecider } from './dispatch.ts'

const ORDER_ID = 'order-1'
const spec = deciderSpec(dispatchDecider, { aggregateId: dispatchStreamId(ORDER_ID) })

describe('shipping cost rule', () => {
  it('matches seed 002: totalAmount 150.00 → shippingCost 3.00', () => {
    assert.equal(shippingCostFor(15_000), 300)
  })

  it('is 2 % rounded half up to the cent, in whole minor units', () => {
    assert.equal(shippingCostFor(0), 0)
    assert.equal(shippingCostFor(24), 0) // 0.48 cents
    assert.equal(shippingCostFor(25), 1) // 0.5 cents rounds up
    assert.equal(shippingCostFor(4599), 92) // 45.99 → 0.9198
    assert.equal(shippingCostFor(12_345), 247) // 123.45 → 2.469
    // Exact at the top of the safe range, where a float division would not be.
    assert.equal(shippingCostFor(Number.MAX_SAFE_INTEGER - 25), 180_143_985_094_819)
    assert.match(SHIPPING_COST_RULE, /2% of the order's total amount/)
  })

  it('refuses what is not an amount in minor units', () => {
    assert.throws(() => shippingCostFor(12.5), RangeError)
    assert.throws(() => shippingCostFor(-1), RangeError)
  })
})

const quoted: DispatchEventData = {
  eventType: 'ShipmentQuoted',
  orderId: ORDER_ID,
  orderAmount: 15_000,
  shippingCost: 300,
  currency: 'USD',
}
const dispatched: DispatchEventData = {
  eventType: 'OrderDispatched',
  orderId: ORDER_ID,
  shipmentId: shipmentIdFor(ORDER_ID),
  shippingCost: 300,
  currency: 'USD',
}
const dispatchWithAmount: DispatchCommand = {
  commandType: 'DispatchOrder',
  orderId: ORDER_ID,
  orderAmount: 15_000,
  currency: 'USD',
}
const dispatchFromQuote: DispatchCommand = { commandType: 'DispatchOrder', orderId: ORDER_ID }

describe('dispatch decider', () => {
  it('dispatches with the shipment id and the shipping cost (the saga gives the amount)', () => {
    spec.given().when(dispatchWithAmount).thenEmits([dispatched])
  })

  it('dispatches once: DispatchOrder again emits nothing', () => {
    spec.given(dispatched).when(dispatchWithAmount).thenNothingHappened()
    spec.given(quoted, dispatched).when(dispatchFromQuote).thenNothingHappened()
  })

  it('quotes from the total, then dispatches with the quote (choreography)', () => {
    spec
      .given()
      .when({ commandType: 'QuoteShipment', orderId: ORDER_ID, orderAmount: 15_000, currency: 'USD' })
      .thenEmits([quoted])
    spec.given(quoted).when(dispatchFromQuote).thenEmits([dispatched])
  })

  it('quotes again when the total changes, keeping the currency, and not once dispatched', () => {
    const requote: DispatchCommand = { commandType: 'QuoteShipment', orderId: ORDER_ID, orderAmount: 20_000 }
    spec
      .given(quoted)
      .when(requote)
      .thenEmits([{ ...quoted, orderAmount: 20_000, shippingCost: 400 }])
    spec
      .given(quoted)
      .when({ commandType: 'QuoteShipment', orderId: ORDER_ID, orderAmount: 15_000 })
      .thenNothingHappened()
    spec.given(quoted, dispatched).when(requote).thenNothingHappened()
  })

  it('refuses a first quote without a currency and a dispatch without an amount', () => {
    spec
      .given()
      .when({ commandType: 'QuoteShipment', orderId: ORDER_ID, orderAmount: 100 })
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['currency'] })
    spec
      .given()
      .when(dispatchFromQuote)
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['orderAmount', 'currency'] })
  })

  it('keeps what was dispatched in its state', () => {
    const state: DispatchState = spec.given(quoted, dispatched).state
    assert.equal(state?.dispatched?.shipmentId, 'shipment-order-1')
    assert.equal(state?.dispatched?.shippingCost, 300)
    assert.equal(state?.version, 2)
  })
})

describe('dispatch choreography mapping', () => {
  const envelope = {
    eventId: '01890a5d-ac96-774b-bcce-b302099a8057',
    aggregateId: ORDER_ID,
    occurredOn: '2026-01-01T12:00:00.000Z',
    version: 1,
    schemaVersion: 1,
  }
  const created = {
    ...envelope,
    eventType: 'OrderCreated',
    customerId: 'customer-1',
    items: [{ productId: 'product-1', price: 15_000, quantity: 1 }],
    subtotal: 15_000,
    totalAmount: 15_000,
    currency: 'USD',
  } as OrderEvent
  const updated = { ...envelope, eventType: 'OrderUpdated', subtotal: 20_000, totalAmount: 20_000 } as OrderEvent
  const confirmed = { ...envelope, eventType: 'OrderConfirmed', paymentId: 'payment-order-1' } as OrderEvent
  const cancelled = { ...envelope, eventType: 'OrderCancelled', reason: 'changed my mind' } as OrderEvent

  it('quotes on OrderCreated and OrderUpdated, dispatches on OrderConfirmed, ignores the rest', () => {
    assert.deepEqual(dispatchCommandFor(created), {
      commandType: 'QuoteShipment',
      orderId: ORDER_ID,
      orderAmount: 15_000,
      currency: 'USD',
    })
    assert.deepEqual(dispatchCommandFor(updated), {
      commandType: 'QuoteShipment',
      orderId: ORDER_ID,
      orderAmount: 20_000,
    })
    assert.deepEqual(dispatchCommandFor(confirmed), dispatchFromQuote)
    assert.equal(dispatchCommandFor(cancelled), null)
  })

  it('reaches the same OrderDispatched as the saga’s DispatchOrder', () => {
    const choreography = [created, confirmed].map((e) => dispatchCommandFor(e) as DispatchCommand)
    const [quote, dispatch] = choreography
    assert.ok(quote && dispatch)
    const history = dispatchDecider.decide(quote, null, { now: envelope.occurredOn })
    assert.ok(history.ok)
    spec
      .given(...history.events)
      .when(dispatch)
      .thenEmits([dispatched])
    spec.given().when(dispatchWithAmount).thenEmits([dispatched])
  })
})

describe('dispatch contracts', () => {
  it('decodes a DispatchOrder with or without the amount', () => {
    const base = {
      commandId: '9b2f7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e',
      commandType: 'DispatchOrder',
      orderId: ORDER_ID,
      issuedOn: '2026-01-01T12:00:00Z',
    }
    const withAmount = decodeDispatchCommand(JSON.stringify({ ...base, orderAmount: 150.0, currency: 'USD' }))
    assert.ok(withAmount.ok, JSON.stringify(withAmount))
    assert.equal(withAmount.command.commandType === 'DispatchOrder' && withAmount.command.orderAmount, 15_000)
    assert.ok(decodeDispatchCommand(JSON.stringify(base)).ok)
  })

  it('puts the shipping cost on the wire as a decimal', () => {
    const event = {
      ...dispatched,
      eventId: '01890a5d-ac96-774b-bcce-b302099a8057',
      aggregateId: dispatchStreamId(ORDER_ID),
      occurredOn: '2026-01-01T12:00:00.000Z',
      version: 1,
      schemaVersion: 2,
    } as DispatchEvent
    const wire = encodeDispatchEvent(event)
    assert.equal((wire as { shippingCost: unknown }).shippingCost, 3)
    const decoded = decodeDispatchEvent(JSON.stringify(wire))
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.deepEqual(decoded.event, event)
  })
})
