import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { decimalAmount, formatAmount, toDecimal } from '../../contracts/money.ts'
import {
  type CreateOrderBody,
  cancelOrderBody,
  changeStatusBody,
  createOrderBody,
  decodeOrderCommand,
  updateOrderBody,
} from '../../contracts/order/commands.ts'
import {
  decodeOrderEvent,
  encodeOrderEvent,
  type OrderEventData,
  orderEventRegistry,
} from '../../contracts/order/events.ts'
import {
  type CreateOrder,
  decide,
  evolve,
  initialState,
  type OrderCommand,
  type OrderState,
  type OrderStatus,
  type RecordedOrderEvent,
  STATUS_CHANGE_CANCELLATION_REASON,
  TOTAL_FIXED_REASON,
} from './order.ts'

// ---------------------------------------------------------------------------------------------
// given / when / then
// ---------------------------------------------------------------------------------------------

const ORDER_ID = 'order-123'
const NOW = '2025-12-25T10:30:00.000Z'
const occurredAt = (i: number) => new Date(Date.UTC(2025, 11, 25, 10, i)).toISOString()

/** Stamps history with the envelope fields the application layer would add. */
function record(history: OrderEventData[]): RecordedOrderEvent[] {
  return history.map((event, i) => ({ ...event, aggregateId: ORDER_ID, occurredOn: occurredAt(i), version: i + 1 }))
}

function stateAfter(history: OrderEventData[]): OrderState {
  return record(history).reduce(evolve, initialState())
}

