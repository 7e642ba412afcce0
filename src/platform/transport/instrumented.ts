import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import type { OutgoingMessage, PublishedPosition, Transport } from './port.ts'

/** Header naming the event a message carries, so logs and tools need not parse the body. */
export const EVENT_ID_HEADER = 'event-id'

/**
 * Logs every publish with its event id, topic, partition and offset (seed 001's
 * "Successfully published event abc-123 to topic order-events at offset 42") and counts it.
 */
export function instrumentTransport(transport: Transport, deps: { logger: Logger; metrics?: Metrics }): Transport {
  const { logger, metrics } = deps
  return {
    kind: transport.kind,
    ensureTopics: (topics) => transport.ensureTopics(topics),
    subscribe: (options) => transport.subscribe(options),
    close: () => transport.close(),
    async publish(messages: OutgoingMessage[]): Promise<PublishedPosition[]> {
      let positions: PublishedPosition[]
      try {
        positions = await transport.publish(messages)
      } catch (error) {
        for (const m of messages) metrics?.publishFailures.inc({ topic: m.topic })
        logger.error(
          { err: error, topics: [...new Set(messages.map((m) => m.topic))], count: messages.length },
          'publish failed',
        )
        throw error
      }
      messages.forEach((m, i) => {
        metrics?.published.inc({ topic: m.topic })
        if (logger.isLevelEnabled('info')) {
          const p = positions[i]
          const eventId = m.headers?.[EVENT_ID_HEADER]
          logger.info(
            {
              eventId,
              eventType: m.headers?.['event-type'],
              key: m.key,
              topic: m.topic,
              partition: p?.partition,
              offset: p?.offset,
            },
            `published ${eventId ? `event ${eventId}` : 'message'} to topic ${m.topic} partition ${p?.partition} at offset ${p?.offset}`,
          )
        }
      })
      return positions
    },
  }
}
