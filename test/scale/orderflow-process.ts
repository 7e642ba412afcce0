/**
 * One orderflow server process (`node src/main.ts`) that a test stops, kills and starts again on
 * the same port, as an operator would. Each start is a new incarnation with a KAFKA_CLIENT_ID of
 * its own (`edge-a-2`), so the broker's view of a group says which start holds what. Every
 * incarnation appends to one log file, kept as evidence.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, openSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ready, tail } from '../../scripts/faults/app.ts'

const repoRoot = resolve(import.meta.dirname, '..', '..')

export interface ProcessExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** From the signal to the exit. */
  tookMs: number
}

export interface OrderflowProcess {
  readonly name: string
  readonly url: string
  readonly logFile: string
  /** `<name>-<incarnation>`: the KAFKA_CLIENT_ID of the running (or last) start. */
  clientId(): string
  running(): boolean
  /** Starts a new incarnation and waits until `/health/ready` answers 200; resolves to how long that took. */
  start(): Promise<number>
  /** SIGTERM and wait for the exit; SIGKILL after `SHUTDOWN_TIMEOUT_MS` + 5 s (then `signal` says so). */
  stop(): Promise<ProcessExit>
  /** SIGKILL and wait for the exit. */
  kill(): Promise<ProcessExit>
  logTail(lines?: number): string
}

export interface OrderflowProcessOptions {
  name: string
  port: number
  env: Record<string, string>
  logDir: string
  shutdownTimeoutMs: number
  readyTimeoutMs?: number
}

export function orderflowProcess(options: OrderflowProcessOptions): OrderflowProcess {
  const url = `http://127.0.0.1:${options.port}`
  const logFile = join(options.logDir, `${options.name}.log`)
  let child: ChildProcess | undefined
  let incarnation = 0
  const clientId = () => `${options.name}-${incarnation}`
  const alive = (c: ChildProcess | undefined): c is ChildProcess =>
    c !== undefined && c.exitCode === null && c.signalCode === null

  const exitOf = async (c: ChildProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<ProcessExit> => {
    const sent = Date.now()
    const exited = alive(c) ? once(c, 'exit').then(() => true) : Promise.resolve(true)
    c.kill(signal)
    const inTime = await Promise.race([exited, sleep(timeoutMs, false)])
    if (!inTime) {
      c.kill('SIGKILL')
      await exited
    }
    return { code: c.exitCode, signal: c.signalCode, tookMs: Date.now() - sent }
  }

  return {
    name: options.name,
    url,
    logFile,
    clientId,
    running: () => alive(child),
    async start() {
      if (alive(child)) throw new Error(`${options.name} still runs (pid ${child.pid})`)
      incarnation++
      const out = openSync(logFile, 'a')
      const began = Date.now()
      let started: ChildProcess
      try {
        started = spawn(process.execPath, ['src/main.ts'], {
          cwd: repoRoot,
          env: {
            PATH: process.env.PATH ?? '',
            ...options.env,
            KAFKA_CLIENT_ID: clientId(),
            PORT: String(options.port),
            HOST: '127.0.0.1',
            SHUTDOWN_TIMEOUT_MS: String(options.shutdownTimeoutMs),
          },
          stdio: ['ignore', out, out],
        })
      } finally {
        closeSync(out)
      }
      child = started
      // Whatever happens to the test process, no server outlives it.
      const killOnExit = () => started.kill('SIGKILL')
      process.on('exit', killOnExit)
      started.once('exit', () => process.off('exit', killOnExit))
      await ready(started, url, options.readyTimeoutMs ?? 60_000, logFile, clientId())
      return Date.now() - began
    },
    async stop() {
      if (!alive(child)) throw new Error(`${options.name} is not running`)
      return exitOf(child, 'SIGTERM', options.shutdownTimeoutMs + 5_000)
    },
    async kill() {
      if (!alive(child)) throw new Error(`${options.name} is not running`)
      return exitOf(child, 'SIGKILL', 10_000)
    },
    logTail: (lines = 20) => tail(logFile, lines),
  }
}