function given(...history: OrderEventData[]) {
  const state = stateAfter(history)
  return {
    when(command: OrderCommand) {
      const decision = decide(command, state, { now: NOW })
      return {
        thenEmits(expected: OrderEventData[]) {
          assert.ok(decision.ok, `expected events, got rejection: ${JSON.stringify(!decision.ok && decision.error)}`)
          assert.deepEqual(decision.events, expected)
        },
        thenNothingHappens() {
          this.thenEmits([])
        },
        thenRejects(expected: { code: string; message?: string | RegExp; fields?: string[] }) {
          assert.ok(
            !decision.ok,
            `expected ${expected.code}, got events: ${JSON.stringify(decision.ok && decision.events)}`,
          )
          assert.equal(decision.error.code, expected.code)
          if (typeof expected.message === 'string') assert.equal(decision.error.message, expected.message)
          if (expected.message instanceof RegExp) assert.match(decision.error.message, expected.message)
          if (expected.fields) {
            assert.deepEqual(
              decision.error.fields?.map((f) => f.field),
              expected.fields,
            )
          }
        },
      }
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Fixtures: seed 001's order (2 pizzas at 12.99, charged 45.99 with fees)
// ---------------------------------------------------------------------------------------------

const pizza = { menuItemId: 'item-1', name: 'Pizza', price: 1299, quantity: 2 }

const created: OrderEventData = {
  eventType: 'OrderCreated',
  customerId: 'customer-123',
  restaurantId: 'restaurant-456',
  items: [pizza],
  subtotal: 2598,
  totalAmount: 4599,
  currency: 'USD',
  deliveryAddress: null,
  contact: null,
}
const confirmed: OrderEventData = { eventType: 'OrderConfirmed', paymentId: 'payment-1' }
const dispatched: OrderEventData = { eventType: 'OrderStatusChanged', from: 'CONFIRMED', to: 'DISPATCHED' }
const delivered: OrderEventData = { eventType: 'OrderStatusChanged', from: 'DISPATCHED', to: 'DELIVERED' }
const cancelled: OrderEventData = { eventType: 'OrderCancelled', reason: 'customer changed their mind' }

/** Every status an order can be in, with a history that gets it there. */
const histories = {
  PENDING: [created],
  CONFIRMED: [created, confirmed],
  DISPATCHED: [created, confirmed, dispatched],
  DELIVERED: [created, confirmed, dispatched, delivered],
  CANCELLED: [created, cancelled],
} as const satisfies Record<string, OrderEventData[]>

const SEED_001_BODY =
  '{"customerId":"customer-123","restaurantId":"restaurant-456","totalAmount":45.99,"items":[{"menuItemId":"item-1","name":"Pizza","price":12.99,"quantity":2}]}'
const SEED_004_BODY = '{"customerId":"customer123","items":[{"productId":"product123","quantity":1,"price":100.00}]}'

/** What the HTTP layer does with a parsed body: the id is chosen outside the domain. */
function createCommand(body: CreateOrderBody, orderId = ORDER_ID): CreateOrder {
  return { commandType: 'CreateOrder', orderId, ...body }
}

const confirm = (paymentId = 'payment-1'): OrderCommand => ({
  commandType: 'ConfirmOrder',
  orderId: ORDER_ID,
  paymentId,
})
const cancel = (reason = 'customer changed their mind'): OrderCommand => ({
  commandType: 'CancelOrder',
  orderId: ORDER_ID,
  reason,
})
const changeStatus = (status: OrderStatus, extra: { paymentId?: string; reason?: string } = {}): OrderCommand => ({
  commandType: 'ChangeOrderStatus',
  orderId: ORDER_ID,
  status,
  ...extra,
})

// ---------------------------------------------------------------------------------------------
// Decider
// ---------------------------------------------------------------------------------------------

describe('CreateOrder', () => {
  it("creates seed 001's order, charging the given total over the items' subtotal", () => {
    given()
      .when(createCommand(createOrderBody.parse(JSON.parse(SEED_001_BODY))))
      .thenEmits([created])
  })

  it("creates seed 004's order, charging the subtotal when no total is given", () => {
    given()
      .when(createCommand(createOrderBody.parse(JSON.parse(SEED_004_BODY))))
      .thenEmits([
        {
          eventType: 'OrderCreated',
          customerId: 'customer123',
          items: [{ productId: 'product123', quantity: 1, price: 10000 }],
          subtotal: 10000,
          totalAmount: 10000,
          currency: 'USD',
          deliveryAddress: null,
          contact: null,
        },
      ])
  })

  it('adds money exactly: 0.10 × 3 + 0.20 is 0.50, not 0.5000000000000001', () => {
    const body = createOrderBody.parse({
      customerId: 'c',
      notes: 'no onions',
      currency: 'EUR',
      items: [
        { productId: 'p1', price: 0.1, quantity: 3 },
        { productId: 'p2', price: '0.20', quantity: 1 },
      ],
    })
    const decision = decide(createCommand(body), initialState(), { now: NOW })
    assert.ok(decision.ok)
    const [event] = decision.events
    assert.equal(event?.eventType, 'OrderCreated')
    assert.ok(event?.eventType === 'OrderCreated')
    assert.equal(event.subtotal, 50)
    assert.equal(event.totalAmount, 50)
    assert.equal(toDecimal(event.subtotal), 0.5)
    assert.equal(event.currency, 'EUR')
    assert.equal(event.notes, 'no onions')
  })

  it('rejects a total below the items’ subtotal on the totalAmount field', () => {
    given()
      .when(createCommand(createOrderBody.parse({ ...JSON.parse(SEED_001_BODY), totalAmount: 20 })))
      .thenRejects({
        code: 'VALIDATION_FAILED',
        message: "totalAmount 20.00 is below the items' subtotal 25.98",
        fields: ['totalAmount'],
      })
  })

  it('accepts a total equal to the subtotal', () => {
    given()
      .when(createCommand(createOrderBody.parse({ ...JSON.parse(SEED_001_BODY), totalAmount: '25.98' })))
      .thenEmits([{ ...created, totalAmount: 2598 }])
  })

  it('rejects an order without items', () => {
    given()
      .when({ commandType: 'CreateOrder', orderId: ORDER_ID, customerId: 'c', items: [], currency: 'USD' })
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['items'] })
  })

  it('rejects items that add up beyond exact integers', () => {
    given()
      .when({
        commandType: 'CreateOrder',
        orderId: ORDER_ID,
        customerId: 'c',
        items: [{ productId: 'p', price: Number.MAX_SAFE_INTEGER, quantity: 2 }],
        currency: 'USD',
      })
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['items'] })
  })

  for (const [status, history] of Object.entries(histories)) {
    it(`rejects creating an order that exists (${status}) as a conflict`, () => {
      given(...history)
        .when(createCommand(createOrderBody.parse(JSON.parse(SEED_001_BODY))))
        .thenRejects({ code: 'VERSION_CONFLICT', message: `order ${ORDER_ID} already exists` })
    })
  }
})

