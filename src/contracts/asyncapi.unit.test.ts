import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { DeadLetterRecord } from '../platform/transport/reliable-consumer.ts'
import { type AsyncApiMessage, buildAsyncApiDocument, deadLetterRecordSchema, type JsonSchema } from './asyncapi.ts'
import { COFFEE_ORDERS_TOPIC, coffeeOrder } from './coffee/orders.ts'
import { HeaderNames } from './envelope.ts'
import { orderCommandsTopic, orderTopics } from './order/commands.ts'
import { orderEventsTopic } from './order/events.ts'

/*
 * No AsyncAPI validator is installed (and none is to be added for this), so the document's
 * structure is checked here against what the AsyncAPI 3.0.0 specification requires: the required
 * fields of each object, the id patterns, and that every reference resolves to what it must.
 */

const document = buildAsyncApiDocument(orderTopics, { title: 'orderflow', version: '9.9.9' })

/** Resolves a local `$ref` such as `#/components/messages/x`. */
const resolve = (ref: string): object => {
  assert.match(ref, /^#\//, ref)
  let node: unknown = document
  for (const part of ref.slice(2).split('/')) {
    node = (node as Record<string, unknown> | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')]
  }
  assert.ok(node && typeof node === 'object', `${ref} does not resolve`)
  return node
}

const refs = (node: unknown, found: string[] = []): string[] => {
  if (Array.isArray(node)) for (const item of node) refs(item, found)
  else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') found.push(value)
      else refs(value, found)
    }
  }
  return found
}

const messageOf = (topic: string, type: string): AsyncApiMessage => {
  const ref = document.channels[topic]?.messages[type]?.$ref
  assert.ok(ref, `${topic} has no message ${type}`)
  return resolve(ref) as AsyncApiMessage
}

/** A property of a schema, failing the test when it is not there. */
const property = (schema: JsonSchema | undefined, ...path: string[]): JsonSchema => {
  let node = schema
  for (const name of path) node = name === '[]' ? node?.items : node?.properties?.[name]
  assert.ok(node, `no ${path.join('.')}`)
  return node
}

