import { hostname, userInfo } from 'node:os'
import { parseArgs } from 'node:util'
import { argumentProblem, dataDirBusy, openCliDatabase } from '../cli.ts'
import { ConfigError, loadConfig } from '../config.ts'
import { AppError } from '../errors.ts'
import { DataDirInUseError } from '../sql/data-dir-lock.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { discardRefused, listRefused, type RefusedRow, retryRefused } from './refused.ts'

/**
 * `npm run orderflow -- outbox`: the outbox rows the broker refused for good (refused.ts), in the database the
 * environment describes (DATABASE_URL, or the embedded default's DATA_DIR while no server has it
 * open). It changes rows only; the relays of the running processes see the change at their next
 * poll, so nothing needs restarting.
 */
export const USAGE = `Usage: npm run orderflow -- outbox <command> [options]

Outbox rows the broker refused for good: larger than the topic's max.message.bytes, an invalid
record, a topic this principal may not write. The relay set each aside; the later rows of its
topic and key wait behind it, in order, and every other key flows.

Commands:
  list [--topic T] [--limit N]
                        the refused rows, oldest first, with how many rows of their key wait
                        behind each (--limit: 1 to 1000, default 100)
  retry <id>...         try them again, once the cause is fixed (the topic's max.message.bytes
                        raised, the ACL granted): the relay publishes each at its next poll and
                        the rows of its key follow in order; a row refused again is set aside again
  discard <id>... --reason "why" [--by NAME]
                        never publish them: the rows of their key that waited behind them go out
                        next. Who (default: this user@host) and why are kept on the row

Options:
  --json                JSON instead of text
  -h, --help            this text

Exit status: 0 done, 1 some ids were not refused rows (left alone, the others done), 2 bad
arguments or configuration, a DATA_DIR the server has open, or a database that does not answer.
`

const pad = (text: string, width: number) => (text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width))

function table(rows: readonly RefusedRow[]): string {
  if (rows.length === 0) return 'no refused outbox rows\n'
  const lines = [
    `${pad('ID', 10)} ${pad('TOPIC', 24)} ${pad('KEY', 38)} ${pad('REASON', 28)} ${pad('BYTES', 9)} ${pad('HELD', 5)} REFUSED AT`,
  ]
  for (const r of rows) {
    lines.push(
      `${pad(r.id, 10)} ${pad(r.topic, 24)} ${pad(r.key, 38)} ${pad(r.reason, 28)} ${pad(String(r.valueBytes), 9)} ${pad(String(r.heldBehind), 5)} ${r.refusedAt}`,
    )
  }
  return `${lines.join('\n')}\n`
}

async function main(argv: string[]): Promise<number> {
  let parsed: {
    values: { topic?: string; limit?: string; reason?: string; by?: string; json?: boolean; help?: boolean }
    positionals: string[]
  }
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        topic: { type: 'string' },
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
  if (!['list', 'retry', 'discard'].includes(command)) return wrong(`unknown command '${command}'\n\n${USAGE}`)
  for (const id of given)
    if (!/^\d{1,18}$/.test(id)) return wrong(`'${id}' is not an outbox row id (digits, as 'list' shows)`)
  const ids = [...new Set(given.map((id) => BigInt(id).toString()))]
  if (command === 'list' && ids.length > 0) return wrong('list takes no ids')
  if (command !== 'list' && ids.length === 0)
    return wrong(`${command} takes the id(s) of refused rows, as 'list' shows`)
  const limit = values.limit === undefined ? 100 : Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    return wrong('--limit must be a whole number from 1 to 1000')
  const reason = values.reason?.trim() ?? ''
  if (command === 'discard' && reason === '') return wrong('discard needs --reason "why" (it is kept on the row)')

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
      const rows = await listRefused(db, { limit, ...(values.topic ? { topic: values.topic } : {}) })
      out(values.json ? `${JSON.stringify(rows, null, 2)}\n` : table(rows))
      if (rows.length === limit) process.stderr.write(`(at most ${limit} shown: --limit for more)\n`)
      return 0
    }
    const done =
      command === 'retry'
        ? await retryRefused(db, ids)
        : await discardRefused(db, ids, reason, values.by?.trim() || `${userInfo().username}@${hostname()}`)
    const notRefused = ids.filter((id) => !done.includes(id))
    if (values.json) {
      out(`${JSON.stringify(command === 'retry' ? { retried: done, notRefused } : { discarded: done, notRefused })}\n`)
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
