import { hostname, userInfo } from 'node:os'
import { parseArgs } from 'node:util'
import { argumentProblem, dataDirBusy, openCliDatabase } from '../cli.ts'
import { ConfigError, loadConfig } from '../config.ts'
import { AppError } from '../errors.ts'
import { DataDirInUseError } from '../sql/data-dir-lock.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { PERMANENT_REFUSALS } from '../transport/refusal.ts'
import {
  discardRefused,
  listRefused,
  type RefusedRow,
  type RefusedSelection,
  refusedIds,
  retryRefused,
} from './refused.ts'

/** Rows per statement of a `--topic` run: a few thousand rows and the operator sees it move. */
const BATCH = 500

/**
 * `npm run orderflow -- outbox`: the outbox rows the broker refused for good (refused.ts), in the database the
 * environment describes (DATABASE_URL, or the embedded default's DATA_DIR while no server has it
 * open). It changes rows only; the relays of the running processes see the change at their next
 * poll, so nothing needs restarting.
 *
 * `retry --topic` and `discard --topic` resolve every refused row of a topic with the same
 * functions as ids do, BATCH rows per statement: each batch commits on its own, so a long run shows
 * progress and holds no lock for long, and one stopped halfway leaves the rows it did not reach
 * refused, as they were. Batches cannot break a key's order: the relay holds every row of a key
 * behind the oldest row of that key still refused, whichever batch retries it.
 */
export const USAGE = `Usage: npm run orderflow -- outbox <command> [options]

Outbox rows the broker refused for good: larger than the topic's max.message.bytes, an invalid
record, a topic this principal may not write. The relay set each aside; the later rows of its
topic and key wait behind it, in order, and every other key flows.

Commands:
  list [--topic T] [--refused-with R] [--limit N]
                        the refused rows, oldest first, with how many rows of their key wait
                        behind each (--limit: 1 to 1000, default 100)
  retry <id>...         try them again, once the cause is fixed (the topic's max.message.bytes
                        raised, the ACL granted): the relay publishes each at its next poll and
                        the rows of its key follow in order; a row refused again is set aside again
  retry --topic T [--refused-with R] [--dry-run]
                        the same for every refused row of topic T
  discard <id>... --reason "why" [--by NAME]
                        never publish them: the rows of their key that waited behind them go out
                        next. Who (default: this user@host) and why are kept on the row
  discard --topic T [--refused-with R] [--dry-run] --reason "why" [--by NAME]
                        the same for every refused row of topic T

Options:
  --topic T             the topic as 'list' shows it: without the deployment's KAFKA_TOPIC_PREFIX.
                        With retry and discard, instead of ids: every refused row of T, oldest
                        first, ${BATCH} per batch with progress; Ctrl-C stops after the current batch
                        (the rows not reached stay refused)
  --refused-with R      only the rows the broker refused with R (the REASON 'list' shows), one of
                        ${[...PERMANENT_REFUSALS].join(`\n${' '.repeat(24)}`)}
  --dry-run             with --topic: how many rows, and which, would be retried or discarded;
                        nothing changes
  --json                JSON instead of text
  -h, --help            this text

Exit status: 0 done (a topic with no refused rows too), 1 some ids were not refused rows (left
alone, the others done) or Ctrl-C stopped a --topic run, 2 bad arguments or configuration, a
DATA_DIR the server has open, or a database that does not answer.
`

const pad = (text: string, width: number) => (text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width))

function table(rows: readonly RefusedRow[]): string {
  if (rows.length === 0) return 'no refused outbox rows\n'
  // Never cut a topic's name: it is what --topic takes.
  const topicWidth = Math.max(24, ...rows.map((r) => r.topic.length))
  const lines = [
    `${pad('ID', 10)} ${pad('TOPIC', topicWidth)} ${pad('KEY', 38)} ${pad('REASON', 28)} ${pad('BYTES', 9)} ${pad('HELD', 5)} REFUSED AT`,
  ]
  for (const r of rows) {
    lines.push(
      `${pad(r.id, 10)} ${pad(r.topic, topicWidth)} ${pad(r.key, 38)} ${pad(r.reason, 28)} ${pad(String(r.valueBytes), 9)} ${pad(String(r.heldBehind), 5)} ${r.refusedAt}`,
    )
  }
  return `${lines.join('\n')}\n`
}

const outcome = { retry: 'retried', discard: 'discarded' } as const

