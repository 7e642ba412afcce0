import {
  Consumer,
  compatibilityPartitioner,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
  ProduceAcks,
  Producer,
  stringDeserializers,
  stringSerializers,
} from '@platformatic/kafka'
import { createKafkaTransport } from '../../src/platform/transport/kafka.ts'
import { type BenchContext, percentile, say } from './support.ts'

/**
 * Our Kafka adapter against the raw @platformatic/kafka client on the same broker, in one run:
 * N events produced in batches (acks=all, idempotent, the Java-compatible partitioner on both
 * sides) and consumed by a fresh consumer group. Throughput counts from the first send to the
 * last message consumed; latency is consume time minus the send time carried in the value.
 */

interface RunResult {
  events: number
  seconds: number
  eventsPerSecond: number
  p50Ms: number
  p99Ms: number
}

const payload = (size: number) => 'x'.repeat(Math.max(0, size))

function measure(latencies: number[], events: number, startedAt: number, endedAt: number): RunResult {
  latencies.sort((a, b) => a - b)
  const seconds = (endedAt - startedAt) / 1000
  return {
    events,
    seconds: round(seconds),
    eventsPerSecond: Math.round(events / seconds),
    p50Ms: round(percentile(latencies, 0.5)),
    p99Ms: round(percentile(latencies, 0.99)),
  }
}

const round = (n: number) => Math.round(n * 100) / 100

async function runRaw(ctx: BenchContext, topic: string): Promise<RunResult> {
  const { brokers, events, batch, inFlight, size } = ctx
  const producer = new Producer({
    clientId: `bench-raw-${topic}`,
    bootstrapBrokers: brokers,
    serializers: stringSerializers,
    idempotent: true,
    acks: ProduceAcks.ALL,
    partitioner: compatibilityPartitioner,
    autocreateTopics: false,
  })
  const consumer = new Consumer({
    clientId: `bench-raw-consumer-${topic}`,
    groupId: `bench-raw-${topic}`,
    bootstrapBrokers: brokers,
    deserializers: stringDeserializers,
    autocommit: 1000,
    maxWaitTime: 100,
  })
  const latencies: number[] = []
  const body = payload(size)
  const stream = await consumer.consume({
    topics: [topic],
    mode: MessagesStreamModes.COMMITTED,
    fallbackMode: MessagesStreamFallbackModes.EARLIEST,
  })
  const done = new Promise<number>((resolve) => {
    stream.on('data', (message) => {
      latencies.push(performance.now() - Number(message.value.slice(0, message.value.indexOf('|'))))
      if (latencies.length === events) resolve(performance.now())
    })
  })
  const startedAt = performance.now()
  await produceAll(events, batch, inFlight, async (from, to) => {
    const now = performance.now()
    await producer.send({
      messages: Array.from({ length: to - from }, (_, i) => ({
        topic,
        key: `order-${(from + i) % 1000}`,
        value: `${now}|${body}`,
      })),
    })
  })
  const endedAt = await done
  await stream.close()
  await consumer.close(true)
  await producer.close()
  return measure(latencies, events, startedAt, endedAt)
}

async function runOurs(ctx: BenchContext, topic: string): Promise<RunResult> {
  const { brokers, events, batch, inFlight, size } = ctx
  const transport = await createKafkaTransport({
    brokers,
    clientId: `bench-ours-${topic}`,
    partitions: ctx.partitions,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
    maxBufferedMessages: 1024,
  })
  const latencies: number[] = []
  let resolveDone: (t: number) => void = () => {}
  const done = new Promise<number>((resolve) => {
    resolveDone = resolve
  })
  const subscription = await transport.subscribe({
    groupId: `bench-ours-${topic}`,
    topics: [topic],
    handler: async (message) => {
      latencies.push(performance.now() - Number(message.value.slice(0, message.value.indexOf('|'))))
      if (latencies.length === events) resolveDone(performance.now())
    },
  })
  await subscription.ready
  const body = payload(size)
  const startedAt = performance.now()
  await produceAll(events, batch, inFlight, async (from, to) => {
    const now = performance.now()
    await transport.publish(
      Array.from({ length: to - from }, (_, i) => ({
        topic,
        key: `order-${(from + i) % 1000}`,
        value: `${now}|${body}`,
      })),
    )
  })
  const endedAt = await done
  await subscription.close()
  await transport.close()
  return measure(latencies, events, startedAt, endedAt)
}

async function produceAll(
  events: number,
  batch: number,
  inFlight: number,
  send: (from: number, to: number) => Promise<void>,
): Promise<void> {
  let next = 0
  const lane = async () => {
    while (next < events) {
      const from = next
      const to = Math.min(events, from + batch)
      next = to
      await send(from, to)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane))
}

export async function benchTransport(ctx: BenchContext): Promise<Record<string, unknown>> {
  const admin = await createKafkaTransport({
    brokers: ctx.brokers,
    clientId: 'bench-admin',
    partitions: ctx.partitions,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
  })
  // A warm-up of each side first: the broker's first writes and the JIT would otherwise penalise
  // whichever side runs first.
  const warmup = { ...ctx, events: Math.max(ctx.batch, Math.round(ctx.events / 5)) }
  for (const side of ['raw', 'ours'] as const) {
    const topic = `bench_warmup_${side}_${Date.now().toString(36)}`
    await admin.ensureTopics([topic])
    say(`warm-up: ${side}, ${warmup.events} events (not counted)…`)
    await (side === 'raw' ? runRaw(warmup, topic) : runOurs(warmup, topic))
  }
  const results: { raw: RunResult[]; ours: RunResult[] } = { raw: [], ours: [] }
  // Alternate raw and ours so that a warm-up or a noisy moment does not favour one side.
  for (let round = 1; round <= ctx.rounds; round++) {
    for (const side of ['raw', 'ours'] as const) {
      const topic = `bench_${side}_${Date.now().toString(36)}_${round}`
      await admin.ensureTopics([topic])
      say(`round ${round}/${ctx.rounds}: ${side}, ${ctx.events} events of ${ctx.size} bytes…`)
      const result = side === 'raw' ? await runRaw(ctx, topic) : await runOurs(ctx, topic)
      say(
        `  ${side}: ${result.eventsPerSecond} events/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms (${result.seconds} s)`,
      )
      results[side].push(result)
    }
  }
  await admin.close()
  const best = (runs: RunResult[]) => runs.reduce((a, b) => (b.eventsPerSecond > a.eventsPerSecond ? b : a))
  const raw = best(results.raw)
  const ours = best(results.ours)
  return {
    benchmark: 'transport',
    events: ctx.events,
    messageBytes: ctx.size,
    batch: ctx.batch,
    inFlight: ctx.inFlight,
    partitions: ctx.partitions,
    rounds: ctx.rounds,
    acks: 'all',
    idempotent: true,
    raw,
    ours,
    // Best round of each side; every round is in `runs`.
    throughputRatio: round(ours.eventsPerSecond / raw.eventsPerSecond),
    runs: results,
    target: 0.8,
  }
}
