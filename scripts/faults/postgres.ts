/**
 * A PostgreSQL server of the fault suite's own, started from the machine's PostgreSQL binaries in
 * a temp dir on a free port: the suite stops it with `pg_ctl stop -m immediate` (and `-m fast`),
 * which it must never do to the shared server the other tests use.
 *
 * initdb and postgres refuse to run as root, so as root every command runs as the `postgres` OS
 * user (`runuser -u postgres --`), which owns the temp dir; as anyone else, as that user.
 */
import { spawn } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { openPostgres, quoteIdentifier } from '../../src/platform/sql/postgres.ts'
import { freePort } from './ports.ts'

export interface PostgresInstance {
  port: number
  /** `postgres://postgres@127.0.0.1:<port>/<database>` */
  url(database: string): string
  /** The postmaster's pid while it runs. */
  pid(): number | undefined
  /** Crash-like stop: every backend is killed at once, no checkpoint; the next start recovers from the WAL. */
  stopImmediate(): Promise<void>
  /** Orderly stop: clients are disconnected (SQLSTATE 57P01), a checkpoint is written. */
  stopFast(): Promise<void>
  start(): Promise<void>
  createDatabase(name: string): Promise<void>
  dropDatabase(name: string): Promise<void>
  /**
   * Takes every connection the server allows (as a superuser, so the reserved ones too) until it
   * answers 53300, and makes `database`'s own clients need new ones (see holdAllConnections).
   */
  exhaustConnections(database: string): Promise<HeldConnections>
  /** Stops the server (immediately) and removes its directory. */
  destroy(): Promise<void>
}

export interface HeldConnections {
  /** How many connections the suite holds. */
  held: number
  /** Backends of the fault's database that were terminated so that its clients need new connections. */
  terminated: number
  /** What the server answered when it refused one more. */
  refusal: string
  release(): Promise<void>
}

const host = '127.0.0.1'

/** The newest installed PostgreSQL's bin dir: PG_BIN, else /usr/lib/postgresql/<newest>/bin (Debian's layout). */
export function postgresBinDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : []
  const newest = versions[0]
  if (newest === undefined) {
    throw new Error(
      'the fault suite starts a PostgreSQL server of its own, but no initdb was found under /usr/lib/postgresql/*/bin: ' +
        'install the server binaries (Debian/Ubuntu: apt-get install postgresql-15, or any postgresql-NN) or set PG_BIN',
    )
  }
  return join(root, newest, 'bin')
}

