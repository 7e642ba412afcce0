import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { decodeOrderCommand } from './order/commands.ts'
import { decodeOrderEvent, encodeOrderEvent } from './order/events.ts'
import { CANONICAL_TIMESTAMP, parseTimestamp, timestamp } from './timestamp.ts'

const decoded = (text: unknown) => {
  const result = timestamp.safeParse(text)
  assert.ok(result.success, `${String(text)}: ${JSON.stringify(result.error?.issues)}`)
  return result.data
}

const rejection = (text: unknown) => {
  const result = timestamp.safeParse(text)
  assert.ok(!result.success, `${String(text)} was accepted as ${JSON.stringify(result.data)}`)
  return result.error.issues.map((i) => i.message).join('; ')
}

describe('timestamp', () => {
  it('reads what other producers write (the issue’s examples and seed 001’s) as UTC', () => {
    assert.equal(decoded('2026-11-30T19:00:00'), '2026-11-30T19:00:00.000Z')
    assert.equal(decoded('2026-11-30T19:00:00.123456'), '2026-11-30T19:00:00.123Z')
    assert.equal(decoded('2026-11-30T19:00:00+00:00'), '2026-11-30T19:00:00.000Z')
    assert.equal(decoded('2025-12-25T10:00:00'), '2025-12-25T10:00:00.000Z')
  })

  it('keeps a canonical timestamp as it is', () => {
    for (const text of ['2026-11-30T19:00:00.000Z', '2024-02-29T23:59:59.999Z', new Date().toISOString()]) {
      assert.equal(decoded(text), text)
    }
  })

  it('writes every form as YYYY-MM-DDTHH:mm:ss.sssZ', () => {
    for (const text of [
      '2026-11-30T19:00:00Z',
      '2026-11-30T19:00:00z',
      '2026-11-30t19:00:00Z',
      '2026-11-30 19:00:00',
      '2026-11-30T19:00:00.1Z',
      '2026-11-30T19:00:00.123456789+01:00',
      '2026-11-30T19:00:00-0830',
      '2026-11-30T19:00:00+05',
    ]) {
      assert.match(decoded(text), CANONICAL_TIMESTAMP, text)
    }
  })

  it('converts an offset to UTC, across days, months, years and leap days', () => {
    assert.equal(decoded('2026-11-30T19:00:00+01:00'), '2026-11-30T18:00:00.000Z')
    assert.equal(decoded('2026-11-30T19:00:00+0530'), '2026-11-30T13:30:00.000Z')
    assert.equal(decoded('2026-12-31T20:00:00-05:00'), '2027-01-01T01:00:00.000Z')
    assert.equal(decoded('2024-03-01T01:00:00+02:00'), '2024-02-29T23:00:00.000Z')
    assert.equal(decoded('2026-01-01T00:30:00+01:00'), '2025-12-31T23:30:00.000Z')
  })

  it('truncates digits beyond milliseconds rather than rounding into the next second', () => {
    assert.equal(decoded('2026-12-31T23:59:59.9999999Z'), '2026-12-31T23:59:59.999Z')
    assert.equal(decoded('2026-11-30T19:00:00.123999'), '2026-11-30T19:00:00.123Z')
    assert.equal(decoded('2026-11-30T19:00:00.5'), '2026-11-30T19:00:00.500Z')
  })

  it('reads years below 100 as written, not as 19xx', () => {
    assert.equal(decoded('0099-06-01T00:00:00Z'), '0099-06-01T00:00:00.000Z')
  })

  it('rejects impossible dates and times with a message that says why', () => {
    assert.match(rejection('2026-02-30T00:00:00Z'), /2026-02-30 is not a date: February 2026 has 28 days/)
    assert.match(rejection('2026-04-31T00:00:00Z'), /April 2026 has 30 days/)
    assert.match(rejection('1900-02-29T00:00:00Z'), /February 1900 has 28 days/)
    assert.equal(decoded('2000-02-29T00:00:00Z'), '2000-02-29T00:00:00.000Z')
    assert.match(rejection('2026-13-01T00:00:00Z'), /no month 13/)
    assert.match(rejection('2026-11-00T00:00:00Z'), /not a date/)
    assert.match(rejection('2026-11-30T24:00:00Z'), /not a time of day/)
    assert.match(rejection('2026-11-30T19:60:00Z'), /not a time of day/)
    assert.match(rejection('2026-11-30T19:00:00+24:00'), /not a UTC offset/)
  })

  it('rejects what is not a date-time', () => {
    for (const text of [
      'yesterday',
      '',
      '2026-11-30',
      '2026-11-30T19:00Z',
      '2026-11-30T19:00:00.Z',
      '2026-11-30T19:00:00.1234567890Z',
      '20261130T190000Z',
      ' 2026-11-30T19:00:00Z',
      '2026-11-30T19:00:00 UTC',
    ]) {
      assert.match(rejection(text), /must be an ISO 8601 date-time such as/, JSON.stringify(text))
    }
    assert.match(rejection(1764529200000), /must be an ISO 8601 date-time string/)
    assert.equal(parseTimestamp('9999-12-31T23:00:00-02:00').ok, false)
  })

  it('encodes a UTC timestamp unchanged and refuses one with an offset', () => {
    assert.equal(z.encode(timestamp, '2026-11-30T19:00:00.000Z'), '2026-11-30T19:00:00.000Z')
    assert.equal(z.encode(timestamp, '2025-12-25T10:00:00Z'), '2025-12-25T10:00:00Z')
    assert.throws(() => z.encode(timestamp, '2026-11-30T19:00:00+01:00'))
  })
})

