import type { IncomingMessage, LogDescription, SubscribeOptions, Transport } from './port.ts'

/**
 * Prefixes every topic and consumer group with `prefix` (`KAFKA_TOPIC_PREFIX=staging.` →
 * `staging.<topic>`), so that several deployments, or several test files, share one cluster
 * without reading each other's messages. Services keep using the logical names: messages they
 * receive, lag and the log's description name topics and groups without the prefix, and the
 * description shows only the deployment's own topics and groups.
 */
export function namespaceTransport(transport: Transport, prefix: string): Transport {
  if (prefix === '') return transport
  const outer = (name: string) => `${prefix}${name}`
  const unprefixed = (name: string) => (name.startsWith(prefix) ? name.slice(prefix.length) : name)
  const inner = (message: IncomingMessage): IncomingMessage => ({ ...message, topic: unprefixed(message.topic) })
  return {
    kind: transport.kind,
    ensureTopics: (topics) => transport.ensureTopics(topics.map(outer)),
    ping: () => transport.ping(),
    async publish(messages, options) {
      const positions = await transport.publish(
        messages.map((m) => ({ ...m, topic: outer(m.topic) })),
        options,
      )
      return positions.map((p) => ({ ...p, topic: unprefixed(p.topic) }))
    },
    async subscribe(options) {
      const subscription = await transport.subscribe({
        ...options,
        groupId: outer(options.groupId),
        topics: options.topics.map(outer),
        handler: (message, context) => options.handler(inner(message), context),
        ...(options.batch ? { batch: innerBatch(options.batch, inner) } : {}),
      })
      return {
        groupId: options.groupId,
        ready: subscription.ready,
        close: () => subscription.close(),
        async lag() {
          return (await subscription.lag()).map((l) => ({ ...l, topic: unprefixed(l.topic) }))
        },
      }
    },
    async groupLag(groups) {
      const lags = await transport.groupLag(groups.map(outer))
      return lags.map((l) => ({ ...l, group: unprefixed(l.group), topic: unprefixed(l.topic) }))
    },
    readTopic: (topic, visit, options) =>
      transport.readTopic(outer(topic), (message) => visit(inner(message)), options),
    async describeLog(options = {}) {
      return innerDescription(await transport.describeLog({ prefix: outer(options.prefix ?? '') }), unprefixed)
    },
    close: () => transport.close(),
  }
}

/** A batch handler given the messages as `inner` shows them; `handled` still names the originals. */
function innerBatch(
  batch: NonNullable<SubscribeOptions['batch']>,
  inner: (message: IncomingMessage) => IncomingMessage,
): NonNullable<SubscribeOptions['batch']> {
  return {
    max: batch.max,
    handle(messages, context) {
      const shown = messages.map(inner)
      return batch.handle(shown, {
        signal: context.signal,
        handled(message) {
          const original = messages[shown.indexOf(message)]
          if (original) context.handled(original)
        },
      })
    },
  }
}

/** The log's description with names as the services give them. */
function innerDescription(description: LogDescription, unprefixed: (name: string) => string): LogDescription {
  return {
    topics: description.topics.map((topic) => ({ ...topic, name: unprefixed(topic.name) })),
    groups: description.groups.map((group) => ({
      ...group,
      group: unprefixed(group.group),
      members:
        group.members?.map((member) => ({
          ...member,
          assignments: member.assignments.map((a) => ({ ...a, topic: unprefixed(a.topic) })),
        })) ?? null,
      committed: group.committed.map((c) => ({ ...c, topic: unprefixed(c.topic) })),
    })),
  }
}