describe('the AsyncAPI document', () => {
  it('has the required top-level fields of AsyncAPI 3.0.0', () => {
    assert.equal(document.asyncapi, '3.0.0')
    assert.equal(document.info.title, 'orderflow')
    assert.equal(document.info.version, '9.9.9')
    assert.equal(typeof document.info.description, 'string')
    assert.equal(document.defaultContentType, 'application/json')
    for (const field of ['channels', 'operations', 'components'] as const) {
      assert.equal(typeof document[field], 'object', field)
    }
    const allowed = new Set([
      'asyncapi',
      'id',
      'info',
      'servers',
      'defaultContentType',
      'channels',
      'operations',
      'components',
    ])
    assert.deepEqual(
      Object.keys(document).filter((k) => !allowed.has(k) && !k.startsWith('x-')),
      [],
    )
  })

  it('is plain JSON', () => {
    assert.deepEqual(JSON.parse(JSON.stringify(document)), document)
  })

  it('has a channel per topic and per dead-letter topic, addressed by the topic name', () => {
    assert.deepEqual(Object.keys(document.channels).sort(), [
      'order-events',
      'order-events-dlq',
      'order_commands',
      'order_commands-dlq',
    ])
    for (const [id, channel] of Object.entries(document.channels)) {
      assert.equal(channel.address, id)
      assert.equal(channel.bindings.kafka.topic, id)
      assert.ok(Object.keys(channel.messages).length > 0, id)
    }
    assert.equal(document.channels['order-events']?.description, orderEventsTopic.description)
  })

  it('documents every message of every topic, with its payload schema, headers and key', () => {
    for (const topic of orderTopics) {
      assert.deepEqual(
        Object.keys(document.channels[topic.topic]?.messages ?? {}),
        topic.messages.map((m) => m.eventType),
      )
      for (const contract of topic.messages) {
        const message = messageOf(topic.topic, contract.eventType)
        assert.equal(message.name, contract.eventType)
        assert.equal(message.contentType, 'application/json')
        assert.equal(message.payload.type, 'object', contract.eventType)
        property(message.payload, topic.discriminator)
        assert.ok(message.payload.required?.includes(topic.discriminator), `${contract.eventType} names its type`)
        assert.deepEqual(message.bindings.kafka.key, { type: 'string', description: topic.key })
        assert.equal(message.headers.type, 'object')
        assert.equal(message.payload.$schema, undefined)
      }
    }
  })

  it('documents the envelope and the message’s own fields as required on the wire', () => {
    const created = messageOf('order-events', 'OrderCreated').payload
    for (const field of ['eventId', 'aggregateId', 'occurredOn', 'version', 'eventType', 'customerId', 'items']) {
      assert.ok(created.required?.includes(field), field)
    }
    const confirm = messageOf('order_commands', 'ConfirmOrder').payload
    for (const field of ['commandId', 'orderId', 'issuedOn', 'commandType', 'paymentId']) {
      assert.ok(confirm.required?.includes(field), field)
    }
  })

  it('documents amounts as decimal numbers and timestamps as liberal ISO 8601 strings', () => {
    const created = messageOf('order-events', 'OrderCreated').payload
    assert.equal(property(created, 'totalAmount').type, 'number')
    assert.equal(property(created, 'items', '[]', 'price').type, 'number')
    const occurredOn = property(created, 'occurredOn')
    assert.equal(occurredOn.type, 'string')
    const pattern = new RegExp(String(occurredOn.pattern))
    for (const text of ['2026-11-30T19:00:00', '2026-11-30T19:00:00.123456', '2026-11-30T19:00:00+00:00']) {
      assert.match(text, pattern)
    }
    assert.doesNotMatch('30/11/2026 19:00', pattern)
    assert.equal(property(messageOf('order_commands', 'CancelOrder').payload, 'issuedOn').pattern, occurredOn.pattern)
  })

  it('documents the aliases a command is also accepted as', () => {
    const confirm = messageOf('order_commands', 'ConfirmOrder')
    assert.deepEqual(property(confirm.payload, 'commandType').enum, ['ConfirmOrder', 'ApproveOrder'])
    assert.match(confirm.description ?? '', /ApproveOrder/)
    const status = messageOf('order_commands', 'ChangeOrderStatus')
    assert.equal(property(status.payload, 'commandType').const, 'ChangeOrderStatus')
  })

  it('documents the headers the platform writes on events', () => {
    const headers = messageOf('order-events', 'OrderConfirmed').headers
    assert.deepEqual(Object.keys(headers.properties ?? {}).sort(), Object.values(HeaderNames).sort())
    assert.equal(property(headers, 'event-type').const, 'OrderConfirmed')
    assert.equal(property(headers, 'schema-version').const, '1')
    assert.ok(headers.required?.includes('event-id'))
    property(messageOf('order_commands', 'CancelOrder').headers, 'traceparent')
  })

  it('documents each dead-letter topic with the record the reliable consumer writes', () => {
    // Typed against the platform's record, so that a field added there fails to compile here.
    const fields: Record<keyof DeadLetterRecord, true> = {
      originalTopic: true,
      partition: true,
      offset: true,
      key: true,
      groupId: true,
      reason: true,
      error: true,
      attempts: true,
      failedAt: true,
      headers: true,
      payload: true,
      payloadTruncated: true,
      payloadBytes: true,
      payloadSha256: true,
    }
    const optional = ['payloadTruncated']
    assert.deepEqual(Object.keys(deadLetterRecordSchema.properties ?? {}).sort(), Object.keys(fields).sort())
    assert.deepEqual(
      [...(deadLetterRecordSchema.required ?? [])].sort(),
      Object.keys(fields)
        .filter((f) => !optional.includes(f))
        .sort(),
    )
    for (const topic of [orderEventsTopic, orderCommandsTopic]) {
      const message = messageOf(`${topic.topic}-dlq`, 'DeadLetter')
      assert.deepEqual(message.payload, deadLetterRecordSchema)
      assert.ok(String(message.bindings.kafka.key.description).includes(topic.key))
      property(message.headers, 'dlq-reason')
    }
  })

  it('has a send or receive operation per channel, from orderflow’s side', () => {
    const byChannel = new Map<string, string>()
    for (const operation of Object.values(document.operations)) {
      assert.ok(['send', 'receive'].includes(operation.action))
      const channelRef = operation.channel.$ref
      resolve(channelRef)
      byChannel.set(channelRef.replace('#/channels/', ''), operation.action)
      // AsyncAPI 3: an operation's messages must be messages of its channel.
      for (const message of operation.messages) {
        assert.ok(message.$ref.startsWith(`${channelRef}/messages/`), message.$ref)
        resolve(message.$ref)
      }
    }
    assert.deepEqual(Object.fromEntries(byChannel), {
      'order-events': 'send',
      'order-events-dlq': 'send',
      order_commands: 'receive',
      'order_commands-dlq': 'send',
    })
  })

  it('uses ids the specification allows, and every reference resolves', () => {
    for (const id of [...Object.keys(document.channels), ...Object.keys(document.components.messages)]) {
      assert.match(id, /^[A-Za-z0-9_.-]+$/, id)
    }
    const found = refs(document)
    assert.ok(found.length > 0)
    for (const ref of found) resolve(ref)
  })

  it('documents a topic without an envelope (seed 003’s coffee_orders) and its dead letters', () => {
    const document = buildAsyncApiDocument([], {}, [
      {
        topic: COFFEE_ORDERS_TOPIC,
        description: 'coffee orders',
        key: 'a fresh id per order',
        messageName: 'CoffeeOrder',
        summary: 'A coffee order',
        schema: coffeeOrder,
      },
    ])
    assert.equal(document.channels.coffee_orders?.address, 'coffee_orders')
    assert.equal(document.channels['coffee_orders-dlq']?.address, 'coffee_orders-dlq')
    const message = document.components.messages['coffee_orders.CoffeeOrder']
    assert.deepEqual(message?.payload.required?.sort(), ['coffee_type', 'customer_name'])
    assert.equal(document.operations['send.coffee_orders']?.action, 'send')
  })

  it('fails loudly on a contract without a schema', () => {
    assert.throws(
      () =>
        buildAsyncApiDocument([
          {
            topic: 't',
            description: 'd',
            key: 'k',
            discriminator: 'eventType',
            messages: [{ eventType: 'E', versions: {} }],
          },
        ]),
      /E has no schema version/,
    )
  })
})
