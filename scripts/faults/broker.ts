/**
 * The fault suite's own Kafka broker (scripts/kafka.ts), on fixed ports and a data dir of its own
 * so that it can be SIGKILLed and started again as the same broker: same address for the clients,
 * same log, same committed offsets.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isProcessAlive } from '../../src/platform/process-alive.ts'
import { type Broker, startBroker } from '../kafka.ts'
import { freePort } from './ports.ts'

export interface FaultBroker {
  /** `host:port`, the same across restarts. */
  readonly brokers: string
  pid(): number
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>
  /** Starts the broker again on the same ports and data dir. */
  restart(): Promise<void>
  /** Starts it again if a fault left it stopped (a restart that failed): the next fault needs it. */
  ensureRunning(): Promise<void>
  /** SIGSTOP: the process stays, its sockets stay open, nothing answers. */
  pause(): void
  /** SIGCONT */
  resume(): void
  destroy(): Promise<void>
}

export async function startFaultBroker(): Promise<FaultBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'orderflow-faults-kafka-'))
  const port = await freePort()
  const controllerPort = await freePort()
  // The JVM's start-up on a loaded 2-core machine can take more than scripts/kafka.ts's default minute.
  const start = () => startBroker({ dir, port, controllerPort, readyTimeoutMs: 180_000 })
  let broker: Broker | undefined = await start()
  let paused = false
  const current = () => {
    if (!broker) throw new Error('the broker is not running')
    return broker
  }
  return {
    brokers: current().brokers,
    pid: () => current().pid,
    async kill() {
      const { pid } = current()
      process.kill(pid, 'SIGKILL')
      paused = false
      const deadline = Date.now() + 30_000
      while (isProcessAlive(pid)) {
        if (Date.now() > deadline) throw new Error(`the broker (pid ${pid}) is still alive 30 s after SIGKILL`)
        await sleep(50)
      }
      // Its stop() now finds the process gone and only forgets the pid file.
      await broker?.stop()
      broker = undefined
    },
    async restart() {
      if (broker) throw new Error(`the broker (pid ${broker.pid}) still runs`)
      broker = await start()
    },
    async ensureRunning() {
      if (paused && broker) {
        process.kill(broker.pid, 'SIGCONT')
        paused = false
      }
      if (!broker) broker = await start()
    },
    pause() {
      process.kill(current().pid, 'SIGSTOP')
      paused = true
    },
    resume() {
      process.kill(current().pid, 'SIGCONT')
      paused = false
    },
    async destroy() {
      if (broker && paused) process.kill(broker.pid, 'SIGCONT')
      await broker?.stop()
      broker = undefined
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
