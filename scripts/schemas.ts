/**
 * The schema compatibility gate: every version of every message type the system declares has its
 * JSON Schema and a golden sample under `schemas/<topic>/`, and a change that would break a reader
 * fails `check` (and so `npm test`). See "Schema evolution" in src/contracts/README.md.
 *
 *   npm run schemas -- update           write each version's JSON Schema (wire form), and a golden
 *                                       sample for each version that has none yet (from SAMPLES)
 *   npm run schemas -- update --force   also rewrite a version's changed schema: only for a version
 *                                       no writer has released yet
 *   npm run schemas -- check            exit 1, naming each broken rule, when a change breaks readers
 *
 * Goldens are what old writers wrote: written once, never overwritten, kept by hand.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { z } from 'zod'
import type { PlainTopicContract } from '../src/contracts/asyncapi.ts'
import { createRegistry, type TopicContract } from '../src/contracts/registry.ts'
import { allModules } from '../src/services.ts'

const repoRoot = resolve(import.meta.dirname, '..')
export const SCHEMAS_DIR = join(repoRoot, 'schemas')

/** What the gate covers: the topics with message types, and the plain topics (one schema, no envelope). */
export interface GatedTopics {
  topics: readonly TopicContract[]
  plainTopics?: readonly PlainTopicContract[]
}

/** The rules, as `check` names them. */
export const Rules = {
  /** (a) A version's JSON Schema on disk is not what the code says: it was changed in place. */
  changedInPlace: 'CHANGED_IN_PLACE',
  /** (a) A version the code has, with no schema or golden on disk yet. */
  notWritten: 'NOT_WRITTEN',
  /** (a) A version on disk the code no longer has: stored messages of it would no longer read. */
  removed: 'VERSION_REMOVED',
  /** (b) A golden sample no longer decodes through the current decoder (backward compatibility). */
  backward: 'GOLDEN_NO_LONGER_DECODES',
  /** (c) A version's golden, read by a reader that knows only the version before (forward compatibility). */
  forward: 'NOT_FORWARD_COMPATIBLE',
} as const
export type Rule = (typeof Rules)[keyof typeof Rules]

export interface SchemaBreak {
  rule: Rule
  topic: string
  type: string
  version: number
  message: string
}

/** A message type with its versions, however its topic is declared. */
interface VersionedType {
  topic: string
  type: string
  versions: ReadonlyMap<number, z.ZodType>
  decode(raw: string): { ok: true } | { ok: false; reason: string; message: string }
  /** The field naming the type (`eventType`, `commandType`); none on a plain topic. */
  discriminator?: string
}

function typesOf({ topics, plainTopics = [] }: GatedTopics): VersionedType[] {
  const typed = topics.flatMap((topic) => {
    const registry = createRegistry(topic)
    return topic.messages.map((contract) => ({
      topic: topic.topic,
      type: contract.eventType,
      versions: new Map(
        Object.entries(contract.versions)
          .map(([version, schema]) => [Number(version), schema] as const)
          .sort(([a], [b]) => a - b),
      ),
      decode: (raw: string) => registry.decode(raw),
      discriminator: topic.discriminator,
    }))
  })
  const plain = plainTopics.map((topic) => ({
    topic: topic.topic,
    type: topic.messageName,
    versions: new Map([[1, topic.schema]]),
    decode(raw: string) {
      const parsed = topic.schema.safeParse(JSON.parse(raw))
      return parsed.success
        ? { ok: true as const }
        : { ok: false as const, reason: 'INVALID', message: z.prettifyError(parsed.error) }
    },
  }))
  return [...typed, ...plain]
}

/** The wire form a version accepts, as JSON Schema: what writers in any language code against. */
export const jsonSchemaOf = (schema: z.ZodType): unknown =>
  z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' })

const schemaFile = (type: string, version: number) => `${type}.v${version}.schema.json`
const sampleFile = (type: string, version: number) => `${type}.v${version}.sample.json`
const FILE_NAME = /^(.+)\.v(\d+)\.(schema|sample)\.json$/

/**
 * Every way the code and `dir` disagree that would break a reader. `dir` holds `<topic>/` folders of
 * `<Type>.v<N>.schema.json` and `<Type>.v<N>.sample.json`.
 */