describe('UpdateOrderDetails', () => {
  const salad = { menuItemId: 'item-2', name: 'Salad', price: 850, quantity: 1 }

  const pasta = { menuItemId: 'item-3', name: 'Pasta', price: 1299, quantity: 1 }
  const onePizza = { ...pizza, quantity: 1 }

  it('accepts new items of the same value: the total (and the fee in it) stays 45.99', () => {
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, items: [onePizza, pasta] })
      .thenEmits([{ eventType: 'OrderUpdated', items: [onePizza, pasta], subtotal: 2598, totalAmount: 4599 }])
  })

  it('refuses new items that change the total with ORDER_TOTAL_FIXED on items, saying why and what to do', () => {
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, items: [pizza, salad] })
      .thenRejects({
        code: 'ORDER_TOTAL_FIXED',
        message: `cannot change the order's total (45.99): ${TOTAL_FIXED_REASON}`,
        fields: ['items'],
      })
  })

  it('refuses items that lower the total as well as ones that raise it, without a fee too', () => {
    given({ ...created, totalAmount: 2598 })
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, items: [salad] })
      .thenRejects({ code: 'ORDER_TOTAL_FIXED', fields: ['items'] })
  })

  it('refuses a totalAmount other than the order’s, naming totalAmount (and items when they change it too)', () => {
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, notes: 'x', totalAmount: 4600 })
      .thenRejects({ code: 'ORDER_TOTAL_FIXED', fields: ['totalAmount'] })
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, items: [salad], totalAmount: 850 })
      .thenRejects({ code: 'ORDER_TOTAL_FIXED', fields: ['items', 'totalAmount'] })
  })

  it('accepts the order’s own totalAmount alongside the change', () => {
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, notes: 'ring twice', totalAmount: 4599 })
      .thenEmits([{ eventType: 'OrderUpdated', notes: 'ring twice', subtotal: 2598, totalAmount: 4599 }])
  })

  it('keeps the total fixed after an earlier accepted update', () => {
    given(created, { eventType: 'OrderUpdated', items: [onePizza, pasta], subtotal: 2598, totalAmount: 4599 })
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, items: [onePizza] })
      .thenRejects({ code: 'ORDER_TOTAL_FIXED', fields: ['items'] })
  })

  it('changes notes alone without repricing', () => {
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, notes: 'ring twice' })
      .thenEmits([{ eventType: 'OrderUpdated', notes: 'ring twice', subtotal: 2598, totalAmount: 4599 }])
  })

  it('rejects an update that changes nothing', () => {
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID })
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['items'] })
  })

  it('rejects empty items', () => {
    given(created)
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, items: [] })
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['items'] })
  })

  for (const status of ['CONFIRMED', 'DISPATCHED', 'DELIVERED', 'CANCELLED'] as const) {
    it(`rejects updating an order that is ${status}`, () => {
      given(...histories[status])
        .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, notes: 'late change' })
        .thenRejects({ code: 'INVALID_TRANSITION', message: `cannot update an order that is ${status}` })
    })
  }

  it('rejects updating an order that does not exist', () => {
    given()
      .when({ commandType: 'UpdateOrderDetails', orderId: ORDER_ID, notes: 'x' })
      .thenRejects({ code: 'NOT_FOUND', message: `order ${ORDER_ID} not found` })
  })
})