describe('timestamps in envelopes', () => {
  const event = {
    eventId: '0193f2a1-7b4c-7d2e-9f10-1a2b3c4d5e6f',
    aggregateId: 'order-1',
    version: 1,
    eventType: 'OrderCancelled',
    schemaVersion: 1,
    reason: 'out of stock',
  }

  it('decodes an event whose occurredOn Python wrote, instead of dead-lettering it', () => {
    for (const [occurredOn, utc] of [
      ['2026-11-30T19:00:00', '2026-11-30T19:00:00.000Z'],
      ['2026-11-30T19:00:00.123456', '2026-11-30T19:00:00.123Z'],
      ['2026-11-30T19:00:00+00:00', '2026-11-30T19:00:00.000Z'],
    ]) {
      const result = decodeOrderEvent(JSON.stringify({ ...event, occurredOn }))
      assert.ok(result.ok, JSON.stringify(result))
      assert.equal(result.event.occurredOn, utc)
    }
  })

  it('round-trips a stored event (canonical occurredOn) unchanged', () => {
    const wire = { ...event, occurredOn: '2026-11-30T19:00:00.123Z' }
    const result = decodeOrderEvent(JSON.stringify(wire))
    assert.ok(result.ok, JSON.stringify(result))
    assert.deepEqual(encodeOrderEvent(result.event), wire)
  })

  it('reports a bad occurredOn as INVALID_ENVELOPE, naming the field', () => {
    const result = decodeOrderEvent(JSON.stringify({ ...event, occurredOn: '2026-02-30T00:00:00' }))
    assert.ok(!result.ok)
    assert.equal(result.reason, 'INVALID_ENVELOPE')
    assert.match(result.message, /occurredOn: 2026-02-30 is not a date/)
  })

  it('decodes a command whose issuedOn has no offset or microseconds', () => {
    for (const [issuedOn, utc] of [
      ['2025-12-25T10:00:00', '2025-12-25T10:00:00.000Z'],
      ['2026-11-30T19:00:00.123456', '2026-11-30T19:00:00.123Z'],
      ['2026-11-30T21:00:00+02:00', '2026-11-30T19:00:00.000Z'],
    ]) {
      const result = decodeOrderCommand(
        JSON.stringify({
          commandId: '5f0c6a8e-2a7b-4c1d-9e3f-0a1b2c3d4e5f',
          orderId: 'order-1',
          issuedOn,
          commandType: 'ConfirmOrder',
          paymentId: 'payment-1',
        }),
      )
      assert.ok(result.ok, JSON.stringify(result))
      assert.equal(result.command.issuedOn, utc)
    }
  })
})