export function checkSchemas(gated: GatedTopics, dir: string): SchemaBreak[] {
  const breaks: SchemaBreak[] = []
  const types = typesOf(gated)
  const shown = (topic: string, file: string) => join(basename(dir), topic, file)

  for (const t of types) {
    const found = (rule: Rule, version: number, message: string) =>
      breaks.push({ rule, topic: t.topic, type: t.type, version, message })
    const goldens = new Map<number, Record<string, unknown>>()

    for (const [version, schema] of t.versions) {
      const onDisk = readJson(join(dir, t.topic, schemaFile(t.type, version)))
      if (onDisk === undefined) {
        found(
          Rules.notWritten,
          version,
          `${shown(t.topic, schemaFile(t.type, version))} is missing: run \`npm run schemas -- update\` and commit it`,
        )
      } else {
        const difference = firstDifference(normalized(onDisk), normalized(jsonSchemaOf(schema)))
        if (difference) {
          found(
            Rules.changedInPlace,
            version,
            `the code's schema of version ${version} is not the one on disk (${difference}): a released version is never changed; add version ${Math.max(...t.versions.keys()) + 1} with an upcaster instead`,
          )
        }
      }

      const golden = readJson(join(dir, t.topic, sampleFile(t.type, version)))
      if (golden === undefined) {
        found(
          Rules.notWritten,
          version,
          `${shown(t.topic, sampleFile(t.type, version))} is missing: run \`npm run schemas -- update\` and commit it`,
        )
        continue
      }
      const sample = golden as Record<string, unknown>
      goldens.set(version, sample)
      if (t.discriminator && (sample.schemaVersion ?? 1) !== version) {
        found(Rules.backward, version, `the golden says schemaVersion ${sample.schemaVersion}, not ${version}`)
      }
      const decoded = t.decode(JSON.stringify(sample))
      if (!decoded.ok) {
        found(
          Rules.backward,
          version,
          `its golden no longer decodes: ${decoded.reason}: ${decoded.message} (stored and in-flight messages of version ${version} would be refused)`,
        )
      }
    }

    // Forward: a reader that knows only version n - 1 must read what version n's writers write,
    // as it would once the version number no longer stops it (new fields ignored, or passed through).
    const discriminator = t.discriminator
    for (const [version, golden] of discriminator ? goldens : []) {
      const previous = t.versions.get(version - 1)
      if (!previous || !discriminator) continue
      const asPrevious = previous.safeParse({ ...golden, [discriminator]: t.type, schemaVersion: version - 1 })
      if (!asPrevious.success) {
        found(
          Rules.forward,
          version,
          `a reader that knows only version ${version - 1} cannot read version ${version}'s golden (${z.prettifyError(asPrevious.error).replaceAll('\n', ' ')}): a new version may only add what older readers can do without; keep the fields they need, or publish the change as a new message type`,
        )
      }
    }
  }

  for (const { topic, type, version, file } of filesOnDisk(dir)) {
    const t = types.find((each) => each.topic === topic && each.type === type)
    if (t?.versions.has(version)) continue
    breaks.push({
      rule: Rules.removed,
      topic,
      type,
      version,
      message: `${shown(topic, file)} is on disk, but the code no longer has ${t ? `version ${version} of ${type}` : `${type} on ${topic}`}: stored messages of it would no longer read; declare it again (in \`earlier\`, with its upcaster)`,
    })
  }
  // One break per version, not one per file.
  return breaks.filter(
    (b, i) =>
      b.rule !== Rules.removed ||
      breaks.findIndex(
        (o) => o.rule === b.rule && o.topic === b.topic && o.type === b.type && o.version === b.version,
      ) === i,
  )
}

export interface UpdateResult {
  /** The files written, relative to `dir`'s parent (`schemas/…`). */
  written: string[]
  /** What update would not do: a changed released schema, a golden it has no sample for or that does not decode. */
  refused: SchemaBreak[]
}

/**
 * Writes each version's JSON Schema to `dir`, and a golden for each version that has none, from
 * `samples` (`topic → messages`, each at the version its `schemaVersion` says, 1 without one). A
 * schema that changed beyond its descriptions is left alone unless `force`. A golden is written
 * only if it decodes.
 */
