/**
 * The fault suite's harness: one broker and one PostgreSQL server of its own for the whole run,
 * and per fault a fresh database (CREATE DATABASE) and fresh topics (KAFKA_TOPIC_PREFIX), so one
 * fault's leftovers cannot hide another's. Each fault runs its timeline (scenarios.ts); then the
 * harness waits for the drain (bounded), verifies (verify.ts) and records a row of the table.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { JOURNEY_GROUPS } from '../../src/audit/lag.ts'
import { openPglite } from '../../src/platform/sql/pglite.ts'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { openPostgres } from '../../src/platform/sql/postgres.ts'
import { type AppProcess, startApp } from './app.ts'
import { type FaultBroker, startFaultBroker } from './broker.ts'
import { mountSmallDisk, type SmallDisk } from './disk.ts'
import { type LoadResult, startLoad } from './load.ts'
import { injectPoison, type PoisonMessage } from './poison.ts'
import { freePort } from './ports.ts'
import { type PostgresInstance, startPostgres } from './postgres.ts'
import type { Fault, FaultContext, Scale } from './scenarios.ts'
import { consumedTopics, deploymentLag, type Verification, verify, waitForDrain, waitForDrainHttp } from './verify.ts'

export const SAGA_MODES = ['orchestration', 'choreography'] as const
export type SagaMode = (typeof SAGA_MODES)[number]

export interface FaultResult {
  fault: string
  /** SAGA_MODE of the fault's apps. */
  mode: SagaMode
  /** Orders a 201 acknowledged. */
  accepted: number
  attempted: number
  refused: Record<string, number>
  verification: Verification | undefined
  /** From the fault mended (and the load stopped) to every order settled and the auditor clean; null: it did not drain. */
  drainMs: number | null
  poison: PoisonMessage[]
  notes: string[]
  /** Set when the fault could not be run or verified at all. */
  error?: string
  /** Why the fault cannot be run here (it was not run, and did not fail). */
  notRun?: string
  /** Why it failed: empty when it passed. */
  problems: string[]
  ok: boolean
}

export interface SuiteOptions {
  faults: readonly Fault[]
  /** Each fault runs once per mode. Default: both. */
  modes?: readonly SagaMode[]
  scale: Scale
  log?: (line: string) => void
  /** Where the app processes' logs go (kept after the run). Default: a temp dir. */
  logDir?: string
}

export interface SuiteResult {
  results: FaultResult[]
  logDir: string
  ok: boolean
}

/**
 * The app's configuration in every fault: the defaults an operator gets, saga step timeouts
 * included (an outage longer than a step's timeout is one of the faults), except for what the
 * suite needs to be able to measure at all.
 */
function appEnvironment(options: {
  brokers: string
  database: { kind: 'postgres'; url: string } | { kind: 'embedded'; dataDir: string }
  prefix: string
  name: string
  mode: SagaMode
}) {
  return {
    KAFKA_BROKERS: options.brokers,
    ...(options.database.kind === 'postgres'
      ? { DATABASE_URL: options.database.url }
      : { DATA_DIR: options.database.dataDir }),
    KAFKA_TOPIC_PREFIX: options.prefix,
    // A fault's topics are new (its prefix): the processes create them.
    KAFKA_CREATE_TOPICS: 'on',
    PAYMENT_INSTANCE_ID: options.name,
    SAGA_MODE: options.mode,
    LOG_LEVEL: 'info',
    // The suite measures reliability, not access control: its load client carries no tokens, and
    // 10 orders/s from one address must not meet a rate limit.
    AUTH: 'off',
    RATE_LIMIT: 'off',
    // A shorter backoff than the default 1 s, with the default 3 retries: an outage that a
    // consumer took for a failure of the message reaches the dead-letter topic within a second
    // instead of a few, so even the short faults would show it. It only makes the suite stricter.
    KAFKA_RETRY_MAX: '3',
    KAFKA_RETRY_BACKOFF_MS: '100',
  }
}

export interface Infrastructure {
  broker: FaultBroker
  postgres: PostgresInstance
  /** Distinguishes this run's databases and topics from earlier runs'. */
  runId: string
  logDir: string
  log: (line: string) => void
  destroy(): Promise<void>
}