describe('ConfirmOrder', () => {
  it('confirms a PENDING order with its payment', () => {
    given(created).when(confirm()).thenEmits([confirmed])
  })

  it('is a no-op when the saga redelivers the same confirmation', () => {
    given(created, confirmed).when(confirm()).thenNothingHappens()
  })

  it('is a no-op for the same confirmation replayed after the order moved on', () => {
    given(created, confirmed, dispatched).when(confirm()).thenNothingHappens()
    given(created, confirmed, cancelled).when(confirm()).thenNothingHappens()
  })

  it('rejects confirming a CONFIRMED order with another payment', () => {
    given(created, confirmed)
      .when(confirm('payment-2'))
      .thenRejects({ code: 'INVALID_TRANSITION', message: /already CONFIRMED with payment payment-1/ })
  })

  for (const status of ['DISPATCHED', 'DELIVERED', 'CANCELLED'] as const) {
    it(`rejects confirming an order that is ${status} (without that payment)`, () => {
      given(...histories[status])
        .when(confirm('payment-2'))
        .thenRejects({ code: 'INVALID_TRANSITION', message: `cannot confirm an order that is ${status}` })
    })
  }

  it('rejects confirming an order that does not exist', () => {
    given().when(confirm()).thenRejects({ code: 'NOT_FOUND' })
  })
})

describe('CancelOrder', () => {
  it('cancels a PENDING order', () => {
    given(created).when(cancel()).thenEmits([cancelled])
  })

  it('cancels a CONFIRMED order', () => {
    given(created, confirmed)
      .when(cancel('payment reversed'))
      .thenEmits([{ eventType: 'OrderCancelled', reason: 'payment reversed' }])
  })

  it('is a no-op when the same cancellation is redelivered', () => {
    given(created, cancelled).when(cancel()).thenNothingHappens()
  })

  it('rejects cancelling a CANCELLED order for another reason', () => {
    given(created, cancelled)
      .when(cancel('payment declined'))
      .thenRejects({ code: 'INVALID_TRANSITION', message: /^cannot cancel an order that is CANCELLED/ })
  })

  for (const status of ['DISPATCHED', 'DELIVERED'] as const) {
    it(`rejects cancelling an order that is ${status}`, () => {
      given(...histories[status])
        .when(cancel())
        .thenRejects({ code: 'INVALID_TRANSITION', message: `cannot cancel an order that is ${status}` })
    })
  }

  it('rejects cancelling an order that does not exist', () => {
    given().when(cancel()).thenRejects({ code: 'NOT_FOUND' })
  })
})

