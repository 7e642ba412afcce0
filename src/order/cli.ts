import { parseArgs } from 'node:util'
import { dataDirBusy } from '../platform/cli.ts'
import type { Config } from '../platform/config.ts'
import { isAppError } from '../platform/errors.ts'
import type { ReplayJob, ReplaySelection } from '../platform/es/replay.ts'
import type { Logger } from '../platform/logger.ts'
import type { Runtime } from '../platform/runtime.ts'
import { DataDirInUseError } from '../platform/sql/data-dir-lock.ts'

/**
 * The replay and rebuild commands of `npm run orderflow -- <command>` (src/cli.ts runs this file
 * for `replay`, `rebuild` and `rebuild-read-model`). They open the same database and transport as
 * the server (same environment variables) and run one job to its end, reporting progress on stderr
 * (or as JSON lines on stdout). Ctrl-C stops after the current batch and prints how to resume, so
 * nothing is left half-written.
 *
 * Everything past argument parsing is imported when needed: the database drivers take over a
 * second to load, and `--help` or a mistyped option should answer at once.
 */

export const USAGE = `Usage: npm run orderflow -- replay <which events> [options]
       npm run orderflow -- rebuild-read-model [--resume] [options]
       npm run orderflow -- rebuild --projection <name> [--resume] [options]

replay
  Re-publish stored order events to order-events (header replay: true), for a consumer that lost
  data. Writes nothing to the outbox or the event store. <which events> is exactly one of:
  --order <id>                        one order's events, in version order
  --from <time> [--to <time>]         events that occurred from --from (inclusive) to --to (exclusive);
                                      ISO 8601 with a zone: 2025-01-31 or 2025-01-31T12:00:00Z
  --after-position <n>                events stored after the event at global position n
  --all                               every order event
  --resume <job-id>                   continue an interrupted replay
  A replay covers the events stored when it starts; later ones reach consumers as usual.
  --stream-type <type>                whose events: order (the default), payment, dispatch, delivery,
                                      customer…: every declared service's stream type, to its topic
  --as-stored                         publish each event in the schema version it was stored with,
                                      exactly as first published (default: the newest version, an
                                      older event through its upcasters: what today's consumers read);
                                      give it again with --resume

rebuild-read-model [--resume]
  Rebuilds the order read model (order lists) from the event store: empties it and projects every
  event again; order lists are incomplete until it ends. --resume continues an interrupted rebuild
  instead of starting over.

rebuild --projection <name> [--resume]
  The same for any projection of any service (order_read_model is rebuild-read-model's).

Options of all three:
  --batch-size <n>   events per batch, 1 to 10000 (default 500)
  --json             progress as one JSON object per line on stdout instead of text on stderr
  -h, --help         this text

Ctrl-C stops after the current batch and prints the command that resumes.

Environment, as for the server: DATABASE_URL (PostgreSQL) or DATA_DIR (embedded, default
.orderflow/data; the embedded database is single-process, so these commands refuse while the
server has it open: stop the server first), KAFKA_BROKERS or TRANSPORT, LOG_LEVEL (default warn,
logs go to stderr).

Exit status: 0 done, 1 failed, 2 bad arguments or configuration, 130 interrupted (resumable).
`

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export type CliCommand =
  | { name: 'help' }
  | {
      name: 'replay'
      target: { selection: ReplaySelection } | { resume: string }
      batchSize: number
      json: boolean
      /** Each event in the version it was stored with, instead of the newest. */
      asStored?: boolean
      /** Whose events (default order). */
      streamType?: string
    }
  | { name: 'rebuild-read-model'; resume: boolean; batchSize: number; json: boolean; projection?: string }

