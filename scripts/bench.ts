import { parseArgs } from 'node:util'
import { argumentProblem } from '../src/platform/cli.ts'
import { benchJourney } from './bench/journey.ts'
import { benchOrders } from './bench/orders.ts'
import { type BenchContext, machine, say } from './bench/support.ts'
import { benchTransport } from './bench/transport.ts'
import { type Broker, startBroker } from './kafka.ts'

/**
 * `npm run bench -- <transport|orders> [options]`. Starts its own Kafka broker unless KAFKA_BROKERS
 * is set; uses the local PostgreSQL (DATABASE_URL). The last line of stdout is one JSON object.
 */
const usage = `usage: npm run bench -- <transport|orders|journey> [--events N] [--batch N] [--in-flight N] [--size BYTES]
                        [--partitions N] [--rounds N] [--concurrency 1,4,16,64] [--seconds N]
                        [--modes embedded,kafka] [--rates 50,100,200] [--saturation N]
                        [--saga-modes orchestration,choreography]
  transport  our Kafka adapter vs the raw @platformatic/kafka client (acks=all, idempotent)
  orders     POST /api/orders at increasing concurrency, embedded and Kafka + PostgreSQL
  journey    POST to DELIVERED through payment, dispatch and delivery, per saga mode and transport`

async function main(): Promise<void> {
  const parse = () =>
    parseArgs({
      allowPositionals: true,
      options: {
        events: { type: 'string', default: '200000' },
        batch: { type: 'string', default: '500' },
        'in-flight': { type: 'string', default: '4' },
        size: { type: 'string', default: '256' },
        partitions: { type: 'string', default: '3' },
        rounds: { type: 'string', default: '2' },
        concurrency: { type: 'string', default: '1,4,16,64' },
        seconds: { type: 'string', default: '4' },
        modes: { type: 'string', default: 'embedded,kafka' },
        rates: { type: 'string', default: '50,100,200' },
        saturation: { type: 'string', default: '1000' },
        'saga-modes': { type: 'string', default: 'orchestration,choreography' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse()
  } catch (error) {
    const problem = argumentProblem(error)
    if (!problem) throw error
    process.stderr.write(`bench: ${problem}\n${usage}\n`)
    process.exit(2)
  }
  const { values, positionals } = parsed
  const which = positionals[0]
  if (values.help) {
    process.stdout.write(`${usage}\n`)
    process.exit(0)
  }
  if (which !== 'transport' && which !== 'orders' && which !== 'journey') {
    process.stderr.write(`${usage}\n`)
    process.exit(2)
  }
  const number = (name: string, raw: string) => {
    const n = Number(raw)
    if (!Number.isInteger(n) || n <= 0) {
      process.stderr.write(`--${name} must be a positive whole number (got '${raw}')\n${usage}\n`)
      process.exit(2)
    }
    return n
  }
  let broker: Broker | undefined
  let brokers = process.env.KAFKA_BROKERS?.split(',').map((b) => b.trim())
  if (!brokers?.length) {
    broker = await startBroker()
    brokers = [broker.brokers]
  }
  const stop = async () => {
    await broker?.stop()
  }
  process.once('SIGINT', () => void stop().then(() => process.exit(130)))
  try {
    const ctx: BenchContext = {
      brokers,
      events: number('events', values.events),
      batch: number('batch', values.batch),
      inFlight: number('in-flight', values['in-flight']),
      size: number('size', values.size),
      partitions: number('partitions', values.partitions),
      rounds: number('rounds', values.rounds),
      databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test',
    }
    say(`machine: ${JSON.stringify(machine())}`)
    const list = (raw: string) => raw.split(',').map((m) => m.trim())
    const result =
      which === 'transport'
        ? await benchTransport(ctx)
        : which === 'orders'
          ? await benchOrders(ctx, {
              concurrency: values.concurrency.split(',').map((c) => number('concurrency', c)),
              seconds: number('seconds', values.seconds),
              modes: list(values.modes),
            })
          : await benchJourney(ctx, {
              rates: values.rates.split(',').map((r) => number('rates', r)),
              seconds: number('seconds', values.seconds),
              saturationRate: number('saturation', values.saturation),
              modes: list(values['saga-modes']),
              transports: list(values.modes),
            })
    process.stdout.write(`${JSON.stringify({ ...result, machine: machine() })}\n`)
  } finally {
    await stop()
  }
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
  process.exit(1)
})