describe('ChangeOrderStatus', () => {
  it('dispatches a CONFIRMED order', () => {
    given(created, confirmed).when(changeStatus('DISPATCHED')).thenEmits([dispatched])
  })

  it('delivers a DISPATCHED order', () => {
    given(created, confirmed, dispatched).when(changeStatus('DELIVERED')).thenEmits([delivered])
  })

  it('is a no-op for a step the order has already reached (redelivery)', () => {
    given(...histories.DISPATCHED)
      .when(changeStatus('DISPATCHED'))
      .thenNothingHappens()
    given(...histories.DELIVERED)
      .when(changeStatus('DISPATCHED'))
      .thenNothingHappens()
    given(...histories.DELIVERED)
      .when(changeStatus('DELIVERED'))
      .thenNothingHappens()
  })

  for (const status of ['PENDING', 'CANCELLED'] as const) {
    it(`rejects dispatching an order that is ${status}`, () => {
      given(...histories[status])
        .when(changeStatus('DISPATCHED'))
        .thenRejects({ code: 'INVALID_TRANSITION', message: `cannot dispatch an order that is ${status}` })
    })
  }

  it('records the dispatch before the delivery when the delivery service reports one the order has not seen dispatched', () => {
    const reported = { ...changeStatus('DELIVERED'), recordsDispatch: true }
    given(...histories.CONFIRMED)
      .when(reported)
      .thenEmits([
        { eventType: 'OrderStatusChanged', from: 'CONFIRMED', to: 'DISPATCHED' },
        { eventType: 'OrderStatusChanged', from: 'DISPATCHED', to: 'DELIVERED' },
      ])
    given(...histories.DISPATCHED)
      .when(reported)
      .thenEmits([{ eventType: 'OrderStatusChanged', from: 'DISPATCHED', to: 'DELIVERED' }])
    given(...histories.DELIVERED)
      .when(reported)
      .thenNothingHappens()
    for (const status of ['PENDING', 'CANCELLED'] as const) {
      given(...histories[status])
        .when(reported)
        .thenRejects({ code: 'INVALID_TRANSITION', message: `cannot deliver an order that is ${status}` })
    }
  })

  for (const status of ['PENDING', 'CONFIRMED', 'CANCELLED'] as const) {
    it(`rejects delivering an order that is ${status}`, () => {
      given(...histories[status])
        .when(changeStatus('DELIVERED'))
        .thenRejects({ code: 'INVALID_TRANSITION', message: `cannot deliver an order that is ${status}` })
    })
  }

  for (const [status, history] of Object.entries(histories)) {
    it(`rejects moving an order that is ${status} back to PENDING`, () => {
      given(...history)
        .when(changeStatus('PENDING'))
        .thenRejects({ code: 'INVALID_TRANSITION', message: `cannot move an order that is ${status} back to PENDING` })
    })
  }

  it('confirms through ConfirmOrder’s rules, with the payment', () => {
    given(created)
      .when(changeStatus('CONFIRMED', { paymentId: 'payment-1' }))
      .thenEmits([confirmed])
    given(created, confirmed)
      .when(changeStatus('CONFIRMED', { paymentId: 'payment-1' }))
      .thenNothingHappens()
    given(created, cancelled)
      .when(changeStatus('CONFIRMED', { paymentId: 'payment-1' }))
      .thenRejects({ code: 'INVALID_TRANSITION', message: 'cannot confirm an order that is CANCELLED' })
  })

  it('rejects confirming without a payment on the paymentId field', () => {
    given(created)
      .when(changeStatus('CONFIRMED'))
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['paymentId'] })
  })

  it('cancels through CancelOrder’s rules, with a default reason', () => {
    given(created, confirmed)
      .when(changeStatus('CANCELLED'))
      .thenEmits([{ eventType: 'OrderCancelled', reason: STATUS_CHANGE_CANCELLATION_REASON }])
    given(created, confirmed)
      .when(changeStatus('CANCELLED', { reason: 'out of stock' }))
      .thenEmits([{ eventType: 'OrderCancelled', reason: 'out of stock' }])
    given(...histories.DELIVERED)
      .when(changeStatus('CANCELLED'))
      .thenRejects({ code: 'INVALID_TRANSITION', message: 'cannot cancel an order that is DELIVERED' })
  })

  it('rejects a status change on an order that does not exist', () => {
    given().when(changeStatus('DISPATCHED')).thenRejects({ code: 'NOT_FOUND' })
  })
})

describe('evolve', () => {
  it('starts empty', () => {
    assert.equal(initialState(), null)
  })

  it('holds what GET /api/orders/:id answers with', () => {
    assert.deepEqual(
      stateAfter([
        created,
        { eventType: 'OrderUpdated', notes: 'ring twice', subtotal: 2598, totalAmount: 4599 },
        confirmed,
        dispatched,
      ]),
      {
        id: ORDER_ID,
        customerId: 'customer-123',
        restaurantId: 'restaurant-456',
        items: [pizza],
        subtotal: 2598,
        totalAmount: 4599,
        currency: 'USD',
        notes: 'ring twice',
        deliveryAddress: null,
        contact: null,
        status: 'DISPATCHED',
        paymentId: 'payment-1',
        cancellationReason: null,
        createdAt: occurredAt(0),
        updatedAt: occurredAt(3),
        version: 4,
      },
    )
  })

  it('records the cancellation reason and optional fields as null', () => {
    const state = stateAfter([{ ...created, restaurantId: undefined }, cancelled])
    assert.equal(state?.status, 'CANCELLED')
    assert.equal(state?.cancellationReason, 'customer changed their mind')
    assert.equal(state?.restaurantId, null)
    assert.equal(state?.notes, null)
  })

  it('ignores events of an order never created rather than inventing one', () => {
    assert.equal(stateAfter([confirmed]), null)
  })
})

