import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

/**
 * The platform's Prometheus metrics (seed 001's wish list: publish rate, consumer lag, DLQ count,
 * retry attempts). One registry per process, served at `GET /metrics`.
 */
export interface Metrics {
  registry: Registry
  published: Counter<'topic'>
  publishFailures: Counter<'topic'>
  consumed: Counter<'topic' | 'group'>
  retries: Counter<'topic' | 'group'>
  deadLettered: Counter<'topic' | 'group' | 'reason'>
  handlerSeconds: Histogram<'topic' | 'group'>
  consumerLag: Gauge<'topic' | 'group'>
  deadLetterFailures: Counter<'topic' | 'group'>
  consumerWaiting: Gauge<'topic' | 'group'>
  consumerLastProgress: Gauge<'topic' | 'group' | 'partition'>
  outboxBacklog: Gauge
  outboxOldestAge: Gauge
  httpRequests: Counter<'method' | 'route' | 'status_class'>
  httpSeconds: Histogram<'method' | 'route' | 'status_class'>
  httpInFlight: Gauge
  httpShed: Counter<'route'>
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry()
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'orderflow_' })
  const registers = [registry]
  return {
    registry,
    published: new Counter({
      name: 'orderflow_messages_published_total',
      help: 'Messages published, by topic',
      labelNames: ['topic'],
      registers,
    }),
    publishFailures: new Counter({
      name: 'orderflow_publish_failures_total',
      help: 'Publish attempts that failed, by topic',
      labelNames: ['topic'],
      registers,
    }),
    consumed: new Counter({
      name: 'orderflow_messages_consumed_total',
      help: 'Messages handled successfully, by topic and consumer group',
      labelNames: ['topic', 'group'],
      registers,
    }),
    retries: new Counter({
      name: 'orderflow_handler_retries_total',
      help: 'Handler retry attempts, by topic and consumer group',
      labelNames: ['topic', 'group'],
      registers,
    }),
    deadLettered: new Counter({
      name: 'orderflow_dead_letters_total',
      help: 'Messages sent to a dead-letter topic, by source topic, group and reason',
      labelNames: ['topic', 'group', 'reason'],
      registers,
    }),
    handlerSeconds: new Histogram({
      name: 'orderflow_handler_duration_seconds',
      help: 'Time spent in message handlers, retries included',
      labelNames: ['topic', 'group'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15],
      registers,
    }),
    consumerLag: new Gauge({
      name: 'orderflow_consumer_lag_messages',
      help: "Messages on a topic not yet committed by a consumer group (the group's partitions held in this process)",
      labelNames: ['topic', 'group'],
      registers,
    }),
    deadLetterFailures: new Counter({
      name: 'orderflow_dead_letter_failures_total',
      help: 'Attempts to write a dead letter that failed (the message is retried, never dropped), by source topic and group',
      labelNames: ['topic', 'group'],
      registers,
    }),
    consumerWaiting: new Gauge({
      name: 'orderflow_consumer_waiting_for_dependency',
      help: '1 while a consumer holds its partition because the database or the broker is unavailable',
      labelNames: ['topic', 'group'],
      registers,
    }),
    consumerLastProgress: new Gauge({
      name: 'orderflow_consumer_last_progress_timestamp_seconds',
      help: 'When a consumer last finished a message, per partition (Unix time): a consumer alive but stuck stops moving it',
      labelNames: ['topic', 'group', 'partition'],
      registers,
    }),
    outboxBacklog: new Gauge({
      name: 'orderflow_outbox_backlog_messages',
      help: 'Outbox rows not yet published',
      registers,
    }),
    outboxOldestAge: new Gauge({
      name: 'orderflow_outbox_oldest_age_seconds',
      help: 'Age of the oldest outbox row not yet published (0 when none)',
      registers,
    }),
    httpRequests: new Counter({
      name: 'orderflow_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status class (2xx … 5xx)',
      labelNames: ['method', 'route', 'status_class'],
      registers,
    }),
    httpInFlight: new Gauge({
      name: 'orderflow_http_requests_in_flight',
      help: 'HTTP requests being handled now (probes and scrapes left out); past HTTP_MAX_IN_FLIGHT new ones are shed',
      registers,
    }),
    httpShed: new Counter({
      name: 'orderflow_http_requests_shed_total',
      help: 'HTTP requests answered 503 OVERLOADED at once, unhandled, because HTTP_MAX_IN_FLIGHT were in flight, by route pattern',
      labelNames: ['route'],
      registers,
    }),
    httpSeconds: new Histogram({
      name: 'orderflow_http_request_duration_seconds',
      help: 'Time from a request to its response, by method, route pattern and status class',
      labelNames: ['method', 'route', 'status_class'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  }
}
