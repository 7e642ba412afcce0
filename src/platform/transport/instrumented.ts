import type { Logger } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import type { OutgoingMessage, PublishedPosition, PublishOptions, Subscription, Transport } from './port.ts'

/** Header naming the event a message carries, so logs and tools need not parse the body. */
export const EVENT_ID_HEADER = 'event-id'

/**
 * Logs every publish with its event id, topic, partition and offset (seed 001's "Successfully
 * published event <id> to topic <topic> at offset <n>") and counts it, and
 * samples the lag of every subscription into `orderflow_consumer_lag_messages`.
 */
export function instrumentTransport(
  transport: Transport,
  deps: { logger: Logger; metrics?: Metrics; lagIntervalMs?: number },
): Transport {
  const { logger, metrics } = deps
  const subscriptions = new Set<Subscription>()
  const sampleLag = async () => {
    if (!metrics) return
    for (const subscription of subscriptions) {
      try {
        const perTopic = new Map<string, number>()
        for (const { topic, lag } of await subscription.lag()) perTopic.set(topic, (perTopic.get(topic) ?? 0) + lag)
        for (const [topic, lag] of perTopic) metrics.consumerLag.set({ topic, group: subscription.groupId }, lag)
      } catch (error) {
        logger.debug({ err: error, groupId: subscription.groupId }, 'could not read consumer lag')
      }
    }
  }
  const lagTimer = setInterval(() => void sampleLag(), deps.lagIntervalMs ?? 10_000)
  lagTimer.unref()
  return {
    kind: transport.kind,
    ensureTopics: (topics) => transport.ensureTopics(topics),
    ping: () => transport.ping(),
    async subscribe(options) {
      const subscription = await transport.subscribe(options)
      subscriptions.add(subscription)
      return {
        groupId: subscription.groupId,
        ready: subscription.ready,
        lag: () => subscription.lag(),
        async close() {
          subscriptions.delete(subscription)
          await subscription.close()
        },
      }
    },
    async close() {
      clearInterval(lagTimer)
      await transport.close()
    },
    async publish(messages: OutgoingMessage[], options?: PublishOptions): Promise<PublishedPosition[]> {
      let positions: PublishedPosition[]
      try {
        positions = await transport.publish(messages, options)
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
        // Debug, not info: one line per event would be most of the log under load. LOG_LEVEL=debug
        // shows seed 001's "published … at offset …" for every event.
        if (logger.isLevelEnabled('debug')) {
          const p = positions[i]
          const eventId = m.headers?.[EVENT_ID_HEADER]
          const eventType = m.headers?.['event-type']
          logger.debug(
            {
              eventId,
              eventType,
              key: m.key,
              topic: m.topic,
              partition: p?.partition,
              offset: p?.offset,
            },
            // Seed 001's two publish log lines (which event for which key, and where it landed), in one.
            `published ${eventType ?? 'message'}${eventId ? ` ${eventId}` : ''} for ${m.key} to topic ${m.topic} partition ${p?.partition} at offset ${p?.offset}`,
          )
        }
      })
      return positions
    },
  }
}
