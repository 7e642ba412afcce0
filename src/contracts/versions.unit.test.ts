import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import {
  defineCommandTopic,
  defineEventTopic,
  earlierVersion,
  type MessageDefinition,
  type WireData,
} from './define.ts'
import { commandEnvelopeSchema, eventSchema } from './envelope.ts'
import { decimalAmount } from './money.ts'

// A shipment quote that changed twice, so that every step of the chain is seen:
// v1 { cost }, v2 added `carrier`, v3 moved both under `shipping`.
const quotedV1 = eventSchema(
  z.object({ eventType: z.literal('ShipmentQuoted'), orderId: z.string(), cost: decimalAmount }),
)
const quotedV2 = eventSchema(
  z.object({ eventType: z.literal('ShipmentQuoted'), orderId: z.string(), cost: decimalAmount, carrier: z.string() }),
)
const quotedV3 = eventSchema(
  z.object({
    eventType: z.literal('ShipmentQuoted'),
    orderId: z.string(),
    shipping: z.object({ cost: decimalAmount, carrier: z.string() }),
  }),
)

/** What each upcaster was given, to show it sees wire-form own fields and no envelope. */
const seen: Record<string, unknown>[] = []

const v1ToV2 = (v1: WireData<typeof quotedV1>): WireData<typeof quotedV2> => {
  seen.push(v1)
  return { ...v1, carrier: 'unknown' }
}
const v2ToV3 = ({ cost, carrier, ...rest }: WireData<typeof quotedV2>): WireData<typeof quotedV3> => ({
  ...rest,
  shipping: { cost, carrier },
})

const quoted = {
  schema: quotedV3,
  version: 3,
  earlier: { 1: { schema: quotedV1, upcast: v1ToV2 }, 2: { schema: quotedV2, upcast: v2ToV3 } },
  aliases: ['ShippingQuoted'],
  description: 'The shipping cost of an order was worked out.',
} satisfies MessageDefinition

const quotes = defineEventTopic({
  topic: 'quotes',
  description: 'shipment quotes',
  key: { description: 'the order id', of: (event) => event.orderId },
  messages: { ShipmentQuoted: quoted },
})

const envelope = {
  eventId: '0193f2a1-7b4c-7d2e-9f10-1a2b3c4d5e6f',
  aggregateId: 'dispatch-order-1',
  occurredOn: '2026-11-30T19:00:00.000Z',
  version: 1,
  correlationId: 'c-1',
}
const v1 = { ...envelope, eventType: 'ShipmentQuoted', schemaVersion: 1, orderId: 'order-1', cost: 4.99 }
const v2 = { ...v1, schemaVersion: 2, carrier: 'DHL' }
const v3 = {
  ...envelope,
  eventType: 'ShipmentQuoted',
  schemaVersion: 3,
  orderId: 'order-1',
  shipping: { cost: 4.99, carrier: 'DHL' },
}

const decoded = (raw: object) => {
  const result = quotes.decode(JSON.stringify(raw))
  assert.ok(result.ok, JSON.stringify(result))
  return result.event
}
const refused = (raw: object) => {
  const result = quotes.decode(JSON.stringify(raw))
  assert.ok(!result.ok, JSON.stringify(result))
  return result
}

