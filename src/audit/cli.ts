import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../platform/config.ts'
import { openPglite } from '../platform/sql/pglite.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import { openPostgres } from '../platform/sql/postgres.ts'
import { type AuditReport, formatAuditReport, runAudit } from './audit.ts'
import { lagSourceFor } from './index.ts'

/**
 * `npm run audit [-- --json] [--stuck-after-ms N] [--url http://host:port]`: runs the invariant
 * auditor against the deployment the environment describes (DATABASE_URL and KAFKA_BROKERS, or the
 * embedded default's DATA_DIR) and prints a table, or the JSON report. With `--url` it asks a
 * running orderflow instead (`GET /api/audit`), which is the way on the embedded default while the
 * server holds its data directory. Exit code 0 when clean, 1 when an invariant is broken, 2 on a
 * usage or configuration error.
 */
async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      'stuck-after-ms': { type: 'string' },
      url: { type: 'string' },
    },
  })
  const stuckAfter = values['stuck-after-ms']
  if (stuckAfter !== undefined && !/^\d+$/.test(stuckAfter)) {
    process.stderr.write(`--stuck-after-ms must be a whole number of milliseconds (got '${stuckAfter}')\n`)
    return 2
  }
  let report: AuditReport
  if (values.url) {
    const url = new URL('/api/audit', values.url)
    if (stuckAfter !== undefined) url.searchParams.set('stuckAfterMs', stuckAfter)
    const response = await fetch(url)
    if (!response.ok) {
      process.stderr.write(`${url} answered ${response.status}: ${await response.text()}\n`)
      return 2
    }
    report = (await response.json()) as AuditReport
  } else {
    const config = loadConfig()
    let db: SqlDatabase
    if (config.database.kind === 'postgres') db = openPostgres({ connectionString: config.database.url })
    else db = await openPglite(config.database.dataDir)
    try {
      report = await runAudit(db, {
        stuckAfterMs: stuckAfter === undefined ? config.audit.stuckAfterMs : Number(stuckAfter),
        lag: lagSourceFor(config, db),
      })
    } finally {
      await db.close()
    }
  }
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatAuditReport(report))
  return report.ok ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (error) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`orderflow audit cannot start. ${error.message}\n`)
      process.exit(2)
    }
    process.stderr.write(`orderflow audit failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`)
    process.exit(2)
  },
)
