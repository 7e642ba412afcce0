import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { z } from 'zod'
import {
  checkSchemas,
  Rules,
  SCHEMAS_DIR,
  type SchemaBreak,
  systemTopics,
  updateSchemas,
} from '../../scripts/schemas.ts'
import { defineEventTopic, earlierVersion } from '../../src/contracts/define.ts'
import { eventSchema } from '../../src/contracts/envelope.ts'
import { decimalAmount } from '../../src/contracts/money.ts'
import { PAYMENT_EVENTS_TOPIC, paymentEventsTopic, paymentProcessedEvent } from '../../src/contracts/payment/events.ts'
import type { TopicContract } from '../../src/contracts/registry.ts'

const scratch = mkdtempSync(join(tmpdir(), 'orderflow-schemas-'))
after(() => rmSync(scratch, { recursive: true, force: true }))
let dirs = 0
const freshDir = () => join(scratch, `schemas-${++dirs}`)

const rulesOf = (breaks: readonly SchemaBreak[]) => breaks.map((b) => `${b.rule} ${b.topic} ${b.type} v${b.version}`)

describe('the schema gate on the real tree', () => {
  it('passes: every version of every topic has its schema and a golden that still decodes', () => {
    assert.deepEqual(checkSchemas(systemTopics(), SCHEMAS_DIR), [])
  })

  it('fails when a released version gains a required field in place', () => {
    // A modified copy of payment-events, PaymentProcessed v1 with a new required field, against
    // the committed schemas and goldens.
    const dir = freshDir()
    cpSync(join(SCHEMAS_DIR, PAYMENT_EVENTS_TOPIC), join(dir, PAYMENT_EVENTS_TOPIC), { recursive: true })
    const changed: TopicContract = {
      ...paymentEventsTopic,
      messages: paymentEventsTopic.messages.map((contract) =>
        contract.eventType === 'PaymentProcessed'
          ? { ...contract, versions: { 1: paymentProcessedEvent.extend({ cardBrand: z.string() }) } }
          : contract,
      ),
    }
    assert.deepEqual(checkSchemas({ topics: [paymentEventsTopic] }, dir), [])
    const breaks = checkSchemas({ topics: [changed] }, dir)
    assert.deepEqual(rulesOf(breaks), [
      `${Rules.changedInPlace} payment-events PaymentProcessed v1`,
      `${Rules.backward} payment-events PaymentProcessed v1`,
    ])
    assert.match(
      breaks[0]?.message ?? '',
      /at \/properties\/cardBrand: nothing on disk, \{"type":"string"\} in the code/,
    )
    assert.match(breaks[1]?.message ?? '', /cardBrand/)
  })
})

// A small topic of the test's own, to evolve step by step.
const quotedV1 = eventSchema(
  z.object({ eventType: z.literal('ShipmentQuoted'), orderId: z.string(), cost: decimalAmount }),
)
const topicWith = (quoted: Record<string, unknown>) =>
  defineEventTopic({
    topic: 'quotes',
    description: 'shipment quotes',
    key: { description: 'the order id', of: (event) => String(event.aggregateId) },
    messages: { ShipmentQuoted: { description: 'A quote.', schema: quotedV1, ...quoted } },
  }).contract

const envelope = {
  eventId: '0193f2a1-7b4c-7d2e-9f10-1a2b3c4d5e6f',
  aggregateId: 'dispatch-order-1',
  occurredOn: '2026-11-30T19:00:00.000Z',
  version: 1,
  eventType: 'ShipmentQuoted',
}
const sampleV1 = { ...envelope, schemaVersion: 1, orderId: 'order-1', cost: 4.99 }

/** A schemas directory written for version 1 of the quotes topic. */
const releasedV1 = () => {
  const dir = freshDir()
  const { written, refused } = updateSchemas({ topics: [topicWith({})] }, dir, { quotes: [sampleV1] })
  assert.deepEqual(refused, [])
  assert.deepEqual(
    written.sort(),
    ['ShipmentQuoted.v1.sample.json', 'ShipmentQuoted.v1.schema.json'].map(
      (f) => `${dir.split('/').pop()}/quotes/${f}`,
    ),
  )
  assert.deepEqual(checkSchemas({ topics: [topicWith({})] }, dir), [])
  return dir
}