/**
 * `retry --topic` and `discard --topic`: the selection's refused rows as they are now, then
 * `resolve` over them BATCH at a time. Rows refused after the selection are left for the next run.
 */
async function resolveSelection(options: {
  command: 'retry' | 'discard'
  db: SqlDatabase
  selection: RefusedSelection & { topic: string }
  dryRun: boolean
  json: boolean
  topicPrefix: string
  resolve: (ids: readonly string[]) => Promise<string[]>
}): Promise<number> {
  const { command, selection, json } = options
  const out = (text: string) => process.stdout.write(text)
  const what = `topic '${selection.topic}'${selection.reason ? ` (${selection.reason})` : ''}`
  const matched = await refusedIds(options.db, selection)
  const summary = { topic: selection.topic, refusedWith: selection.reason ?? null, matched: matched.length }
  if (matched.length === 0 && !json) {
    const prefix = options.topicPrefix
    const hint =
      prefix !== '' && selection.topic.startsWith(prefix)
        ? ` (the outbox names topics without KAFKA_TOPIC_PREFIX '${prefix}': --topic ${selection.topic.slice(prefix.length)})`
        : ''
    out(`no refused outbox rows of ${what}: nothing to ${command}${hint}\n`)
    return 0
  }
  if (options.dryRun) {
    out(
      json
        ? `${JSON.stringify({ ...summary, dryRun: true, ids: matched })}\n`
        : `dry run: ${matched.length} refused row(s) of ${what} would be ${outcome[command]}; nothing changed\n${matched.join(' ')}\n`,
    )
    return 0
  }

  const stop = new AbortController()
  const onSigint = () => {
    process.stderr.write(
      '\nstopping after the current batch: the rows not reached stay refused (again to stop at once)\n',
    )
    stop.abort()
  }
  process.once('SIGINT', onSigint)
  const done: string[] = []
  let reached = 0
  try {
    while (reached < matched.length && !stop.signal.aborted) {
      const batch = matched.slice(reached, reached + BATCH)
      done.push(...(await options.resolve(batch)))
      reached += batch.length
      if (matched.length > BATCH) process.stderr.write(`${command}: ${reached} of ${matched.length}\n`)
    }
  } finally {
    process.removeListener('SIGINT', onSigint)
  }
  const resolved = new Set(done)
  // Retried or discarded by someone else since the selection (or published once retried): left alone.
  const gone = matched.slice(0, reached).filter((id) => !resolved.has(id))
  const stopped = reached < matched.length
  if (json) {
    out(
      `${JSON.stringify({ ...summary, [outcome[command]]: done, notRefused: gone, ...(stopped ? { stopped } : {}) })}\n`,
    )
  } else if (stopped) {
    out(
      `stopped after ${reached} of ${matched.length} (${outcome[command]} ${done.length}): the rest stay refused; the same command goes on\n`,
    )
  } else {
    out(
      command === 'retry'
        ? `retried ${done.length} refused row(s) of ${what}: the relay publishes them at its next poll, and the rows of their keys follow\n`
        : `discarded ${done.length} refused row(s) of ${what}: never published; the rows of their keys that waited go out next\n`,
    )
  }
  if (gone.length > 0) {
    process.stderr.write(
      `outbox: ${gone.length} row(s) were no longer refused when reached (retried or discarded meanwhile), left alone: ${gone.join(' ')}\n`,
    )
  }
  return stopped ? 1 : 0
}