export function updateSchemas(
  gated: GatedTopics,
  dir: string,
  samples: Readonly<Record<string, readonly Record<string, unknown>[]>>,
  options: { force?: boolean } = {},
): UpdateResult {
  const written: string[] = []
  const refused: SchemaBreak[] = []
  for (const t of typesOf(gated)) {
    mkdirSync(join(dir, t.topic), { recursive: true })
    const write = (file: string, value: unknown) => {
      writeFileSync(join(dir, t.topic, file), `${JSON.stringify(value, null, 2)}\n`)
      written.push(join(basename(dir), t.topic, file))
    }
    const refuse = (rule: Rule, version: number, message: string) =>
      refused.push({ rule, topic: t.topic, type: t.type, version, message })

    for (const [version, schema] of t.versions) {
      const file = schemaFile(t.type, version)
      const generated = jsonSchemaOf(schema)
      const onDisk = readJson(join(dir, t.topic, file))
      if (onDisk === undefined || options.force) {
        if (!isDeepStrictEqual(onDisk, generated)) write(file, generated)
      } else if (firstDifference(normalized(onDisk), normalized(generated))) {
        refuse(
          Rules.changedInPlace,
          version,
          `not rewritten: version ${version} changed in place; add a new version instead, or --force if no writer released it`,
        )
      } else if (!isDeepStrictEqual(onDisk, generated)) {
        write(file, generated) // descriptions only
      }

      if (existsSync(join(dir, t.topic, sampleFile(t.type, version)))) continue
      const sample = samples[t.topic]?.find(
        (message) =>
          (t.discriminator === undefined || message[t.discriminator] === t.type) &&
          (message.schemaVersion ?? 1) === version,
      )
      if (!sample) {
        refuse(
          Rules.notWritten,
          version,
          `no golden yet, and SAMPLES in scripts/schemas.ts has no ${t.type} at schemaVersion ${version}: add what a version ${version} writer writes, then run update again`,
        )
        continue
      }
      const decoded = t.decode(JSON.stringify(sample))
      if (!decoded.ok) {
        refuse(Rules.backward, version, `the sample in SAMPLES does not decode: ${decoded.reason}: ${decoded.message}`)
        continue
      }
      write(sampleFile(t.type, version), sample)
    }
  }
  return { written, refused }
}

/** Annotations: a change to them alone is no change to what a version accepts. */
const ANNOTATIONS = new Set(['description', 'title', 'examples', '$comment'])
/** Keywords whose value maps names to schemas: their keys are field names, not keywords. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas'])

/** A JSON Schema without its annotations, `required` in one order: what two versions are compared on. */
function normalized(node: unknown, isSchemaMap = false): unknown {
  if (Array.isArray(node)) return node.map((each) => normalized(each))
  if (typeof node !== 'object' || node === null) return node
  const result: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(node)) {
    if (!isSchemaMap && ANNOTATIONS.has(key)) continue
    if (!isSchemaMap && key === 'required' && Array.isArray(value)) result[key] = [...value].sort()
    else result[key] = normalized(value, !isSchemaMap && SCHEMA_MAPS.has(key))
  }
  return result
}

/** Where two JSON values first differ (`at /properties/cost: … on disk, … in the code`), or undefined. */
function firstDifference(disk: unknown, code: unknown, path = ''): string | undefined {
  if (isDeepStrictEqual(disk, code)) return undefined
  const bothObjects = typeof disk === 'object' && disk !== null && typeof code === 'object' && code !== null
  if (bothObjects && Array.isArray(disk) === Array.isArray(code) && !Array.isArray(disk)) {
    const a = disk as Record<string, unknown>
    const b = code as Record<string, unknown>
    for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const found = firstDifference(a[key], b[key], `${path}/${key}`)
      if (found) return found
    }
  }
  return `at ${path || '/'}: ${shortJson(disk)} on disk, ${shortJson(code)} in the code`
}

const shortJson = (value: unknown) => {
  if (value === undefined) return 'nothing'
  const text = JSON.stringify(value)
  return text.length > 100 ? `${text.slice(0, 97)}...` : text
}

function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortedKeys(a)) === JSON.stringify(sortedKeys(b))
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sortedKeys((value as Record<string, unknown>)[key])]),
  )
}

