import { parseArgs } from 'node:util'
import { argumentProblem } from '../src/platform/cli.ts'
import { compareWith, resolveCommit } from './bench/compare.ts'
import { benchJourney } from './bench/journey.ts'
import { benchOrders } from './bench/orders.ts'
import { type BenchContext, machine, say } from './bench/support.ts'
import { benchTransport } from './bench/transport.ts'
import { type Broker, startBroker } from './kafka.ts'

/**
 * `npm run bench -- <transport|orders|journey> [options]`. A run on Kafka starts its own broker
 * unless KAFKA_BROKERS is set; uses the local PostgreSQL (DATABASE_URL). The last line of stdout is
 * one JSON object.
 */
const usage = `usage: npm run bench -- <transport|orders|journey> [--events N] [--batch N] [--in-flight N] [--size BYTES]
                        [--partitions N] [--rounds N] [--concurrency 1,4,16,64] [--seconds N]
                        [--modes embedded,kafka] [--rates 50,100,200] [--saturation N]
                        [--saga-modes orchestration,choreography] [--processes one|server|split]
                        [--compare GIT-REF [--rounds-compare N] [--keep-worktree]]
  transport  our Kafka adapter vs the raw @platformatic/kafka client (acks=all, idempotent)
  orders     POST /api/orders at increasing concurrency, embedded and Kafka + PostgreSQL
  journey    POST to DELIVERED through payment, dispatch and delivery, per saga mode and transport
             (--processes: where the services run; one: in the bench's process, beside the load
             generator and the reader (default); on Kafka only, server: one process of
             src/main.ts, as npm start runs them; split: two, order and saga | payment,
             dispatch and delivery)
  --compare  the same bench on a worktree of GIT-REF and on this tree, alternating (REF first),
             on one broker; prints both, side by side with current/REF ratios
             (--rounds-compare N: N rounds of each, medians compared; default 1)`

const comparisonOptions = new Set(['compare', 'rounds-compare', 'keep-worktree'])

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const parse = () =>
    parseArgs({
      args,
      allowPositionals: true,
      tokens: true,
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
        processes: { type: 'string', default: 'one' },
        compare: { type: 'string' },
        'rounds-compare': { type: 'string', default: '1' },
        'keep-worktree': { type: 'boolean', default: false },
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
  const { values, positionals, tokens } = parsed
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
  const list = (raw: string) => raw.split(',').map((m) => m.trim())
  // Every number checked before anything starts: a typo must not cost a broker or a worktree.
  const sizes = {
    events: number('events', values.events),
    batch: number('batch', values.batch),
    inFlight: number('in-flight', values['in-flight']),
    size: number('size', values.size),
    partitions: number('partitions', values.partitions),
    rounds: number('rounds', values.rounds),
  }
  const concurrency = values.concurrency.split(',').map((c) => number('concurrency', c))
  const rates = values.rates.split(',').map((r) => number('rates', r))
  const seconds = number('seconds', values.seconds)
  const saturationRate = number('saturation', values.saturation)
  const roundsCompare = number('rounds-compare', values['rounds-compare'])
  const needsKafka = which === 'transport' || list(values.modes).includes('kafka')
  const processes = values.processes
  if (processes !== 'one' && processes !== 'server' && processes !== 'split') {
    process.stderr.write(`--processes must be 'one', 'server' or 'split' (got '${processes}')\n${usage}\n`)
    process.exit(2)
  }
  if (processes !== 'one' && (which !== 'journey' || list(values.modes).includes('embedded'))) {
    process.stderr.write(
      `--processes ${processes} is for the journey on Kafka (--modes kafka): the embedded database is one process's\n${usage}\n`,
    )
    process.exit(2)
  }

  if (values.compare === undefined) {
    if (tokens.some((token) => token.kind === 'option' && comparisonOptions.has(token.name))) {
      process.stderr.write(`bench: --rounds-compare and --keep-worktree go with --compare\n${usage}\n`)
      process.exit(2)
    }
  } else {
    const target = resolveCommit(values.compare)
    if ('problem' in target) {
      process.stderr.write(`bench: ${target.problem}\n`)
      process.exit(2)
    }
    // Both runs get the arguments of this one, less the comparison's own (an older commit has none).
    const skip = new Set<number>()
    for (const token of tokens) {
      if (token.kind !== 'option' || !comparisonOptions.has(token.name)) continue
      skip.add(token.index)
      if (token.value !== undefined && !token.inlineValue) skip.add(token.index + 1)
    }
    await compareWith({
      ref: values.compare,
      sha: target.sha,
      rounds: roundsCompare,
      keepWorktree: values['keep-worktree'],
      args: args.filter((_, index) => !skip.has(index)),
      needsKafka,
    })
    return
  }

  let broker: Broker | undefined
  let brokers = (process.env.KAFKA_BROKERS ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean)
  // Embedded runs need no broker; starting one costs a JVM and, the first time, its jars.
  if (!brokers.length && needsKafka) {
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
      ...sizes,
      databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test',
    }
    say(`machine: ${JSON.stringify(machine())}`)
    const result =
      which === 'transport'
        ? await benchTransport(ctx)
        : which === 'orders'
          ? await benchOrders(ctx, { concurrency, seconds, modes: list(values.modes) })
          : await benchJourney(ctx, {
              rates,
              seconds,
              saturationRate,
              modes: list(values['saga-modes']),
              transports: list(values.modes),
              processes,
            })
    process.stdout.write(`${JSON.stringify({ ...result, machine: machine() })}\n`)
  } finally {
    await stop()
  }
}

main().catch((error) => {
  // Ctrl-C during --compare: the runs and the broker are stopped and the worktree removed.
  if (error instanceof Error && error.name === 'AbortError') process.exit(130)
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
  process.exit(1)
})