const commonOptions = {
  'batch-size': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

const replayOptions = {
  ...commonOptions,
  order: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  'after-position': { type: 'string' },
  all: { type: 'boolean' },
  resume: { type: 'string' },
  'as-stored': { type: 'boolean' },
  'stream-type': { type: 'string' },
} as const

const rebuildOptions = { ...commonOptions, resume: { type: 'boolean' } } as const

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>

/**
 * parseArgs in its lenient mode, checked here: its strict mode's messages explain `--` rather than
 * naming what is wrong, and it would take `--order --json` as the order id "--json".
 */
function parseOptions(command: string, args: string[], spec: OptionSpec): Map<string, string | true> {
  const { tokens } = parseArgs({ args, options: spec, strict: false, allowPositionals: true, tokens: true })
  const values = new Map<string, string | true>()
  for (const token of tokens) {
    if (token.kind === 'positional') throw new UsageError(`${command}: unexpected argument '${token.value}'`)
    if (token.kind === 'option-terminator') continue
    const option = spec[token.name]
    if (!option) throw new UsageError(`${command}: unknown option '${token.rawName}'`)
    const name = `--${token.name}`
    if (values.has(token.name)) throw new UsageError(`${command}: ${name} is given more than once`)
    if (option.type === 'boolean') {
      if (token.value !== undefined) throw new UsageError(`${command}: ${name} takes no value`)
      values.set(token.name, true)
    } else {
      if (token.value === undefined || (!token.inlineValue && token.value.startsWith('--'))) {
        throw new UsageError(`${command}: ${name} needs a value`)
      }
      values.set(token.name, token.value)
    }
  }
  return values
}

// A time without a zone would be read in the local zone of whoever runs the command.
const ISO_TIME = /^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d))?$/

function isoTime(command: string, option: string, raw: string): string {
  const time = Date.parse(raw)
  if (!ISO_TIME.test(raw) || Number.isNaN(time)) {
    throw new UsageError(
      `${command}: --${option} must be an ISO 8601 date or time with its zone, such as 2025-01-31 or 2025-01-31T12:00:00Z (got '${raw}')`,
    )
  }
  return new Date(time).toISOString()
}

function batchSize(command: string, values: Map<string, string | true>): number {
  const raw = values.get('batch-size')
  if (raw === undefined) return 500
  const n = Number(raw)
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || n < 1 || n > 10_000) {
    throw new UsageError(`${command}: --batch-size must be a whole number from 1 to 10000 (got '${raw}')`)
  }
  return n
}

function parseReplay(args: string[]): CliCommand {
  const values = parseOptions('replay', args, replayOptions)
  if (values.has('help')) return { name: 'help' }
  const string = (name: string) => {
    const value = values.get(name)
    return typeof value === 'string' ? value : undefined
  }
  if (values.has('to') && !values.has('from')) throw new UsageError('replay: --to needs --from')
  const selectors = ['order', 'from', 'after-position', 'all', 'resume'].filter((name) => values.has(name))
  if (selectors.length === 0) {
    throw new UsageError('replay: choose what to replay: --order, --from, --after-position, --all or --resume')
  }
  if (selectors.length > 1) {
    throw new UsageError(`replay: choose one of ${selectors.map((s) => `--${s}`).join(', ')}, not several`)
  }
  const common = {
    batchSize: batchSize('replay', values),
    json: values.has('json'),
    ...(values.has('as-stored') ? { asStored: true } : {}),
    ...(typeof values.get('stream-type') === 'string' ? { streamType: values.get('stream-type') as string } : {}),
  }
  const resume = string('resume')
  if (resume !== undefined) return { name: 'replay', target: { resume }, ...common }
  let selection: ReplaySelection
  const orderId = string('order')
  const from = string('from')
  const after = string('after-position')
  if (orderId !== undefined) {
    if (orderId.trim() === '') throw new UsageError('replay: --order needs an order id')
    selection = { kind: 'stream', streamId: orderId }
  } else if (from !== undefined) {
    const to = string('to')
    selection = { kind: 'time', from: isoTime('replay', 'from', from) }
    if (to !== undefined) {
      selection.to = isoTime('replay', 'to', to)
      if (selection.to <= selection.from) throw new UsageError('replay: --to must be later than --from')
    }
  } else if (after !== undefined) {
    if (!/^\d{1,19}$/.test(after)) {
      throw new UsageError(`replay: --after-position must be a global position, a whole number (got '${after}')`)
    }
    selection = { kind: 'after-position', globalPosition: BigInt(after).toString() }
  } else {
    selection = { kind: 'all' }
  }
  return { name: 'replay', target: { selection }, ...common }
}

