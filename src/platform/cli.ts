import { mkdir } from 'node:fs/promises'
import type { Config } from './config.ts'
import { type DataDirInUseError, lockDataDir } from './sql/data-dir-lock.ts'
import { openPglite } from './sql/pglite.ts'
import type { SqlDatabase } from './sql/port.ts'
import { openPostgres } from './sql/postgres.ts'

/**
 * What orderflow's command-line entry points share: how they report a bad argument, where the
 * local server answers, and the one line they print when the server holds the embedded database.
 *
 * The embedded database is single-process: every entry point that opens DATA_DIR takes its lock
 * (`lockDataDir`, through `openRuntime` or directly), and refuses with `dataDirBusy` when the
 * server has it, rather than opening the same files a second time.
 */

/** The variable `--url` commands read a bearer token from when `--token` is not given. */
export const TOKEN_VARIABLE = 'ORDERFLOW_TOKEN'

/**
 * parseArgs's own errors (unknown option, missing value, stray argument) as one line; undefined
 * for any other error. Node's advice about `--` is dropped: it explains parseArgs, not the command.
 */
export function argumentProblem(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) return undefined
  return (error as Error).message.split(/\. (To specify|This command)/)[0]
}

/** Where a server of this configuration answers on this machine: loopback for a wildcard HOST. */
export function localServerUrl(config: Pick<Config, 'http'>): string {
  const host = ['0.0.0.0', '::', ''].includes(config.http.host) ? '127.0.0.1' : config.http.host
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.http.port}`
}

/**
 * The configuration's database for a command: PostgreSQL, or PGlite in DATA_DIR with its lock held
 * (`unlock` after `close`). Throws DataDirInUseError while the server has DATA_DIR open.
 */
export async function openCliDatabase(
  config: Pick<Config, 'database'>,
): Promise<{ db: SqlDatabase; unlock: () => void }> {
  if (config.database.kind === 'postgres') {
    return { db: openPostgres({ connectionString: config.database.url }), unlock: () => {} }
  }
  await mkdir(config.database.dataDir, { recursive: true })
  const unlock = lockDataDir(config.database.dataDir)
  try {
    return { db: await openPglite(config.database.dataDir), unlock }
  } catch (error) {
    unlock()
    throw error
  }
}

/** The one line for a DATA_DIR held by another process, and what to do instead. */
export function dataDirBusy(command: string, error: DataDirInUseError, instead: string): string {
  return `${command}: the server (pid ${error.owner}) has DATA_DIR ${error.dataDir} open; ${instead}\n`
}
