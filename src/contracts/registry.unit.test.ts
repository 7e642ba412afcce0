import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { commandEnvelopeSchema, envelopeSchema } from './envelope.ts'
import { decodeOrderCommand, ORDER_COMMAND_ALIASES, orderCommandRegistry } from './order/commands.ts'
import {
  createRegistry,
  type DecodeFailure,
  type DecodeResult,
  type Discriminator,
  type TopicContract,
} from './registry.ts'

// A small service of its own, so the registry is tested apart from the order contracts.
const parcelShipped = envelopeSchema.extend({ eventType: z.literal('ParcelShipped'), carrier: z.string() })
const parcelShippedV2 = envelopeSchema.extend({
  eventType: z.literal('ParcelShipped'),
  carrier: z.object({ name: z.string() }),
})
const shipParcel = commandEnvelopeSchema.extend({ commandType: z.literal('ShipParcel'), carrier: z.string() })

const parcelEvents: TopicContract<'eventType'> = {
  topic: 'parcel-events',
  description: 'parcels',
  key: 'the parcel id',
  discriminator: 'eventType',
  messages: [
    {
      eventType: 'ParcelShipped',
      versions: { 1: parcelShipped, 2: parcelShippedV2 },
      upcasters: { 1: ({ carrier, ...rest }) => ({ ...rest, carrier: { name: carrier } }) },
    },
  ],
}

const parcelCommands: TopicContract<'commandType'> = {
  topic: 'parcel_commands',
  description: 'parcel commands',
  key: 'the parcel id',
  discriminator: 'commandType',
  messages: [{ eventType: 'ShipParcel', aliases: ['SendParcel', 'DispatchParcel'], versions: { 1: shipParcel } }],
}

const event = {
  eventId: '0193f2a1-7b4c-7d2e-9f10-1a2b3c4d5e6f',
  aggregateId: 'parcel-1',
  occurredOn: '2026-11-30T19:00:00.000Z',
  version: 1,
  eventType: 'ParcelShipped',
  carrier: 'DHL',
}

const command = {
  commandId: '5f0c6a8e-2a7b-4c1d-9e3f-0a1b2c3d4e5f',
  issuedOn: '2026-11-30T19:00:00.000Z',
  commandType: 'ShipParcel',
  carrier: 'DHL',
}

const failure = <D extends Discriminator>(result: DecodeResult<D>): DecodeFailure<D> => {
  assert.ok(!result.ok, JSON.stringify(result))
  return result as DecodeFailure<D>
}

describe('the registry on an event topic', () => {
  const registry = createRegistry(parcelEvents)

  it('decodes an event with its envelope, at the newest schema version', () => {
    const v2 = registry.decode(JSON.stringify({ ...event, schemaVersion: 2, carrier: { name: 'DHL' } }))
    assert.ok(v2.ok, JSON.stringify(v2))
    assert.deepEqual(v2.event, { ...event, schemaVersion: 2, carrier: { name: 'DHL' } })
    // No schemaVersion is version 1, which its upcaster brings to version 2.
    const v1 = registry.decode(JSON.stringify(event))
    assert.ok(v1.ok, JSON.stringify(v1))
    assert.deepEqual(v1.event, v2.event)
  })

  it('gives the same answers when built from the list of contracts (the older form)', () => {
    const fromList = createRegistry(parcelEvents.messages)
    assert.deepEqual(fromList.decode(JSON.stringify(event)), registry.decode(JSON.stringify(event)))
    assert.equal(failure(fromList.decode(JSON.stringify({ ...event, eventType: 'X' }))).reason, 'UNKNOWN_EVENT_TYPE')
  })

  it('names each poison message’s reason', () => {
    assert.equal(failure(registry.decode('{')).reason, 'NOT_JSON')
    const envelope = failure(registry.decode(JSON.stringify({ ...event, occurredOn: 'soon' })))
    assert.equal(envelope.reason, 'INVALID_ENVELOPE')
    assert.match(envelope.message, /occurredOn/)
    const unknown = failure(registry.decode(JSON.stringify({ ...event, eventType: 'ParcelLost' })))
    assert.deepEqual(unknown, { ok: false, reason: 'UNKNOWN_EVENT_TYPE', message: "unknown eventType 'ParcelLost'" })
    const invalid = failure(registry.decode(JSON.stringify({ ...event, carrier: 7 })))
    assert.equal(invalid.reason, 'INVALID_EVENT')
    assert.match(invalid.message, /carrier/)
    const version = failure(registry.decode(JSON.stringify({ ...event, schemaVersion: 3 })))
    assert.deepEqual(version, {
      ok: false,
      reason: 'UNKNOWN_SCHEMA_VERSION',
      message: 'ParcelShipped schemaVersion 3 is newer than this reader knows (2): upgrade the consumer',
    })
  })
})