/** Parses `<command> [options]`; throws UsageError naming what is wrong. */
export function parseCommand(argv: string[]): CliCommand {
  const [command, ...args] = argv
  switch (command) {
    case undefined:
      throw new UsageError('no command given: replay, rebuild or rebuild-read-model')
    case 'help':
    case '--help':
    case '-h':
      return { name: 'help' }
    case 'replay':
      return parseReplay(args)
    case 'rebuild-read-model': {
      const values = parseOptions(command, args, rebuildOptions)
      if (values.has('help')) return { name: 'help' }
      return {
        name: command,
        resume: values.has('resume'),
        batchSize: batchSize(command, values),
        json: values.has('json'),
      }
    }
    case 'rebuild': {
      const values = parseOptions(command, args, { ...rebuildOptions, projection: { type: 'string' } })
      if (values.has('help')) return { name: 'help' }
      const projection = values.get('projection')
      if (typeof projection !== 'string') throw new UsageError('rebuild: name the projection with --projection <name>')
      return {
        name: 'rebuild-read-model',
        projection,
        resume: values.has('resume'),
        batchSize: batchSize(command, values),
        json: values.has('json'),
      }
    }
    default:
      throw new UsageError(`unknown command '${command}': replay, rebuild or rebuild-read-model`)
  }
}

/** The command as the operator typed it: the first word of every line it prints about itself. */
function commandName(command: Exclude<CliCommand, { name: 'help' }>): string {
  return command.name === 'rebuild-read-model' && command.projection !== undefined ? 'rebuild' : command.name
}

interface Io {
  stdout: { write(text: string): unknown }
  stderr: { write(text: string): unknown }
}

const percent = (done: number, total: number) => (total === 0 ? 100 : Math.floor((done * 100) / total))

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** Progress lines in one style for every command: text on stderr, or JSON lines on stdout. */
function progressReporter(
  io: Io,
  options: {
    json: boolean
    command: string
    verb: string
    /** Events done before this run (a resumed job), left out of the rate. */
    doneBefore: number
  },
) {
  const startedAt = performance.now()
  return {
    progress(fields: { done: number; total: number; status: string; [key: string]: unknown }) {
      const elapsedMs = Math.round(performance.now() - startedAt)
      if (options.json) {
        const line = { command: options.command, ...fields, percent: percent(fields.done, fields.total), elapsedMs }
        io.stdout.write(`${JSON.stringify(line)}\n`)
        return
      }
      const { done, total } = fields
      let line = `${options.verb} ${done}/${total} events (${percent(done, total)}%)`
      const rate = elapsedMs > 0 ? ((done - options.doneBefore) * 1000) / elapsedMs : 0
      if (rate > 0 && done < total) {
        line += `, ${Math.round(rate)} events/s, about ${Math.ceil((total - done) / rate)} s left`
      }
      io.stderr.write(`${line}\n`)
    },
    elapsed: () => seconds(performance.now() - startedAt),
  }
}

function describeSelection(selection: ReplaySelection): string {
  switch (selection.kind) {
    case 'stream':
      return `order ${selection.streamId}`
    case 'time':
      return selection.to ? `occurred from ${selection.from} to ${selection.to}` : `occurred since ${selection.from}`
    case 'after-position':
      return `after global position ${selection.globalPosition}`
    case 'all':
      return 'all order events'
  }
}