// ---------------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------------

describe('money', () => {
  it('decodes decimals to exact minor units through their string form', () => {
    for (const [input, minor] of [
      [12.99, 1299],
      ['12.99', 1299],
      [0.29, 29], // 0.29 * 100 is 28.999999999999996
      [1.1, 110],
      [100.0, 10000],
      ['7', 700],
      [0, 0],
    ] as const) {
      assert.equal(decimalAmount.parse(input), minor, `${input}`)
    }
  })

  it('rejects what is not an exact amount, saying why', () => {
    for (const [input, message] of [
      [1e-7, /plain decimal/],
      ['1e-7', /plain decimal/],
      [Number.NaN, /decimal amount/],
      [0.1 + 0.2, /at most 2 decimal places/],
      ['1.234', /at most 2 decimal places/],
      [-1, /negative/],
      ['12,99', /decimal amount/],
      ['', /decimal amount/],
      [1e300, /plain decimal/],
      [true, /decimal amount/],
    ] as const) {
      const result = decimalAmount.safeParse(input)
      assert.ok(!result.success, `${String(input)} should be rejected`)
      assert.match(result.error.issues[0]?.message ?? '', message, String(input))
    }
  })

  it('encodes minor units back to the decimal the wire carries', () => {
    assert.equal(toDecimal(1299), 12.99)
    assert.equal(z.encode(decimalAmount, 29), 0.29)
    assert.equal(formatAmount(2500), '25.00')
    assert.equal(formatAmount(5), '0.05')
  })
})

// ---------------------------------------------------------------------------------------------
// Contracts
// ---------------------------------------------------------------------------------------------

/** The field paths of a failed parse, as the HTTP layer reports them. */
function failedPaths(schema: z.ZodType, input: unknown): string[] {
  const result = schema.safeParse(input)
  assert.ok(!result.success, 'expected the input to be rejected')
  return result.error.issues.map((i) => i.path.join('.'))
}

describe('HTTP request bodies', () => {
  it("accepts seed 001's body verbatim", () => {
    assert.deepEqual(createOrderBody.parse(JSON.parse(SEED_001_BODY)), {
      customerId: 'customer-123',
      restaurantId: 'restaurant-456',
      totalAmount: 4599,
      items: [pizza],
      currency: 'USD',
    })
  })

  it("accepts seed 004's body verbatim", () => {
    assert.deepEqual(createOrderBody.parse(JSON.parse(SEED_004_BODY)), {
      customerId: 'customer123',
      items: [{ productId: 'product123', quantity: 1, price: 10000 }],
      currency: 'USD',
    })
  })

  it('reports each bad field by its path', () => {
    const body = JSON.parse(SEED_001_BODY)
    assert.deepEqual(failedPaths(createOrderBody, { ...body, items: [{ ...body.items[0], price: 12.999 }] }), [
      'items.0.price',
    ])
    assert.deepEqual(failedPaths(createOrderBody, { ...body, items: [{ ...body.items[0], quantity: 1.5 }] }), [
      'items.0.quantity',
    ])
    assert.deepEqual(failedPaths(createOrderBody, { ...body, items: [{ ...body.items[0], quantity: 0 }] }), [
      'items.0.quantity',
    ])
    assert.deepEqual(failedPaths(createOrderBody, { ...body, items: [{ price: 1, quantity: 1 }] }), [
      'items.0.menuItemId',
    ])
    assert.deepEqual(failedPaths(createOrderBody, { ...body, items: [{ ...body.items[0], productId: 'p' }] }), [
      'items.0.productId',
    ])
    assert.deepEqual(failedPaths(createOrderBody, { ...body, currency: 'usd' }), ['currency'])
    assert.deepEqual(failedPaths(createOrderBody, { ...body, items: [] }), ['items'])
    assert.deepEqual(failedPaths(createOrderBody, { items: body.items }), ['customerId'])
  })

  it('needs something to update', () => {
    assert.deepEqual(failedPaths(updateOrderBody, {}), [''])
    assert.deepEqual(updateOrderBody.parse({ notes: 'x' }), { notes: 'x' })
    // totalAmount is read (in minor units) so that a different one is refused, not silently dropped.
    assert.deepEqual(updateOrderBody.parse({ notes: 'x', totalAmount: 45.99 }), { notes: 'x', totalAmount: 4599 })
    assert.deepEqual(failedPaths(updateOrderBody, { totalAmount: 45.99 }), [''])
  })

  it('reads a status case-insensitively (seed 002 sends "confirmed")', () => {
    assert.deepEqual(changeStatusBody.parse({ status: 'confirmed', paymentId: 'p' }), {
      status: 'CONFIRMED',
      paymentId: 'p',
    })
    assert.deepEqual(failedPaths(changeStatusBody, { status: 'lost' }), ['status'])
    assert.deepEqual(failedPaths(cancelOrderBody, { reason: '  ' }), ['reason'])
  })
})

