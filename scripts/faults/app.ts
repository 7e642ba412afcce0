/**
 * One orderflow process (`node src/main.ts`) as an operator runs it, on a fixed port so that a
 * restarted process answers at the same address. Its logs go to a file of its own, kept as
 * evidence of what it did during a fault.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const repoRoot = resolve(import.meta.dirname, '..', '..')
const node = join(repoRoot, 'node_modules', '.bin', 'node')

export interface AppProcess {
  readonly name: string
  readonly url: string
  readonly logFile: string
  alive(): boolean
  pid(): number | undefined
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>
  /** Starts the process again, same environment and port, and waits until it is ready. */
  restart(): Promise<void>
  /** SIGTERM (a graceful stop), SIGKILL when it takes longer than `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>
  /** How the process ended when nobody asked it to (a crash), with its last fatal log; undefined otherwise. */
  crashed(): string | undefined
}

export interface AppOptions {
  name: string
  port: number
  env: Record<string, string>
  logDir: string
  /** How long start-up may take until /health/ready answers 200. */
  readyTimeoutMs?: number
  /** NODE_OPTIONS of the fault's own (a preload), after FAULTS_APP_NODE_OPTIONS. */
  nodeOptions?: string
}

export async function startApp(options: AppOptions): Promise<AppProcess> {
  const url = `http://127.0.0.1:${options.port}`
  const logFile = join(options.logDir, `${options.name}.log`)
  let child: ChildProcess | undefined
  /** Set before the suite signals the process itself, so its exit is not taken for a crash. */
  let stopping = false
  const exited = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null

  const nodeOptions = [process.env.FAULTS_APP_NODE_OPTIONS, options.nodeOptions].filter(Boolean).join(' ')
  const launch = async () => {
    stopping = false
    const out = openSync(logFile, 'a')
    try {
      child = spawn(node, ['src/main.ts'], {
        cwd: repoRoot,
        env: {
          PATH: process.env.PATH ?? '',
          // To look inside the apps during a fault (a preload, --inspect) without touching the suite itself.
          ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
          ...options.env,
          PORT: String(options.port),
          HOST: '127.0.0.1',
        },
        stdio: ['ignore', out, out],
      })
    } finally {
      closeSync(out)
    }
    const started = child
    const killOnExit = () => started.kill('SIGKILL')
    process.on('exit', killOnExit)
    started.once('exit', () => process.off('exit', killOnExit))
    await ready(started, url, options.readyTimeoutMs ?? 90_000, logFile, options.name)
  }
  const waitExit = async (c: ChildProcess, timeoutMs: number) => {
    if (exited(c)) return true
    const timer = sleep(timeoutMs).then(() => false)
    return Promise.race([once(c, 'exit').then(() => true), timer])
  }

  await launch()
  return {
    name: options.name,
    url,
    logFile,
    alive: () => child !== undefined && !exited(child),
    pid: () => child?.pid,
    async kill() {
      if (!child || exited(child)) return
      stopping = true
      child.kill('SIGKILL')
      await waitExit(child, 30_000)
    },
    async restart() {
      if (child && !exited(child)) throw new Error(`${options.name} still runs (pid ${child.pid})`)
      await launch()
    },
    async stop(timeoutMs = 20_000) {
      if (!child || exited(child)) return
      stopping = true
      child.kill('SIGTERM')
      if (!(await waitExit(child, timeoutMs))) {
        child.kill('SIGKILL')
        await waitExit(child, 10_000)
      }
    },
    crashed() {
      if (!child || !exited(child) || stopping) return undefined
      const fatal = fatalLine(logFile)
      return `${options.name} (pid ${child.pid}) exited by itself with ${child.exitCode ?? child.signalCode}${fatal ? `: ${fatal}` : ''}`
    },
  }
}

/** The last fatal entry of a pino log: its message and error (code, message). */
function fatalLine(path: string): string | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
  const lines = text.trimEnd().split('\n')
  for (let i = lines.length - 1; i >= 0 && i >= lines.length - 50; i--) {
    try {
      const entry = JSON.parse(lines[i] ?? '') as {
        level?: unknown
        msg?: string
        err?: { message?: string; code?: string }
      }
      if (entry.level === 'fatal' || entry.level === 60) {
        return `${entry.msg}: ${entry.err?.code ? `${entry.err.code} ` : ''}${entry.err?.message ?? ''}`
      }
    } catch {}
  }
  return undefined
}

/** Waits until the process answers 200 on /health/ready; throws with its log's tail if it exits or never does. */
export async function ready(
  child: ChildProcess,
  url: string,
  timeoutMs: number,
  logFile: string,
  name: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) while starting:\n${tail(logFile)}`)
    }
    try {
      const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(5_000) })
      if (response.status === 200) return
      last = `${response.status} ${(await response.text()).slice(0, 300)}`
    } catch (error) {
      last = (error as Error).message
    }
    await sleep(250)
  }
  throw new Error(`${name} was not ready within ${timeoutMs / 1000} s (last answer: ${last}):\n${tail(logFile)}`)
}

export function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}