async function replayCommand(
  runtime: Runtime,
  command: Extract<CliCommand, { name: 'replay' }>,
  io: Io,
  signal: AbortSignal,
): Promise<number> {
  const { db, transport } = runtime
  const [{ createReplayJob, getReplayJob, runReplayJob }, sources, { allModules }] = await Promise.all([
    import('../platform/es/replay.ts'),
    import('./index.ts'),
    import('../services.ts'),
  ])
  const streamType = command.streamType ?? 'order'
  const declared = allModules().flatMap((m) => (m.replay ? [m.replay] : []))
  const found =
    streamType === 'order'
      ? { newest: sources.orderReplaySource, asStored: sources.orderReplaySourceAsStored }
      : declared.find((r) => r.newest.streamType === streamType)
  if (!found) {
    io.stderr.write(
      `replay: no service keeps streams of type '${streamType}'; choose from ${declared.map((r) => r.newest.streamType).join(', ')}\n`,
    )
    return 2
  }
  const source = command.asStored ? found.asStored : found.newest
  const ORDER_EVENTS_TOPIC = source.topics.join(', ')
  if (signal.aborted) return 130
  let job: ReplayJob
  if ('resume' in command.target) {
    const found = await getReplayJob(db, command.target.resume)
    if (!found) {
      io.stderr.write(`replay: there is no replay job '${command.target.resume}'\n`)
      return 1
    }
    if (found.status === 'completed') {
      io.stderr.write(`replay ${found.id} already completed (${found.done}/${found.total} events): nothing to resume\n`)
      return 0
    }
    job = found
  } else {
    job = await createReplayJob(db, source, command.target.selection)
  }
  const resumeWith = `npm run orderflow -- replay --resume ${job.id}${streamType === 'order' ? '' : ` --stream-type ${streamType}`}${command.asStored ? ' --as-stored' : ''}`
  const reporter = progressReporter(io, {
    json: command.json,
    command: 'replay',
    verb: 'replayed',
    doneBefore: job.done,
  })
  if (!command.json) {
    io.stderr.write(
      `replay ${job.id}: ${job.total - job.done} of ${job.total} events to go (${describeSelection(job.filter)}) ` +
        `to ${ORDER_EVENTS_TOPIC} via ${transport.kind}, in batches of ${command.batchSize}\n`,
    )
  }
  // Text mode said as much in its first line.
  if (command.json) reporter.progress({ jobId: job.id, status: 'running', done: job.done, total: job.total })
  let result: ReplayJob
  try {
    result = await runReplayJob({ db, transport, source }, job.id, {
      batchSize: command.batchSize,
      signal,
      onProgress: (p) => {
        if (p.status === 'running') reporter.progress({ ...p })
      },
    })
  } catch (error) {
    // The job recorded its last published batch, so whatever broke, it can continue from there.
    io.stderr.write(
      `replay: job ${job.id} failed: ${error instanceof Error ? error.message : error}\nOnce that is fixed, resume with:\n  ${resumeWith}\n`,
    )
    return 1
  }
  if (result.status === 'interrupted') {
    if (command.json) {
      reporter.progress({
        jobId: result.id,
        status: result.status,
        done: result.done,
        total: result.total,
        resume: resumeWith,
      })
    } else {
      io.stderr.write(
        `replay ${result.id} interrupted after ${result.done}/${result.total} events (${percent(result.done, result.total)}%). Resume with:\n  ${resumeWith}\n`,
      )
    }
    return 130
  }
  if (command.json) {
    reporter.progress({ jobId: result.id, status: result.status, done: result.done, total: result.total })
  } else {
    io.stderr.write(
      `replay ${result.id} completed: ${result.done}/${result.total} events re-published in ${reporter.elapsed()}\n`,
    )
  }
  return 0
}

async function rebuildCommand(
  runtime: Runtime,
  command: Extract<CliCommand, { name: 'rebuild-read-model' }>,
  io: Io,
  signal: AbortSignal,
): Promise<number> {
  const named = command.projection !== undefined && command.projection !== 'order_read_model'
  const resumeWith = named
    ? `npm run orderflow -- rebuild --projection ${command.projection} --resume`
    : 'npm run orderflow -- rebuild-read-model --resume'
  const reporter = progressReporter(io, {
    json: command.json,
    command: named ? 'rebuild' : 'rebuild-read-model',
    verb: 'projected',
    // rebuildReadModel counts from 0 even when it resumes.
    doneBefore: 0,
  })
  const [{ orderReadModel }, { rebuildProjection }, { allModules }] = await Promise.all([
    import('./application/read-model.ts'),
    import('../platform/es/projections.ts'),
    import('../services.ts'),
  ])
  const projections = allModules().flatMap((m) => m.projections ?? [])
  const projection = named ? projections.find((p) => p.name === command.projection) : orderReadModel
  if (!projection) {
    io.stderr.write(
      `rebuild: there is no projection '${command.projection}'; choose from ${[...new Set(projections.map((p) => p.name))].join(', ')}\n`,
    )
    return 2
  }
  if (!command.json) {
    io.stderr.write(
      command.resume
        ? `resuming the rebuild of ${projection.name} from its checkpoint\n`
        : named
          ? `rebuilding ${projection.name} from the event store (it is incomplete until the rebuild ends)\n`
          : 'rebuilding the order read model from the event store (order lists are incomplete until it ends)\n',
    )
  }
  let result: { done: number; total: number }
  try {
    result = await rebuildProjection(runtime.db, projection, {
      resume: command.resume,
      batchSize: command.batchSize,
      signal,
      onProgress: (p) => reporter.progress({ status: 'running', ...p }),
    })
  } catch (error) {
    // Each batch commits with its checkpoint, so the rebuild can continue from the last one.
    io.stderr.write(
      `${commandName(command)}: the rebuild of ${projection.name} failed: ${error instanceof Error ? error.message : error}\nOnce that is fixed, resume with:\n  ${resumeWith}\n`,
    )
    return 1
  }
  if (signal.aborted && result.done < result.total) {
    if (command.json) reporter.progress({ status: 'interrupted', ...result, resume: resumeWith })
    else {
      io.stderr.write(
        `rebuild interrupted after ${result.done}/${result.total} events (${percent(result.done, result.total)}%). Resume with:\n  ${resumeWith}\n`,
      )
    }
    return 130
  }
  if (command.json) reporter.progress({ status: 'completed', ...result })
  else io.stderr.write(`read model rebuilt: ${result.done}/${result.total} events projected in ${reporter.elapsed()}\n`)
  return 0
}

