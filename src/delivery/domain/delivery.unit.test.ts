import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodeDeliveryCommand } from '../../contracts/delivery/commands.ts'
import {
  type DeliveryEvent,
  type DeliveryEventData,
  decodeDeliveryEvent,
  deliveryStreamId,
  encodeDeliveryEvent,
} from '../../contracts/delivery/events.ts'
import type { DispatchEvent } from '../../contracts/dispatch/events.ts'
import { deciderSpec } from '../../platform/testing/decider-spec.ts'
import { type DeliveryCommand, deliveryCommandFor, deliveryDecider, isDeliveryDue } from './delivery.ts'

const ORDER_ID = 'order-1'
const NOW = '2026-01-01T12:00:00.000Z'
const spec = deciderSpec(deliveryDecider, { aggregateId: deliveryStreamId(ORDER_ID), now: NOW })

const scheduleCommand: DeliveryCommand = {
  commandType: 'ScheduleDelivery',
  orderId: ORDER_ID,
  shipmentId: 'shipment-order-1',
  delayMs: 5_000,
}
const deliver: DeliveryCommand = { commandType: 'DeliverOrder', orderId: ORDER_ID }
const scheduled: DeliveryEventData = {
  eventType: 'DeliveryScheduled',
  orderId: ORDER_ID,
  shipmentId: 'shipment-order-1',
  dueAt: '2026-01-01T12:00:05.000Z',
}
const delivered: DeliveryEventData = { eventType: 'OrderDelivered', orderId: ORDER_ID, shipmentId: 'shipment-order-1' }

describe('delivery decider', () => {
  it('schedules a dispatched order for the configured delay after now', () => {
    spec.given().when(scheduleCommand).thenEmits([scheduled])
  })

  it('delivers a scheduled order once', () => {
    spec.given(scheduled).when(deliver).thenEmits([delivered])
    spec.given(scheduled, delivered).when(deliver).thenNothingHappened()
  })

  it('schedules once: ScheduleDelivery again emits nothing, also once delivered', () => {
    spec.given(scheduled).when(scheduleCommand).thenNothingHappened()
    spec.given(scheduled, delivered).when(scheduleCommand).thenNothingHappened()
  })

  it('refuses to deliver what was never scheduled, and a negative delay', () => {
    spec.given().when(deliver).thenRejects({ code: 'NOT_FOUND' })
    spec
      .given()
      .when({ ...scheduleCommand, delayMs: -1 })
      .thenRejects({ code: 'VALIDATION_FAILED', fields: ['delayMs'] })
  })

  it('is due from dueAt on, and no longer once delivered', () => {
    const state = spec.given(scheduled).state
    assert.equal(isDeliveryDue(state, '2026-01-01T12:00:04.999Z'), false)
    assert.equal(isDeliveryDue(state, '2026-01-01T12:00:05.000Z'), true)
    assert.equal(isDeliveryDue(spec.given(scheduled, delivered).state, '2026-01-01T13:00:00.000Z'), false)
    assert.equal(isDeliveryDue(null, NOW), false)
  })
})

describe('delivery choreography mapping', () => {
  const envelope = {
    eventId: '01890a5d-ac96-774b-bcce-b302099a8057',
    aggregateId: 'dispatch-order-1',
    occurredOn: NOW,
    version: 1,
    schemaVersion: 1,
  }

  it('schedules the delivery of OrderDispatched’s shipment, and ignores quotes', () => {
    const dispatched = {
      ...envelope,
      eventType: 'OrderDispatched',
      orderId: ORDER_ID,
      shipmentId: 'shipment-order-1',
      shippingCost: 300,
      currency: 'USD',
    } as DispatchEvent
    assert.deepEqual(deliveryCommandFor(dispatched), {
      commandType: 'ScheduleDelivery',
      orderId: ORDER_ID,
      shipmentId: 'shipment-order-1',
    })
    const quoted = {
      ...envelope,
      eventType: 'ShipmentQuoted',
      orderId: ORDER_ID,
      orderAmount: 15_000,
      shippingCost: 300,
      currency: 'USD',
    } as DispatchEvent
    assert.equal(deliveryCommandFor(quoted), null)
  })
})

describe('delivery contracts', () => {
  it('decodes ScheduleDelivery and refuses one without a shipment', () => {
    const base = {
      commandId: '9b2f7c1e-2d3a-4b5c-8d9e-0f1a2b3c4d5e',
      commandType: 'ScheduleDelivery',
      orderId: ORDER_ID,
      issuedOn: '2026-01-01T12:00:00Z',
    }
    assert.ok(decodeDeliveryCommand(JSON.stringify({ ...base, shipmentId: 'shipment-order-1' })).ok)
    const missing = decodeDeliveryCommand(JSON.stringify(base))
    assert.ok(!missing.ok)
    assert.equal(missing.reason, 'INVALID_COMMAND')
  })

  it('round-trips an event, dueAt in canonical UTC', () => {
    const event = {
      ...scheduled,
      eventId: '01890a5d-ac96-774b-bcce-b302099a8057',
      aggregateId: deliveryStreamId(ORDER_ID),
      occurredOn: NOW,
      version: 1,
      schemaVersion: 2,
    } as DeliveryEvent
    const decoded = decodeDeliveryEvent(JSON.stringify(encodeDeliveryEvent(event)))
    assert.ok(decoded.ok, JSON.stringify(decoded))
    assert.deepEqual(decoded.event, event)
  })
})