/** The broker and PostgreSQL server the faults break, both of the suite's own. */
export async function openInfrastructure(
  options: { log?: (line: string) => void; logDir?: string } = {},
): Promise<Infrastructure> {
  const log = options.log ?? ((line: string) => process.stderr.write(`faults: ${line}\n`))
  const logDir = options.logDir ?? mkdtempSync(join(tmpdir(), 'orderflow-faults-logs-'))
  mkdirSync(logDir, { recursive: true })
  const [postgres, broker] = await Promise.allSettled([startPostgres({ log }), startFaultBroker()])
  if (postgres.status === 'rejected' || broker.status === 'rejected') {
    if (postgres.status === 'fulfilled') await postgres.value.destroy()
    if (broker.status === 'fulfilled') await broker.value.destroy()
    throw postgres.status === 'rejected' ? postgres.reason : (broker as PromiseRejectedResult).reason
  }
  log(`Kafka broker on ${broker.value.brokers}; app logs in ${logDir}`)
  return {
    broker: broker.value,
    postgres: postgres.value,
    runId: Date.now().toString(36),
    logDir,
    log,
    async destroy() {
      await broker.value.destroy().catch((error) => log(`could not stop the broker: ${error}`))
      await postgres.value.destroy().catch((error) => log(`could not stop PostgreSQL: ${error}`))
    },
  }
}

export async function runFaultSuite(options: SuiteOptions): Promise<SuiteResult> {
  const infra = await openInfrastructure({
    ...(options.log ? { log: options.log } : {}),
    ...(options.logDir ? { logDir: options.logDir } : {}),
  })
  const results: FaultResult[] = []
  let index = 0
  try {
    for (const fault of options.faults) {
      for (const mode of options.modes ?? SAGA_MODES) {
        results.push(await runFault(infra, fault, { index: index++, mode, scale: options.scale }))
      }
    }
  } finally {
    await infra.destroy()
  }
  return { results, logDir: infra.logDir, ok: results.length === index && results.every((r) => r.ok) }
}

/**
 * Runs one fault on a database and topics of its own, waits for the drain and verifies. `postgres`
 * overrides the infrastructure's server (a fault that must not feel another's database outage).
 */
export async function runFault(
  infra: Infrastructure,
  fault: Fault,
  options: { index: number; mode?: SagaMode; scale: Scale; postgres?: PostgresInstance },
): Promise<FaultResult> {
  const mode = options.mode ?? 'orchestration'
  infra.log(`── ${fault.name} (${mode}): ${fault.description}`)
  // A fault before this one may have left the broker down (its restart failed on a loaded machine).
  await infra.broker.ensureRunning()
  const result = await runOne({
    fault,
    mode,
    index: options.index,
    runId: infra.runId,
    scale: options.scale,
    broker: infra.broker,
    postgres: options.postgres ?? infra.postgres,
    logDir: infra.logDir,
    log: (line) => infra.log(`${fault.name} (${mode}): ${line}`),
  })
  const outcome = result.notRun
    ? `not run: ${result.notRun}`
    : result.ok
      ? 'ok'
      : `FAILED: ${result.problems.join(' | ')}`
  infra.log(`${fault.name} (${mode}): ${outcome}`)
  return result
}

/** The embedded default's disk: big enough for PGlite's data dir and its WAL under the load. */
const SMALL_DISK_MB = 512
const clockPreload = join(import.meta.dirname, 'clock-preload.ts')