function readJson(path: string): unknown {
  if (!existsSync(path)) return undefined
  return JSON.parse(readFileSync(path, 'utf8'))
}

function filesOnDisk(dir: string): { topic: string; type: string; version: number; file: string }[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((topic) => statSync(join(dir, topic)).isDirectory())
    .flatMap((topic) =>
      readdirSync(join(dir, topic)).flatMap((file) => {
        const match = FILE_NAME.exec(file)
        return match?.[1] && match[2] ? [{ topic, type: match[1], version: Number(match[2]), file }] : []
      }),
    )
}

// ---------------------------------------------------------------------------------------------
// SAMPLES: per topic, a realistic message of each type as its writers write it today, in wire form
// (decimal amounts). `update` makes a version's golden from the sample at that version, once; when a
// type gets a new version, add its sample here (keep the older one only if its golden is not yet
// written).
// ---------------------------------------------------------------------------------------------

const ORDER = 'order-0193f2a1-7b4c-7d2e-9f10-1a2b3c4d5e6f'
const CUSTOMER = 'customer-42'
const at = '2026-11-30T19:00:00.000Z'
let eventNumber = 0
/** An event as the platform writes it: envelope and fields in one object. */
const event = (eventType: string, aggregateId: string, version: number, fields: object, schemaVersion = 1) => ({
  eventId: `0193f2a1-7b4c-7d2e-9f10-${(0x1a2b3c4d5e00 + ++eventNumber).toString(16)}`,
  aggregateId,
  occurredOn: at,
  version,
  eventType,
  schemaVersion,
  correlationId: ORDER,
  causationId: 'c3b1d7e2-5a4f-4e0b-8c9d-2f6a1b3c4d5e',
  ...fields,
})
/** A command as the Create-Order saga sends it: no schemaVersion (version 1), or the version written. */
const command = (commandType: string, fields: object, schemaVersion?: number) => ({
  ...(schemaVersion === undefined ? {} : { schemaVersion }),
  commandId: '5f0c6a8e-2a7b-4c1d-9e3f-0a1b2c3d4e5f',
  commandType,
  orderId: ORDER,
  issuedOn: at,
  correlationId: ORDER,
  causationId: '0193f2a1-7b4c-7d2e-9f10-1a2b3c4d5e6f',
  ...fields,
})
const item = { productId: 'sku-espresso-beans-1kg', name: 'Espresso beans, 1 kg', price: 18.5, quantity: 2 }
const sealed = (field: string) => ({
  $enc: 1,
  sub: CUSTOMER,
  kid: 1,
  eid: `${ORDER}/${field}`,
  iv: 'Q2hhbmdlTWVPbmNl',
  ct: 'p3Zk1xB0s9mQe7VfR2uJ4wYtA8cN5hL6oKd',
  tag: 'uT9qX2vR7mK4pL1nB8cZ0w',
})