describe('the schema gate, version by version', () => {
  it('accepts a new version that adds an optional field, with its upcaster', () => {
    const dir = releasedV1()
    const quotedV2 = quotedV1.extend({ carrier: z.string().optional() })
    const v2 = topicWith({ schema: quotedV2, version: 2, earlier: { 1: earlierVersion(quotedV1, (v1) => v1) } })
    assert.deepEqual(rulesOf(checkSchemas({ topics: [v2] }, dir)), [
      `${Rules.notWritten} quotes ShipmentQuoted v2`,
      `${Rules.notWritten} quotes ShipmentQuoted v2`,
    ])
    const sampleV2 = { ...sampleV1, schemaVersion: 2, carrier: 'DHL' }
    assert.deepEqual(updateSchemas({ topics: [v2] }, dir, { quotes: [sampleV2] }).refused, [])
    assert.deepEqual(checkSchemas({ topics: [v2] }, dir), [])
  })

  it('ignores a change to descriptions only', () => {
    const dir = releasedV1()
    const described = quotedV1.extend({ cost: decimalAmount.describe('what shipping costs') })
    assert.deepEqual(checkSchemas({ topics: [topicWith({ schema: described.describe('a quote') })] }, dir), [])
  })

  it('fails a version changed in place, and update will not write it without --force', () => {
    const dir = releasedV1()
    const loosened = topicWith({ schema: quotedV1.extend({ cost: decimalAmount.optional() }) })
    assert.deepEqual(rulesOf(checkSchemas({ topics: [loosened] }, dir)), [
      `${Rules.changedInPlace} quotes ShipmentQuoted v1`,
    ])
    const refused = updateSchemas({ topics: [loosened] }, dir, {}).refused
    assert.deepEqual(rulesOf(refused), [`${Rules.changedInPlace} quotes ShipmentQuoted v1`])
    assert.deepEqual(rulesOf(checkSchemas({ topics: [loosened] }, dir)), [
      `${Rules.changedInPlace} quotes ShipmentQuoted v1`,
    ])
    assert.deepEqual(updateSchemas({ topics: [loosened] }, dir, {}, { force: true }).refused, [])
    assert.deepEqual(checkSchemas({ topics: [loosened] }, dir), [])
  })

  it('fails a golden that no longer decodes: a new version whose upcaster leaves out a required field', () => {
    const dir = releasedV1()
    const quotedV2 = quotedV1.extend({ carrier: z.string() })
    const forgetful = topicWith({ schema: quotedV2, version: 2, earlier: { 1: earlierVersion(quotedV1, (v1) => v1) } })
    updateSchemas({ topics: [forgetful] }, dir, { quotes: [{ ...sampleV1, schemaVersion: 2, carrier: 'DHL' }] })
    const breaks = checkSchemas({ topics: [forgetful] }, dir)
    assert.deepEqual(rulesOf(breaks), [`${Rules.backward} quotes ShipmentQuoted v1`])
    assert.match(breaks[0]?.message ?? '', /INVALID_EVENT: ShipmentQuoted schemaVersion 1 upcast to 2: carrier: /)
  })

  it('fails a new version that readers of the previous one cannot read (forward compatibility)', () => {
    const dir = releasedV1()
    // `cost` renamed: the upcaster reads v1 as v2, but a v1 reader finds no `cost` in what v2 writers write.
    const quotedV2 = eventSchema(
      z.object({ eventType: z.literal('ShipmentQuoted'), orderId: z.string(), price: decimalAmount }),
    )
    const renamed = topicWith({
      schema: quotedV2,
      version: 2,
      earlier: { 1: earlierVersion(quotedV1, ({ cost, ...rest }) => ({ ...rest, price: cost })) },
    })
    updateSchemas({ topics: [renamed] }, dir, {
      quotes: [{ ...envelope, schemaVersion: 2, orderId: 'order-1', price: 4.99 }],
    })
    const breaks = checkSchemas({ topics: [renamed] }, dir)
    assert.deepEqual(rulesOf(breaks), [`${Rules.forward} quotes ShipmentQuoted v2`])
    assert.match(breaks[0]?.message ?? '', /a reader that knows only version 1 cannot read version 2's golden .*cost/)
  })

  it('fails a version, or a type, that the code no longer has', () => {
    const dir = releasedV1()
    const quotedV2 = quotedV1.extend({ carrier: z.string().optional() })
    const v2 = topicWith({ schema: quotedV2, version: 2, earlier: { 1: earlierVersion(quotedV1, (v1) => v1) } })
    updateSchemas({ topics: [v2] }, dir, { quotes: [{ ...sampleV1, schemaVersion: 2 }] })
    // Back to version 1 only: version 2's messages, in the store and on the topic, would be refused.
    assert.deepEqual(rulesOf(checkSchemas({ topics: [topicWith({})] }, dir)), [
      `${Rules.removed} quotes ShipmentQuoted v2`,
    ])
    const renamedType = { ...topicWith({}), messages: [{ ...topicWith({}).messages[0], eventType: 'QuoteMade' }] }
    const breaks = checkSchemas({ topics: [renamedType as TopicContract] }, dir)
    assert.ok(rulesOf(breaks).includes(`${Rules.removed} quotes ShipmentQuoted v1`), JSON.stringify(breaks))
  })

  it('will not write a golden without a sample at that version, nor one that does not decode', () => {
    const dir = freshDir()
    const refused = updateSchemas({ topics: [topicWith({})] }, dir, { quotes: [{ ...sampleV1, cost: 'free' }] }).refused
    assert.deepEqual(rulesOf(refused), [`${Rules.backward} quotes ShipmentQuoted v1`])
    const none = updateSchemas({ topics: [topicWith({})] }, dir, {
      quotes: [{ ...sampleV1, schemaVersion: 2 }],
    }).refused
    assert.deepEqual(rulesOf(none), [`${Rules.notWritten} quotes ShipmentQuoted v1`])
    assert.match(none[0]?.message ?? '', /SAMPLES in scripts\/schemas.ts has no ShipmentQuoted at schemaVersion 1/)
  })

  it('never overwrites a golden', () => {
    const dir = releasedV1()
    const golden = join(dir, 'quotes', 'ShipmentQuoted.v1.sample.json')
    const handKept = { ...sampleV1, cost: '4.99' }
    writeFileSync(golden, JSON.stringify(handKept))
    updateSchemas({ topics: [topicWith({})] }, dir, { quotes: [sampleV1] })
    assert.deepEqual(JSON.parse(readFileSync(golden, 'utf8')), handKept)
  })
})