const envelope = {
  eventId: '0193f2a1-7b4c-7d2e-9f10-1a2b3c4d5e6f',
  aggregateId: ORDER_ID,
  occurredOn: '2025-12-25T10:00:00.000Z',
  version: 1,
}
const createdOnTheWire = {
  ...envelope,
  eventType: 'OrderCreated',
  schemaVersion: 1,
  customerId: 'customer-456',
  restaurantId: 'restaurant-789',
  totalAmount: 45.99,
  subtotal: 25.98,
  currency: 'USD',
  items: [{ menuItemId: 'item-1', name: 'Pizza', price: 12.99, quantity: 2 }],
}

describe('order events on the wire', () => {
  it('decodes an OrderCreated to minor units and encodes it back unchanged', () => {
    const v2 = { ...createdOnTheWire, schemaVersion: 2, deliveryAddress: null, contact: null }
    const decoded = decodeOrderEvent(JSON.stringify(v2))
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.ok(decoded.event.eventType === 'OrderCreated')
    assert.equal(decoded.event.totalAmount, 4599)
    assert.deepEqual(decoded.event.items, [pizza])
    assert.deepEqual(encodeOrderEvent(decoded.event), v2)
  })

  it('reads an OrderCreated of version 1 (no address, no contact) as version 2', () => {
    const decoded = decodeOrderEvent(JSON.stringify(createdOnTheWire))
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.ok(decoded.event.eventType === 'OrderCreated')
    assert.equal(decoded.event.schemaVersion, 2)
    assert.equal(decoded.event.deliveryAddress, null)
    assert.equal(decoded.event.contact, null)
  })

  it('refuses an address in clear on the wire: personal fields travel sealed only', () => {
    const address = { name: 'A', street: 'S', city: 'C', postalCode: 'P', country: 'DE' }
    const decoded = decodeOrderEvent(
      JSON.stringify({ ...createdOnTheWire, schemaVersion: 2, deliveryAddress: address, contact: null }),
    )
    assert.ok(!decoded.ok)
    assert.equal(decoded.reason, 'INVALID_EVENT')
    assert.match(decoded.message, /deliveryAddress/)
  })

  it('decodes every event type', () => {
    for (const data of [
      { eventType: 'OrderUpdated', notes: 'n', subtotal: 1, totalAmount: 2 },
      { eventType: 'OrderConfirmed', paymentId: 'payment-1' },
      { eventType: 'OrderCancelled', reason: 'r' },
      { eventType: 'OrderStatusChanged', from: 'CONFIRMED', to: 'DISPATCHED' },
    ]) {
      const decoded = orderEventRegistry.decode(JSON.stringify({ ...envelope, ...data }))
      assert.ok(decoded.ok, `${data.eventType}: ${JSON.stringify(decoded)}`)
    }
  })

  it('reports poison messages with a reason', () => {
    const poison = (raw: string) => {
      const decoded = decodeOrderEvent(raw)
      assert.ok(!decoded.ok)
      return decoded
    }
    assert.equal(poison('{not json').reason, 'NOT_JSON')
    assert.equal(poison(JSON.stringify({ ...envelope, eventType: 'OrderLost' })).reason, 'UNKNOWN_EVENT_TYPE')
    assert.equal(poison(JSON.stringify({ ...createdOnTheWire, eventId: 'abc' })).reason, 'INVALID_ENVELOPE')
    const missing = poison(JSON.stringify({ ...envelope, eventType: 'OrderConfirmed' }))
    assert.equal(missing.reason, 'INVALID_EVENT')
    assert.match(missing.message, /paymentId/)
    const inexact = poison(JSON.stringify({ ...createdOnTheWire, totalAmount: 45.999 }))
    assert.match(inexact.message, /totalAmount: must have at most 2 decimal places/)
    const unknownStatus = poison(JSON.stringify({ ...envelope, eventType: 'OrderStatusChanged', from: 'X', to: 'Y' }))
    assert.equal(unknownStatus.reason, 'INVALID_EVENT')
  })
})

