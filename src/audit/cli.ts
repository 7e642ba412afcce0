import { parseArgs } from 'node:util'
import { argumentProblem, dataDirBusy, localServerUrl, openCliDatabase, TOKEN_VARIABLE } from '../platform/cli.ts'
import { ConfigError, loadConfig } from '../platform/config.ts'
import { openTransport } from '../platform/runtime.ts'
import { loadSettings } from '../platform/settings.ts'
import { DataDirInUseError } from '../platform/sql/data-dir-lock.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import { type AuditReport, formatAuditReport, runAudit } from './audit.ts'
import { indexedDeadLetters } from './dead-letters.ts'
import { auditSettings } from './settings.ts'

/**
 * `npm run orderflow -- audit`: runs the invariant auditor against the deployment the environment
 * describes (DATABASE_URL and KAFKA_BROKERS, or the embedded default's DATA_DIR), or asks a running
 * server with `--url`. On the embedded default it takes the DATA_DIR lock like the server does, so
 * it refuses, in one line, while the server holds the directory.
 */
export const USAGE = `Usage: npm run orderflow -- audit [--json] [--stuck-after-ms N]
                                  [--url http://host:port [--token T]]

Checks the invariants of the order journey (see src/audit/README.md) and prints a table.

  --json               the report as JSON
  --stuck-after-ms N   orders younger than N ms are not expected to be finished
                       (default AUDIT_STUCK_AFTER_MS, 15 minutes)
  --url URL            ask the running server (GET /api/audit) instead of opening the database:
                       the way on the embedded default while the server holds DATA_DIR
  --token T            the bearer token for --url when authentication is on (an operator's;
                       default ${TOKEN_VARIABLE}; AUTH=dev prints one at start-up as OPERATOR_TOKEN)
  -h, --help           this text

Without --url it reads DATABASE_URL (PostgreSQL) or DATA_DIR (embedded, default .orderflow/data,
only while no server has it open), and KAFKA_BROKERS for consumer lag.

Exit status: 0 clean, 1 an invariant is broken, 2 bad arguments, configuration or no answer.
`

async function fromServer(base: string, token: string | undefined, stuckAfter: string | undefined) {
  let url: URL
  try {
    url = new URL('/api/audit', base)
  } catch {
    process.stderr.write(`audit: --url must be an http(s) URL such as http://127.0.0.1:3000 (got '${base}')\n`)
    return 2
  }
  if (stuckAfter !== undefined) url.searchParams.set('stuckAfterMs', stuckAfter)
  process.stderr.write(`asking the server at ${url.origin} (GET /api/audit)\n`)
  let response: Response
  try {
    response = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {})
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message ?? (error as Error).message
    process.stderr.write(`audit: ${url.origin} did not answer: ${cause}\n`)
    return 2
  }
  if (response.status === 401 || response.status === 403) {
    const detail = ((await response.json().catch(() => ({}))) as { detail?: string }).detail ?? ''
    process.stderr.write(
      `audit: ${url.origin} answered ${response.status}${detail ? ` (${detail})` : ''}: ` +
        `${token ? 'the token is not an operator token that verifies' : `pass an operator token with --token or ${TOKEN_VARIABLE}`}\n`,
    )
    return 2
  }
  if (!response.ok) {
    process.stderr.write(`audit: ${url} answered ${response.status}: ${await response.text()}\n`)
    return 2
  }
  return (await response.json()) as AuditReport
}

async function main(argv: string[]): Promise<number> {
  let values: { json?: boolean; 'stuck-after-ms'?: string; url?: string; token?: string; help?: boolean }
  try {
    ;({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        'stuck-after-ms': { type: 'string' },
        url: { type: 'string' },
        token: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }))
  } catch (error) {
    const problem = argumentProblem(error)
    if (!problem) throw error
    process.stderr.write(`audit: ${problem}\n\n${USAGE}`)
    return 2
  }
  if (values.help) {
    process.stdout.write(USAGE)
    return 0
  }
  const stuckAfter = values['stuck-after-ms']
  if (stuckAfter !== undefined && !/^\d+$/.test(stuckAfter)) {
    process.stderr.write(`audit: --stuck-after-ms must be a whole number of milliseconds (got '${stuckAfter}')\n`)
    return 2
  }
  if (values.token !== undefined && !values.url) {
    process.stderr.write('audit: --token goes with --url (the token is for the server)\n')
    return 2
  }
  let report: AuditReport
  if (values.url) {
    const answer = await fromServer(values.url, values.token || process.env[TOKEN_VARIABLE] || undefined, stuckAfter)
    if (typeof answer === 'number') return answer
    report = answer
  } else {
    const config = loadConfig()
    let opened: { db: SqlDatabase; unlock: () => void }
    try {
      opened = await openCliDatabase(config)
    } catch (error) {
      if (!(error instanceof DataDirInUseError)) throw error
      process.stderr.write(dataDirBusy('audit', error, `run with --url ${localServerUrl(config)} to ask it`))
      return 2
    }
    const { db, unlock } = opened
    try {
      const transport = await openTransport(config, db, { clientId: `${config.kafka.clientId}-audit` })
      try {
        report = await runAudit(db, {
          stuckAfterMs: stuckAfter === undefined ? loadSettings(auditSettings).stuckAfterMs : Number(stuckAfter),
          lag: (groups) => transport.groupLag(groups),
          deadLetters: indexedDeadLetters(db),
        })
      } finally {
        await transport.close()
      }
    } finally {
      await db.close()
      unlock()
    }
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatAuditReport(report))
  return report.ok ? 0 : 1
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`audit: cannot start. ${error.message}\n`)
      process.exit(2)
    }
    process.stderr.write(`audit failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
    process.exit(2)
  },
)