async function runOne(options: {
  fault: Fault
  mode: SagaMode
  index: number
  runId: string
  scale: Scale
  broker: FaultBroker
  postgres: PostgresInstance
  logDir: string
  log: (line: string) => void
}): Promise<FaultResult> {
  const { fault, mode, broker, postgres, log } = options
  const scale = fault.drainTimeoutMs ? { ...options.scale, drainTimeoutMs: fault.drainTimeoutMs } : options.scale
  const label = `${options.index + 1}-${fault.name}-${mode}`
  const prefix = `faults-${options.runId}-${label}.`
  const database = `faults_${options.runId}_${options.index + 1}`
  const brokers = [broker.brokers]
  const logDir = join(options.logDir, label)
  mkdirSync(logDir, { recursive: true })
  const result: FaultResult = {
    fault: fault.name,
    mode,
    accepted: 0,
    attempted: 0,
    refused: {},
    verification: undefined,
    drainMs: null,
    poison: [],
    notes: [],
    problems: [],
    ok: false,
  }
  const notes = result.notes

  // Where the app keeps its data: a database on the suite's PostgreSQL, or PGlite on a small disk.
  const embedded = fault.database === 'embedded'
  let disk: SmallDisk | undefined
  if (embedded) {
    try {
      disk = mountSmallDisk(SMALL_DISK_MB)
    } catch (error) {
      result.notRun = (error as Error).message
      result.ok = true
      return result
    }
  } else {
    await postgres.createDatabase(database)
  }
  const dataDir = disk ? join(disk.path, 'data') : undefined
  const databaseUrl = postgres.url(database)
  const clockFile = fault.shiftableClock ? join(logDir, 'clock-offset-ms') : undefined
  if (clockFile) writeFileSync(clockFile, '0')

  const apps: AppProcess[] = []
  const loads: ReturnType<typeof startLoad>[] = []
  const loadResults: LoadResult[] = []
  let poison: PoisonMessage[] = []
  let faultAt: number | undefined
  let healedAt: number | undefined
  const since = () => (faultAt === undefined ? '' : ` at +${((Date.now() - faultAt) / 1000).toFixed(1)} s`)
  const readiness = watchReadiness(
    () => apps,
    () => faultAt,
  )

  const ctx: FaultContext = {
    scale,
    broker,
    postgres,
    database,
    disk() {
      if (!disk) throw new Error(`${fault.name} has no small disk: declare database: 'embedded'`)
      return disk
    },
    setClock(offsetMs) {
      if (!clockFile) throw new Error(`${fault.name} cannot step the clock: declare shiftableClock`)
      writeFileSync(clockFile, String(offsetMs))
    },
    async startApp(name) {
      const app = await startApp({
        name,
        port: await freePort(),
        env: {
          ...appEnvironment({
            brokers: broker.brokers,
            database: dataDir ? { kind: 'embedded', dataDir } : { kind: 'postgres', url: databaseUrl },
            prefix,
            name,
            mode,
          }),
          ...(clockFile ? { FAULTS_CLOCK_OFFSET_FILE: clockFile } : {}),
        },
        ...(clockFile ? { nodeOptions: `--import=${clockPreload}` } : {}),
        // PGlite's first start (initdb in WebAssembly, then the migrations) takes a minute or more
        // on a loaded 2-core machine.
        ...(dataDir ? { readyTimeoutMs: 240_000 } : {}),
        logDir,
      })
      apps.push(app)
      log(`${name} ready on ${app.url}`)
      return app
    },
    startLoad(rate) {
      const load = startLoad({
        targets: () => apps.filter((a) => a.alive()).map((a) => a.url),
        ratePerSecond: rate ?? scale.rate,
        tag: label,
      })
      loads.push(load)
      const stop = load.stop
      return {
        accepted: load.accepted,
        acceptedIds: load.acceptedIds,
        async stop() {
          const result = await stop()
          loadResults.push(result)
          return result
        },
      }
    },
    hold: (ms) => sleep(ms),
    faultStarts(what) {
      faultAt = Date.now()
      log(what)
    },
    healed() {
      healedAt = Date.now()
      log(`mended${since()}`)
    },
    note(line) {
      notes.push(line)
      log(line)
    },
    problem(line) {
      result.problems.push(line)
      log(line)
    },
    log: (line) => log(`${line}${since()}`),
    async injectPoison() {
      const byTopic = new Map<string, string[]>()
      for (const [group, topics] of await consumedTopics(brokers, prefix)) {
        for (const topic of topics) byTopic.set(topic, [...(byTopic.get(topic) ?? []), group])
      }
      poison = await injectPoison(brokers, byTopic)
      return poison
    },
    async consumerLag() {
      const lag = await deploymentLag(brokers, prefix)(JOURNEY_GROUPS)
      return lag.reduce((sum, l) => sum + l.lag, 0)
    },
  }

  const accepted = () => loadResults.flatMap((r) => r.accepted)
  try {
    await fault.run(ctx)
    // A fault that forgot to stop its load must not leave it running into the verification.
    for (const load of loads) await load.stop()
    // An app that died by itself is a failure of its own; it is started again (as a supervisor
    // would) so that what it left in the outbox and the topics can still be checked for loss.
    for (const app of apps) {
      const crash = app.crashed()
      if (!crash) continue
      result.problems.push(`app crashed: ${crash}`)
      await app.restart()
      log(`${app.name} crashed and was started again: ${crash}`)
    }
    const loadEnded = Date.now()
    const startFrom = Math.max(healedAt ?? loadEnded, loadEnded)
    result.accepted = new Set(accepted()).size
    result.attempted = loadResults.reduce((sum, r) => sum + r.attempted, 0)
    for (const r of loadResults) {
      for (const [reason, n] of Object.entries(r.refused)) result.refused[reason] = (result.refused[reason] ?? 0) + n
    }
    const refused = Object.entries(result.refused)
    if (refused.length > 0) notes.push(`refused requests: ${refused.map(([k, n]) => `${n}× ${k}`).join(', ')}`)

    // PGlite is single-process: while the app holds DATA_DIR the drain is asked of the app itself
    // (GET /api/audit), and the database is opened only once the app has stopped.
    let drained = dataDir
      ? await waitForDrainHttp(
          { urls: () => apps.filter((a) => a.alive()).map((a) => a.url), timeoutMs: scale.drainTimeoutMs },
          log,
        )
      : undefined
    let drainedAt = Date.now()
    let db: SqlDatabase
    if (dataDir) {
      readiness.stop()
      await Promise.all(apps.map((app) => app.stop()))
      db = await openPglite(dataDir)
    } else {
      db = openPostgres({ connectionString: databaseUrl, max: 2 })
    }
    try {
      if (!drained) {
        drained = await waitForDrain({ db, brokers, prefix, timeoutMs: scale.drainTimeoutMs }, log)
        drainedAt = Date.now()
      }
      if (drained.drainMs !== null) result.drainMs = drainedAt - startFrom
      else result.problems.push(`did not drain within ${scale.drainTimeoutMs / 1000} s: ${drained.last}`)
      readiness.stop()
      notes.push(...readiness.summary(), ...firstWarnings(apps, faultAt))
      result.verification = await verify({ db, brokers, prefix, accepted: accepted(), poison })
    } finally {
      await db.close()
    }
    result.poison = poison
    const v = result.verification
    result.problems.push(...v.problems)
    if (result.accepted === 0) result.problems.push('no request was accepted: the fault proved nothing')
    const cancelled = v.statuses.CANCELLED ?? 0
    if (cancelled > 0 && !fault.cancelsOrders) {
      result.problems.push(
        `${cancelled} orders CANCELLED though every order of the load is payable and nobody cancelled one (a step timed out?)`,
      )
    }
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error)
    result.problems.push(`could not run: ${result.error}`)
  } finally {
    readiness.stop()
    for (const load of loads) await load.stop().catch(() => {})
    await Promise.all(apps.map((app) => app.stop().catch(() => {})))
    disk?.unmount()
  }
  result.ok = result.problems.length === 0
  return result
}