export const SAMPLES: Readonly<Record<string, readonly Record<string, unknown>[]>> = {
  'cart-events': [
    event('CartCreated', 'cart-7', 1, { customerId: CUSTOMER, currency: 'EUR' }),
    event('CartItemAdded', 'cart-7', 2, item),
    event('CartItemQuantityChanged', 'cart-7', 3, { productId: item.productId, quantity: 3 }),
    event('CartItemRemoved', 'cart-7', 4, { productId: 'sku-milk-frother' }),
    event('CartCheckedOut', 'cart-7', 5, {
      orderId: ORDER,
      customerId: CUSTOMER,
      items: [{ ...item, quantity: 3 }],
      totalAmount: 55.5,
      currency: 'EUR',
    }),
    event(
      'CartCheckedOut',
      'cart-7',
      5,
      {
        orderId: ORDER,
        customerId: CUSTOMER,
        items: [{ ...item, quantity: 3 }],
        totalAmount: 55.5,
        currency: 'EUR',
        deliveryAddress: sealed('deliveryAddress'),
        contact: null,
      },
      2,
    ),
  ],
  'order-events': [
    event('OrderCreated', ORDER, 1, {
      customerId: CUSTOMER,
      items: [item],
      subtotal: 37,
      totalAmount: 41.99,
      currency: 'EUR',
      notes: 'Ring twice',
    }),
    event(
      'OrderCreated',
      ORDER,
      1,
      {
        customerId: CUSTOMER,
        items: [item],
        subtotal: 37,
        totalAmount: 41.99,
        currency: 'EUR',
        notes: 'Ring twice',
        deliveryAddress: sealed('deliveryAddress'),
        contact: sealed('contact'),
      },
      2,
    ),
    event('OrderUpdated', ORDER, 2, { notes: 'Leave at the door', subtotal: 37, totalAmount: 41.99 }),
    event('OrderConfirmed', ORDER, 3, { paymentId: `payment-${ORDER}` }),
    event('OrderCancelled', ORDER, 4, { reason: 'customer changed their mind' }),
    event('OrderStatusChanged', ORDER, 5, { from: 'CONFIRMED', to: 'DISPATCHED' }),
  ],
  order_commands: [
    command('ConfirmOrder', { paymentId: `payment-${ORDER}` }),
    command('CancelOrder', { reason: 'payment failed: card declined' }),
    command('ChangeOrderStatus', { status: 'DISPATCHED' }),
  ],
  'payment-events': [
    event('PaymentProcessed', `payment-${ORDER}`, 1, {
      orderId: ORDER,
      paymentId: `payment-${ORDER}`,
      amount: 41.99,
      currency: 'EUR',
      customerId: CUSTOMER,
      authorizationId: 'auth-5e6f',
    }),
    event('PaymentFailed', `payment-${ORDER}`, 1, {
      orderId: ORDER,
      paymentId: `payment-${ORDER}`,
      amount: 41.99,
      currency: 'EUR',
      customerId: CUSTOMER,
      code: 'CUSTOMER_DECLINED',
      reason: 'card declined',
    }),
    event('PaymentRefunded', `payment-${ORDER}`, 2, {
      orderId: ORDER,
      paymentId: `payment-${ORDER}`,
      amount: 41.99,
      currency: 'EUR',
      reason: 'order cancelled',
    }),
    event('PaymentVoided', `payment-${ORDER}`, 1, {
      orderId: ORDER,
      paymentId: `payment-${ORDER}`,
      reason: 'order cancelled',
    }),
  ],
  payment_commands: [
    command('ProcessPayment', { customerId: CUSTOMER, amount: 41.99, currency: 'EUR' }),
    command('RefundPayment', { reason: 'order cancelled' }),
  ],
  'dispatch-events': [
    event('ShipmentQuoted', `dispatch-${ORDER}`, 1, {
      orderId: ORDER,
      orderAmount: 41.99,
      shippingCost: 4.99,
      currency: 'EUR',
    }),
    event('OrderDispatched', `dispatch-${ORDER}`, 2, {
      orderId: ORDER,
      shipmentId: `shipment-${ORDER}`,
      shippingCost: 4.99,
      currency: 'EUR',
    }),
    event(
      'ShipmentQuoted',
      `dispatch-${ORDER}`,
      1,
      {
        orderId: ORDER,
        orderAmount: 41.99,
        shippingCost: 4.99,
        currency: 'EUR',
        deliveryAddress: sealed('deliveryAddress'),
      },
      2,
    ),
    event(
      'OrderDispatched',
      `dispatch-${ORDER}`,
      2,
      {
        orderId: ORDER,
        shipmentId: `shipment-${ORDER}`,
        shippingCost: 4.99,
        currency: 'EUR',
        deliveryAddress: sealed('deliveryAddress'),
      },
      2,
    ),
  ],
  dispatch_commands: [
    command('QuoteShipment', { orderAmount: 41.99, currency: 'EUR' }),
    command('DispatchOrder', { orderAmount: 41.99, currency: 'EUR' }),
    command('QuoteShipment', { orderAmount: 41.99, currency: 'EUR', deliveryAddress: sealed('deliveryAddress') }, 2),
    command('DispatchOrder', { orderAmount: 41.99, currency: 'EUR', deliveryAddress: null }, 2),
  ],
  'delivery-events': [
    event('DeliveryScheduled', `delivery-${ORDER}`, 1, {
      orderId: ORDER,
      shipmentId: `shipment-${ORDER}`,
      dueAt: '2026-11-30T19:30:00.000Z',
    }),
    event('OrderDelivered', `delivery-${ORDER}`, 2, { orderId: ORDER, shipmentId: `shipment-${ORDER}` }),
    event(
      'DeliveryScheduled',
      `delivery-${ORDER}`,
      1,
      {
        orderId: ORDER,
        shipmentId: `shipment-${ORDER}`,
        dueAt: '2026-11-30T19:30:00.000Z',
        deliveryAddress: sealed('deliveryAddress'),
      },
      2,
    ),
  ],
  delivery_commands: [
    command('ScheduleDelivery', { shipmentId: `shipment-${ORDER}` }),
    command('DeliverOrder', {}),
    command('ScheduleDelivery', { shipmentId: `shipment-${ORDER}`, deliveryAddress: sealed('deliveryAddress') }, 2),
  ],
  'orders.events': [
    {
      eventType: 'ORDER_CREATED',
      eventId: 'evt-1042-1',
      occurredOn: '2026-11-30T19:00:00',
      orderId: 'ORD-1042',
      order: {
        orderId: 'ORD-1042',
        customerId: 'CUST-7',
        orderDate: '2026-11-30T19:00:00',
        items: [{ itemId: 'ITEM-3', name: 'Wireless mouse', price: 24.99, quantity: 1 }],
        totalAmount: 24.99,
        currency: 'USD',
        status: 'created',
      },
    },
    { eventType: 'ORDER_STATUS_UPDATED', eventId: 'evt-1042-2', orderId: 'ORD-1042', status: 'shipped' },
  ],
  'customer-events': [
    event('CustomerDataErased', `customer-${CUSTOMER}`, 1, { customerId: CUSTOMER, requestedBy: CUSTOMER }),
  ],
  coffee_orders: [{ customer_name: 'John Doe', coffee_type: 'Latte' }],
}