describe('a message type with versions', () => {
  it('reads a version 1 message as the newest, through each upcaster, amounts decoded at the end', () => {
    seen.length = 0
    assert.deepEqual(decoded(v1), {
      ...envelope,
      eventType: 'ShipmentQuoted',
      schemaVersion: 3,
      orderId: 'order-1',
      shipping: { cost: 499, carrier: 'unknown' },
    })
    // Wire form (the decimal as sent), without the envelope, type or schemaVersion.
    assert.deepEqual(seen, [{ orderId: 'order-1', cost: 4.99 }])
  })

  it('reads version 2 through the last upcaster only, and version 3 as it is', () => {
    seen.length = 0
    assert.deepEqual(decoded(v2).shipping, { cost: 499, carrier: 'DHL' })
    assert.deepEqual(seen, [])
    assert.deepEqual(decoded(v3), { ...v3, shipping: { cost: 499, carrier: 'DHL' } })
  })

  it('reads a message without schemaVersion as version 1, and an alias at an older version', () => {
    const { schemaVersion: _, ...unversioned } = v1
    assert.equal(decoded(unversioned).schemaVersion, 3)
    assert.deepEqual(decoded({ ...v2, eventType: 'ShippingQuoted' }).eventType, 'ShipmentQuoted')
  })

  it('checks an older message against its own version’s schema, and each upcast against the next', () => {
    const bad = refused({ ...v1, cost: 'a lot' })
    assert.equal(bad.reason, 'INVALID_EVENT')
    assert.match(bad.message, /^ShipmentQuoted schemaVersion 1: cost: /)
    // Valid as version 3, but it says it is version 2: version 2's schema wants `cost` and `carrier`.
    assert.match(refused({ ...v3, schemaVersion: 2 }).message, /^ShipmentQuoted schemaVersion 2: cost: .*carrier: /)
  })

  it('refuses a schemaVersion newer than the newest it knows, with a reason of its own', () => {
    assert.deepEqual(refused({ ...v3, schemaVersion: 4 }), {
      ok: false,
      reason: 'UNKNOWN_SCHEMA_VERSION',
      message: 'ShipmentQuoted schemaVersion 4 is newer than this reader knows (3): upgrade the consumer',
    })
  })

  it('names the newest version of each type', () => {
    assert.equal(quotes.latestVersion('ShipmentQuoted'), 3)
    assert.equal(quotes.latestVersion('ShippingQuoted'), 3)
    assert.equal(quotes.registry.latestVersion('ShipmentLost'), undefined)
    assert.throws(() => quotes.latestVersion('ShipmentLost'), /quotes carries no eventType 'ShipmentLost'/)
  })

  it('encodes what writers write: the newest version', () => {
    const event = decoded(v1)
    assert.deepEqual(quotes.encode(event), { ...v3, shipping: { cost: 4.99, carrier: 'unknown' } })
    assert.equal(quotes.encode({ ...event, schemaVersion: 1 }).schemaVersion, 3)
  })
})

describe('upcasting stored data (the event store’s read path)', () => {
  const stored = { orderId: 'order-1', cost: 4.99 }

  it('brings a version 1 event’s data to the newest version, in wire form, without the envelope', () => {
    assert.deepEqual(quotes.upcast('ShipmentQuoted', 1, stored), {
      ok: true,
      data: { orderId: 'order-1', shipping: { cost: 4.99, carrier: 'unknown' } },
      schemaVersion: 3,
    })
    assert.deepEqual(quotes.upcast('ShipmentQuoted', 2, { ...stored, carrier: 'DHL' }), {
      ok: true,
      data: { orderId: 'order-1', shipping: { cost: 4.99, carrier: 'DHL' } },
      schemaVersion: 3,
    })
  })

  it('gives data already at the newest version back as it is', () => {
    const newest = { orderId: 'order-1', shipping: { cost: 4.99, carrier: 'DHL' } }
    const result = quotes.upcast('ShipmentQuoted', 3, newest)
    assert.ok(result.ok)
    assert.equal(result.data, newest)
  })

  it('answers with decode’s reasons', () => {
    assert.deepEqual(quotes.upcast('ShipmentLost', 1, stored), {
      ok: false,
      reason: 'UNKNOWN_EVENT_TYPE',
      message: "unknown eventType 'ShipmentLost'",
    })
    const newer = quotes.upcast('ShipmentQuoted', 4, stored)
    assert.ok(!newer.ok)
    assert.equal(newer.reason, 'UNKNOWN_SCHEMA_VERSION')
    assert.deepEqual(quotes.upcast('ShipmentQuoted', 0, stored), {
      ok: false,
      reason: 'INVALID_EVENT',
      message: 'ShipmentQuoted has no schemaVersion 0',
    })
    const invalid = quotes.upcast('ShipmentQuoted', 1, { orderId: 'order-1' })
    assert.ok(!invalid.ok)
    assert.equal(invalid.reason, 'INVALID_EVENT')
    assert.match(invalid.message, /^ShipmentQuoted schemaVersion 1: cost: /)
  })

  it('turns an upcaster that throws into INVALID_EVENT, naming the version', () => {
    const fragile = defineEventTopic({
      topic: 'fragile',
      description: 'd',
      key: { description: 'k', of: (event) => event.orderId },
      messages: {
        ShipmentQuoted: {
          schema: quotedV2,
          version: 2,
          earlier: {
            1: {
              schema: quotedV1,
              upcast: () => {
                throw new Error('no carrier for order-1')
              },
            },
          },
          description: 'd',
        },
      },
    })
    assert.deepEqual(fragile.upcast('ShipmentQuoted', 1, stored), {
      ok: false,
      reason: 'INVALID_EVENT',
      message: 'ShipmentQuoted schemaVersion 1: its upcaster failed: no carrier for order-1',
    })
    assert.match(
      (fragile.decode(JSON.stringify(v1)) as { message: string }).message,
      /schemaVersion 1: its upcaster failed/,
    )
  })
})