async function cliLogger(env: Record<string, string | undefined>, config: Config): Promise<Logger> {
  const { pino } = await import('pino')
  // stdout is for --json progress; the server's default level would add start-up chatter.
  return pino(
    {
      name: 'orderflow-cli',
      level: env.LOG_LEVEL ? config.logLevel : 'warn',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 2, sync: true }),
  )
}

/** Runs one command; resolves to the process exit status. */
export async function main(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
  io: Io = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let command: CliCommand
  try {
    command = parseCommand(argv)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    // Its message names the command itself: the option parser says which one it was parsing.
    io.stderr.write(`${error.message}\n\n${USAGE}`)
    return 2
  }
  if (command.name === 'help') {
    io.stdout.write(USAGE)
    return 0
  }

  const name = commandName(command)
  const { ConfigError, loadConfig } = await import('../platform/config.ts')
  let config: Config
  try {
    config = loadConfig(env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    io.stderr.write(`${name}: ${error.message}\n`)
    return 2
  }
  const controller = new AbortController()
  let interrupts = 0
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++
    if (interrupts === 1) {
      io.stderr.write(`\n${signal}: stopping after the current batch (again to stop at once)\n`)
      controller.abort()
      return
    }
    io.stderr.write(`${signal}: stopping at once; the last batch may be published again on resume\n`)
    process.exit(130)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  // A name that matches nothing is said before the database is opened (which takes seconds).
  if (
    (command.name === 'replay' && command.streamType) ||
    (command.name === 'rebuild-read-model' && command.projection)
  ) {
    const { allModules } = await import('../services.ts')
    const modules = allModules()
    if (command.name === 'replay' && command.streamType && command.streamType !== 'order') {
      const types = modules.flatMap((m) => (m.replay ? [m.replay.newest.streamType] : []))
      if (!types.includes(command.streamType)) {
        io.stderr.write(
          `replay: no service keeps streams of type '${command.streamType}'; choose from ${types.join(', ')}\n`,
        )
        return 2
      }
    }
    if (command.name === 'rebuild-read-model' && command.projection) {
      const names = [...new Set(modules.flatMap((m) => m.projections ?? []).map((p) => p.name))]
      if (!names.includes(command.projection)) {
        io.stderr.write(`rebuild: there is no projection '${command.projection}'; choose from ${names.join(', ')}\n`)
        return 2
      }
    }
  }
  let runtime: Runtime | undefined
  try {
    const [{ openRuntime }, { migrateModules }, { allModules }] = await Promise.all([
      import('../platform/runtime.ts'),
      import('../app.ts'),
      import('../services.ts'),
    ])
    runtime = await openRuntime(config, { logger: await cliLogger(env, config) })
    // Every service's tables: a replay or rebuild may be of any of them.
    await migrateModules(runtime.db, allModules())
    return command.name === 'replay'
      ? await replayCommand(runtime, command, io, controller.signal)
      : await rebuildCommand(runtime, command, io, controller.signal)
  } catch (error) {
    // openRuntime takes the DATA_DIR lock, as the server does: the embedded database is single-process.
    if (error instanceof DataDirInUseError) {
      io.stderr.write(
        dataDirBusy(
          name,
          error,
          'stop it first (replay and rebuild-read-model have no HTTP route to ask it), or run on PostgreSQL (DATABASE_URL)',
        ),
      )
      return 1
    }
    if (isAppError(error, 'NOT_FOUND')) {
      io.stderr.write(`${name}: ${error.message}\n`)
    } else {
      io.stderr.write(`${name}: failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
    }
    return 1
  } finally {
    await runtime?.close()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

if (import.meta.main) {
  // `--json | head` closes stdout early: the replay goes on (its job must end cleanly), unread.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error
  })
  process.exitCode = await main(process.argv.slice(2))
}
