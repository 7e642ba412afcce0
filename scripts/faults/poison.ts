/**
 * The poison mix: on every topic some consumer group reads, messages no consumer can handle. Each
 * must be dead-lettered (once per group that reads the topic, with its reason) while the orders
 * around it keep flowing. Their keys start with POISON_KEY_PREFIX, which is how their dead letters
 * are told from the ones a fault would cause.
 */
import { createKafkaTransport } from '../../src/platform/transport/kafka.ts'
import type { OutgoingMessage } from '../../src/platform/transport/port.ts'
import { POISON_KEY_PREFIX } from './verify.ts'

export interface PoisonMessage {
  topic: string
  key: string
  kind: string
  /** The consumer groups that read the topic when it was injected: each must dead-letter it. */
  groups: string[]
}

/** Not JSON, no object, empty, an envelope that fails its schema, an unknown type, a large garbage value. */
const MIX: { kind: string; value: string }[] = [
  { kind: 'not-json', value: '{"eventType": "OrderCreated", this is not json' },
  { kind: 'empty', value: '' },
  { kind: 'scalar', value: '42' },
  {
    kind: 'bad-schema',
    value: JSON.stringify({
      eventType: 'OrderCreated',
      commandType: 'ConfirmOrder',
      aggregateId: 17,
      orderId: null,
      version: 'one',
      items: 'none',
    }),
  },
  {
    kind: 'unknown-type',
    value: JSON.stringify({
      eventId: '00000000-0000-4000-8000-000000000000',
      eventType: 'NoSuchEvent',
      commandId: '00000000-0000-4000-8000-000000000001',
      commandType: 'NoSuchCommand',
      aggregateId: 'order-poison',
      orderId: 'order-poison',
      version: 1,
      schemaVersion: 99,
    }),
  },
  { kind: 'large-garbage', value: `<${'x'.repeat(300_000)}>` },
]

/** `groupsByTopic`: every topic to poison, with the consumer groups that read it. */
export async function injectPoison(
  brokers: string[],
  groupsByTopic: ReadonlyMap<string, string[]>,
): Promise<PoisonMessage[]> {
  const transport = await createKafkaTransport({
    brokers,
    clientId: 'orderflow-faults-poison',
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 200,
  })
  try {
    const injected: PoisonMessage[] = []
    const messages: OutgoingMessage[] = []
    for (const [topic, groups] of groupsByTopic) {
      MIX.forEach(({ kind, value }, i) => {
        const key = `${POISON_KEY_PREFIX}${kind}-${i}`
        messages.push({ topic, key, value, headers: { 'event-type': 'Poison', 'content-type': 'application/json' } })
        injected.push({ topic, key, kind, groups })
      })
    }
    await transport.publish(messages)
    return injected
  } finally {
    await transport.close()
  }
}