async function main(argv: string[]): Promise<number> {
  let parsed: {
    values: {
      topic?: string
      'refused-with'?: string
      'dry-run'?: boolean
      limit?: string
      reason?: string
      by?: string
      json?: boolean
      help?: boolean
    }
    positionals: string[]
  }
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        topic: { type: 'string' },
        'refused-with': { type: 'string' },
        'dry-run': { type: 'boolean' },
        limit: { type: 'string' },
        reason: { type: 'string' },
        by: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (error) {
    const problem = argumentProblem(error)
    if (!problem) throw error
    process.stderr.write(`outbox: ${problem}\n\n${USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  const [command, ...given] = positionals
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE)
    return values.help || command === 'help' ? 0 : 2
  }
  const wrong = (message: string) => {
    process.stderr.write(`outbox: ${message}\n`)
    return 2
  }
  if (command !== 'list' && command !== 'retry' && command !== 'discard')
    return wrong(`unknown command '${command}'\n\n${USAGE}`)
  for (const id of given)
    if (!/^\d{1,18}$/.test(id)) return wrong(`'${id}' is not an outbox row id (digits, as 'list' shows)`)
  const ids = [...new Set(given.map((id) => BigInt(id).toString()))]
  const topic = values.topic?.trim()
  if (topic === '') return wrong("--topic needs a topic's name, as 'list' shows it")
  const refusedWith = values['refused-with']?.trim().toUpperCase()
  if (refusedWith !== undefined && !PERMANENT_REFUSALS.has(refusedWith))
    return wrong(
      `--refused-with must be one of ${[...PERMANENT_REFUSALS].join(', ')} (got '${values['refused-with']}')`,
    )
  const dryRun = values['dry-run'] === true
  if (command === 'list') {
    if (ids.length > 0) return wrong('list takes no ids')
    if (dryRun) return wrong('list changes nothing: it takes no --dry-run')
  } else {
    if (ids.length > 0 && topic !== undefined)
      return wrong(`${command} takes the ids of refused rows or --topic, not both`)
    if (ids.length === 0 && topic === undefined)
      return wrong(
        `${command} takes the id(s) of refused rows, as 'list' shows, or --topic T for every refused row of T`,
      )
    if (ids.length > 0 && (refusedWith !== undefined || dryRun))
      return wrong(`--refused-with and --dry-run go with --topic, not with ids`)
  }
  // --reason is why a discard was made, kept on the row; on retry it would be mistaken for a filter.
  if (command === 'retry' && values.reason !== undefined)
    return wrong('retry takes no --reason; to retry only the rows the broker refused for one reason: --refused-with R')
  const limit = values.limit === undefined ? 100 : Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    return wrong('--limit must be a whole number from 1 to 1000')
  const reason = values.reason?.trim() ?? ''
  if (command === 'discard' && reason === '') return wrong('discard needs --reason "why" (it is kept on the row)')
  const selection: RefusedSelection = {
    ...(topic !== undefined ? { topic } : {}),
    ...(refusedWith !== undefined ? { reason: refusedWith } : {}),
  }

  const config = loadConfig()
  let opened: { db: SqlDatabase; unlock: () => void }
  try {
    opened = await openCliDatabase(config)
  } catch (error) {
    if (!(error instanceof DataDirInUseError)) throw error
    process.stderr.write(dataDirBusy('outbox', error, 'stop it first, or set DATABASE_URL'))
    return 2
  }
  const { db, unlock } = opened
  const out = (text: string) => process.stdout.write(text)
  try {
    await migratePlatform(db)
    if (command === 'list') {
      const rows = await listRefused(db, { limit, ...selection })
      out(values.json ? `${JSON.stringify(rows, null, 2)}\n` : table(rows))
      if (rows.length === limit) process.stderr.write(`(at most ${limit} shown: --limit for more)\n`)
      return 0
    }
    const by = values.by?.trim() || `${userInfo().username}@${hostname()}`
    const resolve = (batch: readonly string[]) =>
      command === 'retry' ? retryRefused(db, batch) : discardRefused(db, batch, reason, by)
    if (topic !== undefined) {
      return await resolveSelection({
        command,
        db,
        selection: { ...selection, topic },
        dryRun,
        json: values.json === true,
        topicPrefix: config.kafka.topicPrefix,
        resolve,
      })
    }
    const done = await resolve(ids)
    const notRefused = ids.filter((id) => !done.includes(id))
    if (values.json) {
      out(`${JSON.stringify({ [outcome[command]]: done, notRefused })}\n`)
    } else if (done.length > 0) {
      out(
        command === 'retry'
          ? `retried ${done.join(' ')}: the relay publishes them at its next poll, and the rows of their keys follow\n`
          : `discarded ${done.join(' ')}: never published; the rows of their keys that waited go out next\n`,
      )
    }
    if (notRefused.length > 0) {
      process.stderr.write(
        `outbox: not refused rows (published, discarded, retried already, or no such row), left alone: ${notRefused.join(' ')}\n`,
      )
      return 1
    }
    return 0
  } finally {
    await db.close()
    unlock()
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof AppError) {
      process.stderr.write(`outbox: ${error.message}\n`)
      process.exitCode = 2
      return
    }
    process.stderr.write(`outbox: ${(error as Error).stack ?? String(error)}\n`)
    process.exitCode = 2
  },
)
