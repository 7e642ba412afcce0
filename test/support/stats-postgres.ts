import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { openPostgres } from '../../src/platform/sql/postgres.ts'
import { freePort, waitFor } from './index.ts'

/**
 * A PostgreSQL server of the test's own, started from the installed binaries with
 * `pg_stat_statements` loaded, so that a test can read what PostgreSQL itself counted: how many
 * statements (round trips) and transactions a piece of work cost. The shared server cannot load it
 * (it must be in `shared_preload_libraries` at start-up). Takes a few seconds; fsync is off, as
 * nothing here measures time. Utility statements are counted too (`track_utility`), so BEGIN and
 * COMMIT are.
 */
export interface StatsPostgres {
  db: SqlDatabase
  /** Forgets what was counted so far. */
  reset(): Promise<void>
  /**
   * What PostgreSQL counted since the last reset, in this database: statements executed (each one
   * round trip, BEGIN and COMMIT included), transactions begun, and the statements by text.
   */
  counted(): Promise<{ statements: number; transactions: number; byStatement: { query: string; calls: number }[] }>
  stop(): Promise<void>
}

function binDir(): string {
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim()
  } catch {
    const candidates = ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin']
    const found = candidates.find((dir) => existsSync(join(dir, 'initdb')))
    if (!found) throw new Error('no PostgreSQL binaries (initdb) found: install postgresql, or put pg_config on PATH')
    return found
  }
}

/** initdb and postgres refuse to run as root: as root, they run as the `postgres` user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'))
  if (!line) throw new Error('running as root, and there is no postgres user to run initdb as')
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

export async function startStatsPostgres(): Promise<StatsPostgres> {
  const bin = binDir()
  const user = runAs()
  const dir = mkdtempSync(join(tmpdir(), 'orderflow-stats-pg-'))
  if (user) chownSync(dir, user.uid, user.gid)
  const data = join(dir, 'data')
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], {
    stdio: 'pipe',
    ...(user ?? {}),
  })
  const port = await freePort()
  const server: ChildProcess = spawn(
    join(bin, 'postgres'),
    [
      '-D',
      data,
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'shared_preload_libraries=pg_stat_statements',
      '-c',
      'pg_stat_statements.track_utility=on',
      '-c',
      'fsync=off',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], ...(user ?? {}) },
  )
  let log = ''
  server.stderr?.on('data', (chunk) => {
    log = (log + chunk).slice(-4000)
  })
  const exited = new Promise<void>((done) => server.once('exit', () => done()))
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  const admin = openPostgres({ connectionString: url, max: 1 })
  try {
    await waitFor(
      async () => {
        try {
          await admin.query('SELECT 1')
          return true
        } catch {
          return undefined
        }
      },
      { timeoutMs: 30_000, intervalMs: 100, message: () => `the stats PostgreSQL did not accept connections: ${log}` },
    )
    await admin.exec('CREATE DATABASE counted')
    await admin.exec('CREATE EXTENSION pg_stat_statements')
  } catch (error) {
    server.kill('SIGKILL')
    await admin.close().catch(() => {})
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  const db = openPostgres({ connectionString: `postgres://postgres@127.0.0.1:${port}/counted` })
  return {
    db,
    async reset() {
      await admin.query('SELECT pg_stat_statements_reset()')
    },
    async counted() {
      const { rows } = await admin.query<{ query: string; calls: string }>(
        `SELECT query, calls::text AS calls FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'counted') ORDER BY calls DESC, query`,
      )
      const byStatement = rows.map((row) => ({
        query: row.query.replace(/\s+/g, ' ').slice(0, 100),
        calls: Number(row.calls),
      }))
      const callsOf = (pattern: RegExp) =>
        byStatement.filter((row) => pattern.test(row.query)).reduce((sum, row) => sum + row.calls, 0)
      return {
        statements: byStatement.reduce((sum, row) => sum + row.calls, 0),
        transactions: callsOf(/^BEGIN\b/i),
        byStatement,
      }
    },
    async stop() {
      await db.close().catch(() => {})
      await admin.close().catch(() => {})
      server.kill('SIGINT') // fast shutdown
      await exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