/** The topics the system declares, as the AsyncAPI document collects them (src/app.ts): every module's. */
export function systemTopics(): Required<GatedTopics> {
  const modules = allModules()
  const unique = <T extends { topic: string }>(topics: T[]) => [...new Map(topics.map((t) => [t.topic, t])).values()]
  return {
    topics: unique(modules.flatMap((m) => m.topics ?? [])),
    plainTopics: unique(modules.flatMap((m) => m.plainTopics ?? [])),
  }
}

const report = (b: SchemaBreak) => `✖ ${b.rule} ${b.topic} ${b.type} v${b.version}: ${b.message}`

const USAGE = `Usage: npm run orderflow -- schemas <check|update> [--force]

  check       fails when a change breaks a rule: a released version changed in place or removed, a
              golden sample that no longer decodes, a newest version its previous readers cannot read
  update      writes the schema and golden sample of every new version under schemas/; a released
              one is never rewritten unless --force (after a change that only documents it)
`

function main(args: string[]): number {
  const [command, ...flags] = args
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  if (command !== 'check' && command !== 'update') {
    process.stderr.write(
      `schemas: ${command === undefined ? 'say check or update' : `unknown command '${command}'`}\n\n${USAGE}`,
    )
    return 2
  }
  const gated = systemTopics()
  if (command === 'update') {
    const { written, refused } = updateSchemas(gated, SCHEMAS_DIR, SAMPLES, { force: flags.includes('--force') })
    if (written.length > 0) {
      // Written as biome formats JSON, so that `biome check` passes on them as they are.
      spawnSync(join(repoRoot, 'node_modules', '.bin', 'biome'), ['format', '--write', ...written], {
        cwd: repoRoot,
        stdio: 'ignore',
      })
    }
    for (const file of written) process.stdout.write(`wrote ${file}\n`)
    for (const b of refused) process.stderr.write(`${report(b)}\n`)
    if (refused.length > 0) return 1
  }
  const breaks = checkSchemas(gated, SCHEMAS_DIR)
  for (const b of breaks) process.stderr.write(`${report(b)}\n`)
  const versions = typesOf(gated).reduce((n, t) => n + t.versions.size, 0)
  if (breaks.length > 0) {
    process.stderr.write(
      `\n${breaks.length} schema compatibility break${breaks.length === 1 ? '' : 's'} (see "Schema evolution" in src/contracts/README.md)\n`,
    )
    return 1
  }
  process.stdout.write(`schemas: ${versions} message versions, every one compatible\n`)
  return 0
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2))