describe('a command type with versions', () => {
  const shipV1 = commandEnvelopeSchema.extend({ commandType: z.literal('Ship'), orderId: z.string(), to: z.string() })
  const shipV2 = commandEnvelopeSchema.extend({
    commandType: z.literal('Ship'),
    orderId: z.string(),
    to: z.object({ city: z.string() }),
  })
  const ship = defineCommandTopic({
    topic: 'ship_commands',
    description: 'd',
    messages: {
      Ship: {
        schema: shipV2,
        version: 2,
        earlier: { 1: earlierVersion(shipV1, ({ to, ...rest }) => ({ ...rest, to: { city: to } })) },
        description: 'd',
      },
    },
    key: { description: 'the order id', of: (command) => command.orderId },
  })

  it('reads a command without schemaVersion as version 1, and says it is now version 2', () => {
    const command = {
      commandId: '5f0c6a8e-2a7b-4c1d-9e3f-0a1b2c3d4e5f',
      issuedOn: '2026-11-30T19:00:00.000Z',
      commandType: 'Ship' as const,
      orderId: 'order-1',
      to: 'Berlin',
    }
    const result = ship.decode(JSON.stringify(command))
    assert.ok(result.ok, JSON.stringify(result))
    assert.deepEqual(result.command, { ...command, to: { city: 'Berlin' }, schemaVersion: 2 })
    // Its writers say which version they write.
    assert.deepEqual(ship.encode({ ...command, to: { city: 'Berlin' } }), {
      ...command,
      to: { city: 'Berlin' },
      schemaVersion: 2,
    })
    const newer = ship.decode(JSON.stringify({ ...command, schemaVersion: 3 }))
    assert.ok(!newer.ok)
    assert.equal(newer.reason, 'UNKNOWN_SCHEMA_VERSION')
  })
})

describe('versions that could not all be read are refused when the topic is defined', () => {
  const define = (message: MessageDefinition) => () =>
    defineEventTopic({
      topic: 'quotes',
      description: 'd',
      key: { description: 'k', of: () => 'k' },
      messages: { ShipmentQuoted: message },
    })

  it('refuses a gap between 1 and the newest', () => {
    assert.throws(
      define({ ...quoted, earlier: { 1: quoted.earlier[1] } }),
      /^Error: contracts: quotes ShipmentQuoted has no schemaVersion 2: every version from 1 to the newest \(3\) must be declared/,
    )
    assert.throws(
      define({ ...quoted, earlier: { 2: quoted.earlier[2] } }),
      /contracts: quotes ShipmentQuoted has no schemaVersion 1/,
    )
  })

  it('refuses an earlier version without its upcaster', () => {
    const noUpcaster = { schema: quotedV1 } as unknown as (typeof quoted.earlier)[1]
    assert.throws(
      define({ ...quoted, earlier: { ...quoted.earlier, 1: noUpcaster } }),
      /contracts: quotes ShipmentQuoted schemaVersion 1 has no upcaster to schemaVersion 2/,
    )
  })

  it('refuses an earlier version that is not below the newest', () => {
    assert.throws(
      define({ ...quoted, earlier: { ...quoted.earlier, 3: quoted.earlier[2] } }),
      /contracts: quotes ShipmentQuoted: earlier lists schemaVersion 3, which is not below the newest \(3\)/,
    )
    assert.throws(
      define({ ...quoted, earlier: { ...quoted.earlier, 5: quoted.earlier[2] } }),
      /earlier lists schemaVersion 5, which is not below the newest \(3\)/,
    )
    assert.doesNotThrow(define({ schema: quotedV1, version: 1, earlier: {}, description: 'd' }))
  })

  it('refuses a version that is not a whole number from 1', () => {
    assert.throws(
      define({ ...quoted, earlier: { ...quoted.earlier, 0: quoted.earlier[1] } }),
      /contracts: quotes ShipmentQuoted has schemaVersion 0: versions are whole numbers from 1/,
    )
    assert.throws(define({ ...quoted, version: 0 }), /not below the newest \(0\)/)
  })
})