/** Polls /health/ready of every app (twice a second, 5 s deadline) and keeps the changes, timed from the fault. */
function watchReadiness(apps: () => AppProcess[], faultAt: () => number | undefined) {
  const changes: string[] = []
  const last = new Map<string, string>()
  let stopped = false
  const poll = async () => {
    while (!stopped) {
      await Promise.all(
        apps().map(async (app) => {
          let status: string
          try {
            const response = await fetch(`${app.url}/health/ready`, { signal: AbortSignal.timeout(5_000) })
            await response.body?.cancel()
            status = String(response.status)
          } catch (error) {
            status = (error as Error).name === 'TimeoutError' ? 'no answer' : 'down'
          }
          if (last.get(app.name) !== status) {
            const previous = last.get(app.name)
            last.set(app.name, status)
            const at = faultAt()
            if (previous !== undefined && at !== undefined) {
              changes.push(`${app.name} /health/ready ${status} at +${((Date.now() - at) / 1000).toFixed(1)} s`)
            }
          }
        }),
      )
      await sleep(500)
    }
  }
  void poll()
  return {
    stop() {
      stopped = true
    },
    summary: () => (changes.length > 0 ? [changes.slice(0, 6).join(', ')] : []),
  }
}

/** The first warning or error each app logged after the fault started, and how long after. */
function firstWarnings(apps: AppProcess[], faultAt: number | undefined): string[] {
  if (faultAt === undefined) return []
  const notes: string[] = []
  for (const app of apps) {
    let text: string
    try {
      text = readFileSync(app.logFile, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n')) {
      const entry = parseLine(line)
      const time = typeof entry?.time === 'string' ? Date.parse(entry.time) : Number(entry?.time)
      if (!entry || !(time >= faultAt)) continue
      // The start-up warning of AUTH=off (which the suite sets) says nothing about the fault.
      if (String(entry.msg).startsWith('AUTH=off')) continue
      if (['warn', 'error', 'fatal'].includes(String(entry.level)) || Number(entry.level) >= 40) {
        const msg = String(entry.msg).slice(0, 120)
        notes.push(`${app.name} first ${entry.level} at +${((time - faultAt) / 1000).toFixed(1)} s: ${msg}`)
        break
      }
    }
  }
  return notes
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}