export async function startPostgres(
  options: {
    log?: (line: string) => void
    /** More server settings (`name=value`), e.g. `shared_preload_libraries=pg_stat_statements`. */
    settings?: string[]
  } = {},
): Promise<PostgresInstance> {
  const log = options.log ?? (() => {})
  const bin = postgresBinDir()
  const asRoot = process.getuid?.() === 0
  const base = mkdtempSync(join(tmpdir(), 'orderflow-faults-pg-'))
  const data = join(base, 'data')
  const logFile = join(base, 'postgres.log')
  if (asRoot) {
    const { uid, gid } = await postgresUser()
    chownSync(base, uid, gid)
  }
  const command = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args)
  const port = await freePort()

  const init = await command('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8'])
  if (init.code !== 0) throw new Error(`initdb failed (exit code ${init.code}):\n${init.output}`)

  const serverOptions = [
    `-p ${port}`,
    `-c listen_addresses=${host}`,
    // No Unix socket: the suite connects over TCP, and the socket dir would need the postgres user's rights.
    "-c unix_socket_directories=''",
    // A stopped server, not a crashed machine: WAL is still written before every commit returns, so an
    // immediate stop loses nothing fsync would have kept; fsync off spares the shared disk.
    '-c fsync=off',
    // Few enough that the connections-exhausted fault can hold every one of them quickly (two apps
    // of 10 connections each, the verification's 2 and an admin connection fit easily).
    '-c max_connections=50',
    ...(options.settings ?? []).map((setting) => `-c ${setting}`),
  ].join(' ')
  const start = async () => {
    const result = await command('pg_ctl', ['start', '-w', '-t', '60', '-D', data, '-l', logFile, '-o', serverOptions])
    if (result.code !== 0)
      throw new Error(`pg_ctl start failed (exit code ${result.code}):\n${result.output}\n${tail(logFile)}`)
  }
  const stop = async (mode: 'immediate' | 'fast') => {
    const result = await command('pg_ctl', ['stop', '-w', '-t', '60', '-D', data, '-m', mode])
    if (result.code !== 0)
      throw new Error(`pg_ctl stop -m ${mode} failed (exit code ${result.code}):\n${result.output}`)
  }
  await start()
  log(`PostgreSQL ${bin.split('/').at(-2)} on ${host}:${port}, data in ${data}`)

  const url = (database: string) => `postgres://postgres@${host}:${port}/${database}`
  const admin = async (sql: string) => {
    const db = openPostgres({ connectionString: url('postgres'), max: 1 })
    try {
      await db.exec(sql)
    } finally {
      await db.close()
    }
  }
  let destroyed = false
  const destroy = async () => {
    if (destroyed) return
    destroyed = true
    process.off('exit', killOnExit)
    await stop('immediate').catch(() => {})
    rmSync(base, { recursive: true, force: true })
  }
  // A server this process started must not outlive it (an interrupted run).
  const killOnExit = () => {
    const pid = postmasterPid(data)
    if (pid) {
      try {
        process.kill(pid, 'SIGQUIT')
      } catch {}
    }
  }
  process.on('exit', killOnExit)

  return {
    port,
    url,
    pid: () => postmasterPid(data),
    stopImmediate: () => stop('immediate'),
    stopFast: () => stop('fast'),
    start,
    createDatabase: (name) => admin(`CREATE DATABASE ${quoteIdentifier(name)}`),
    dropDatabase: (name) => admin(`DROP DATABASE IF EXISTS ${quoteIdentifier(name)} WITH (FORCE)`),
    exhaustConnections: (database) => holdAllConnections(url('postgres'), database),
    destroy,
  }
}

/**
 * Connections exhausted: opens connections until the server refuses one with SQLSTATE 53300, then,
 * through one of them, terminates the backends `database`'s clients hold (an app's pool keeps idle
 * connections and would otherwise meet the limit only when it recycles them), and takes the slots
 * that freed too; again until nothing of `database` is left connected (at most 10 rounds, since an
 * app may win a freed slot back in between).
 */
export async function holdAllConnections(url: string, database: string): Promise<HeldConnections> {
  const held: pg.Client[] = []
  let refusal = ''
  let terminated = 0
  const fill = async () => {
    for (;;) {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
      client.on('error', () => {})
      try {
        await client.connect()
        held.push(client)
      } catch (error) {
        await client.end().catch(() => {})
        const e = error as { code?: string; message?: string }
        if (e.code === '53300') {
          refusal = `${e.code} ${e.message}`
          return
        }
        throw error
      }
    }
  }
  const release = async () => {
    await Promise.all(held.splice(0).map((c) => c.end().catch(() => {})))
  }
  try {
    await fill()
    for (let round = 0; round < 10; round++) {
      const first = held[0]
      if (!first) throw new Error(`the server refused the first connection: ${refusal}`)
      const { rows } = await first.query<{ n: string }>(
        `SELECT count(pg_terminate_backend(pid))::text AS n FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [database],
      )
      const n = Number(rows[0]?.n ?? 0)
      terminated += n
      await fill()
      if (n === 0) break
    }
  } catch (error) {
    await release()
    throw error
  }
  return { held: held.length, terminated, refusal, release }
}

function postmasterPid(data: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
  if (uid.code !== 0 || gid.code !== 0) {
    throw new Error(
      'running as root, the fault suite starts PostgreSQL as the `postgres` OS user, which does not exist here ' +
        '(the postgresql-NN package creates it)',
    )
  }
  return { uid: Number(uid.output.trim()), gid: Number(gid.output.trim()) }
}

function tail(path: string, lines = 20): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

function run(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => {
      output += chunk
    })
    child.stderr.on('data', (chunk) => {
      output += chunk
    })
    child.once('error', fail)
    child.once('close', (code) => done({ code, output }))
  })
}