describe('the registry on a command topic', () => {
  const registry = createRegistry(parcelCommands)

  it('decodes a command with its envelope', () => {
    const result = registry.decode(JSON.stringify({ ...command, correlationId: 'c-1', expectedVersion: 0 }))
    assert.ok(result.ok, JSON.stringify(result))
    assert.deepEqual(result.command, { ...command, correlationId: 'c-1', expectedVersion: 0 })
  })

  it('resolves aliases to the one name the handler knows', () => {
    for (const alias of ['SendParcel', 'DispatchParcel']) {
      const result = registry.decode(JSON.stringify({ ...command, commandType: alias }))
      assert.ok(result.ok, JSON.stringify(result))
      assert.equal(result.command.commandType, 'ShipParcel')
    }
    assert.equal(registry.resolve('SendParcel'), 'ShipParcel')
    assert.equal(registry.resolve('ShipParcel'), 'ShipParcel')
    assert.equal(registry.resolve('ParcelShipped'), undefined)
    assert.ok(registry.has('DispatchParcel'))
    assert.ok(!registry.has('LoseParcel'))
  })

  it('names each poison command’s reason with the command words', () => {
    assert.equal(failure(registry.decode('not json')).reason, 'NOT_JSON')
    const envelope = failure(registry.decode(JSON.stringify({ ...command, commandId: 'x', issuedOn: 'now' })))
    assert.equal(envelope.reason, 'INVALID_ENVELOPE')
    assert.match(envelope.message, /commandId/)
    assert.match(envelope.message, /issuedOn/)
    assert.equal(failure(registry.decode(JSON.stringify({ ...command, commandType: '' }))).reason, 'INVALID_ENVELOPE')
    const unknown = failure(registry.decode(JSON.stringify({ ...command, commandType: 'LoseParcel' })))
    assert.deepEqual(unknown, {
      ok: false,
      reason: 'UNKNOWN_COMMAND_TYPE',
      message: "unknown commandType 'LoseParcel'",
    })
    const invalid = failure(registry.decode(JSON.stringify({ ...command, commandType: 'SendParcel', carrier: 1 })))
    assert.equal(invalid.reason, 'INVALID_COMMAND')
    assert.match(invalid.message, /carrier/)
    const newer = failure(registry.decode(JSON.stringify({ ...command, schemaVersion: 2 })))
    assert.equal(newer.reason, 'UNKNOWN_SCHEMA_VERSION')
    assert.equal(failure(registry.decode(JSON.stringify({ ...command, schemaVersion: 0 }))).reason, 'INVALID_ENVELOPE')
  })

  it('keeps a schemaVersion below 1 that the envelope lets through an invalid command', () => {
    const lenient = createRegistry({
      ...parcelCommands,
      envelope: commandEnvelopeSchema.extend({ schemaVersion: z.number().int().optional() }),
    })
    assert.deepEqual(failure(lenient.decode(JSON.stringify({ ...command, schemaVersion: 0 }))), {
      ok: false,
      reason: 'INVALID_COMMAND',
      message: 'ShipParcel has no schemaVersion 0',
    })
  })

  it('checks a topic’s own envelope when it has one', () => {
    const strict = createRegistry({
      ...parcelCommands,
      envelope: commandEnvelopeSchema.extend({ parcelId: z.string().min(1) }),
    })
    const result = failure(strict.decode(JSON.stringify(command)))
    assert.equal(result.reason, 'INVALID_ENVELOPE')
    assert.match(result.message, /parcelId/)
    assert.ok(strict.decode(JSON.stringify({ ...command, parcelId: 'p-1' })).ok)
  })

  it('refuses a name that stands for two types', () => {
    assert.throws(
      () =>
        createRegistry({
          ...parcelCommands,
          messages: [...parcelCommands.messages, { eventType: 'SendParcel', versions: { 1: shipParcel } }],
        }),
      /'SendParcel' names both ShipParcel and SendParcel/,
    )
  })
})

describe('order commands through the registry', () => {
  const base = {
    commandId: '5f0c6a8e-2a7b-4c1d-9e3f-0a1b2c3d4e5f',
    orderId: 'order-1',
    issuedOn: '2026-11-30T19:00:00.000Z',
  }

  it('is what decodeOrderCommand answers', () => {
    const raw = JSON.stringify({ ...base, commandType: 'RejectOrder', reason: 'declined' })
    const viaRegistry = orderCommandRegistry.decode(raw)
    const viaDecoder = decodeOrderCommand(raw)
    assert.ok(viaRegistry.ok && viaDecoder.ok)
    assert.deepEqual(viaDecoder.command, viaRegistry.command)
    assert.deepEqual(viaDecoder.command, { ...base, commandType: 'CancelOrder', reason: 'declined' })
  })

  it('lists the saga’s aliases', () => {
    assert.deepEqual(ORDER_COMMAND_ALIASES, { ApproveOrder: 'ConfirmOrder', RejectOrder: 'CancelOrder' })
  })

  it('treats a command without an orderId as an envelope fault, as before', () => {
    const { orderId: _, ...withoutOrder } = base
    const result = decodeOrderCommand(JSON.stringify({ ...withoutOrder, commandType: 'CancelOrder', reason: 'r' }))
    assert.ok(!result.ok)
    assert.equal(result.reason, 'INVALID_ENVELOPE')
    assert.match(result.message, /orderId/)
  })
})