describe('order commands on the wire', () => {
  const base = {
    commandId: '5f0c6a8e-2a7b-4c1d-9e3f-0a1b2c3d4e5f',
    orderId: ORDER_ID,
    issuedOn: '2025-12-25T10:05:00.000Z',
    correlationId: 'saga-1',
  }

  it('decodes ConfirmOrder, and the saga’s ApproveOrder as ConfirmOrder', () => {
    for (const commandType of ['ConfirmOrder', 'ApproveOrder']) {
      const decoded = decodeOrderCommand(JSON.stringify({ ...base, commandType, paymentId: 'payment-1' }))
      assert.ok(decoded.ok, JSON.stringify(decoded))
      assert.equal(decoded.command.commandType, 'ConfirmOrder')
      // A decoded message is a domain command as it is.
      given(created).when(decoded.command).thenEmits([confirmed])
    }
  })

  it('decodes the saga’s RejectOrder as CancelOrder', () => {
    const decoded = decodeOrderCommand(
      JSON.stringify({ ...base, commandType: 'RejectOrder', reason: 'payment declined' }),
    )
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.deepEqual(decoded.command, { ...base, commandType: 'CancelOrder', reason: 'payment declined' })
  })

  it('decodes ChangeOrderStatus with its status in any case', () => {
    const decoded = decodeOrderCommand(
      JSON.stringify({ ...base, commandType: 'ChangeOrderStatus', status: 'dispatched', expectedVersion: 2 }),
    )
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.ok(decoded.command.commandType === 'ChangeOrderStatus')
    assert.equal(decoded.command.status, 'DISPATCHED')
    assert.equal(decoded.command.expectedVersion, 2)
  })

  it('reports poison commands with a reason', () => {
    const poison = (message: unknown) => {
      const decoded = decodeOrderCommand(typeof message === 'string' ? message : JSON.stringify(message))
      assert.ok(!decoded.ok)
      return decoded
    }
    assert.equal(poison('not json').reason, 'NOT_JSON')
    assert.equal(poison({ ...base, commandType: 'ShipOrder' }).reason, 'UNKNOWN_COMMAND_TYPE')
    const badEnvelope = poison({ ...base, commandId: 'x', issuedOn: 'yesterday', commandType: 'ConfirmOrder' })
    assert.equal(badEnvelope.reason, 'INVALID_ENVELOPE')
    assert.match(badEnvelope.message, /commandId/)
    assert.match(badEnvelope.message, /issuedOn/)
    const missing = poison({ ...base, commandType: 'ConfirmOrder' })
    assert.equal(missing.reason, 'INVALID_COMMAND')
    assert.match(missing.message, /paymentId/)
    assert.equal(poison({ ...base, commandType: 'ChangeOrderStatus', status: 'LOST' }).reason, 'INVALID_COMMAND')
  })
})
