/**
 * The fault suite's harness: one broker and one PostgreSQL server of its own for the whole run,
 * and per fault a fresh database (CREATE DATABASE) and fresh topics (KAFKA_TOPIC_PREFIX), so one
 * fault's leftovers cannot hide another's. Each fault runs its timeline (scenarios.ts); then the
 * harness waits for the drain (bounded), verifies (verify.ts) and records a row of the table.
 */
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { JOURNEY_GROUPS, kafkaLag } from '../../src/audit/lag.ts'
import { openPostgres } from '../../src/platform/sql/postgres.ts'
import { type AppProcess, startApp } from './app.ts'
import { type FaultBroker, startFaultBroker } from './broker.ts'
import { type LoadResult, startLoad } from './load.ts'
import { injectPoison, type PoisonMessage } from './poison.ts'
import { freePort } from './ports.ts'
import { type PostgresInstance, startPostgres } from './postgres.ts'
import type { Fault, FaultContext, Scale } from './scenarios.ts'
import { consumedTopics, type Verification, verify, waitForDrain } from './verify.ts'

export interface FaultResult {
  fault: string
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
  /** Why it failed: empty when it passed. */
  problems: string[]
  ok: boolean
}

export interface SuiteOptions {
  faults: readonly Fault[]
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

/** The app's configuration in every fault. */
function appEnvironment(options: { brokers: string; databaseUrl: string; prefix: string; name: string }) {
  return {
    KAFKA_BROKERS: options.brokers,
    DATABASE_URL: options.databaseUrl,
    KAFKA_TOPIC_PREFIX: options.prefix,
    PAYMENT_INSTANCE_ID: options.name,
    LOG_LEVEL: 'info',
    // The suite measures reliability, not access control: its load client carries no tokens, and
    // 10 orders/s from one address must not meet a rate limit.
    AUTH: 'off',
    RATE_LIMIT: 'off',
    // Short backoff and the default 3 retries: an outage that a consumer took for a failure of the
    // message would reach the dead-letter topic within a second, so the suite would see it.
    KAFKA_RETRY_MAX: '3',
    KAFKA_RETRY_BACKOFF_MS: '100',
    DELIVERY_DELAY_MS: '200',
    SCHEDULER_POLL_INTERVAL_MS: '200',
    // The saga's step timeouts are longer than any fault: an order cancelled because a step timed
    // out is correct behaviour, but it would hide whether the infrastructure carried the order through.
    SAGA_PAYMENT_TIMEOUT_MS: '600000',
    SAGA_CONFIRM_TIMEOUT_MS: '600000',
    SAGA_DISPATCH_TIMEOUT_MS: '600000',
    SAGA_DELIVERY_TIMEOUT_MS: '600000',
    SAGA_COMPENSATION_TIMEOUT_MS: '600000',
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
  try {
    for (const [index, fault] of options.faults.entries()) {
      results.push(await runFault(infra, fault, { index, scale: options.scale }))
    }
  } finally {
    await infra.destroy()
  }
  return { results, logDir: infra.logDir, ok: results.length === options.faults.length && results.every((r) => r.ok) }
}

/**
 * Runs one fault on a database and topics of its own, waits for the drain and verifies. `postgres`
 * overrides the infrastructure's server (a fault that must not feel another's database outage).
 */
export async function runFault(
  infra: Infrastructure,
  fault: Fault,
  options: { index: number; scale: Scale; postgres?: PostgresInstance },
): Promise<FaultResult> {
  infra.log(`── ${fault.name}: ${fault.description}`)
  const result = await runOne({
    fault,
    index: options.index,
    runId: infra.runId,
    scale: options.scale,
    broker: infra.broker,
    postgres: options.postgres ?? infra.postgres,
    logDir: infra.logDir,
    log: (line) => infra.log(`${fault.name}: ${line}`),
  })
  infra.log(`${fault.name}: ${result.ok ? 'ok' : `FAILED: ${result.problems.join(' | ')}`}`)
  return result
}

async function runOne(options: {
  fault: Fault
  index: number
  runId: string
  scale: Scale
  broker: FaultBroker
  postgres: PostgresInstance
  logDir: string
  log: (line: string) => void
}): Promise<FaultResult> {
  const { fault, scale, broker, postgres, log } = options
  const label = `${options.index + 1}-${fault.name}`
  const prefix = `faults-${options.runId}-${label}.`
  const database = `faults_${options.runId}_${options.index + 1}`
  const databaseUrl = postgres.url(database)
  const brokers = [broker.brokers]
  const logDir = join(options.logDir, label)
  mkdirSync(logDir, { recursive: true })
  await postgres.createDatabase(database)

  const apps: AppProcess[] = []
  const notes: string[] = []
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
    async startApp(name) {
      const app = await startApp({
        name,
        port: await freePort(),
        env: appEnvironment({ brokers: broker.brokers, databaseUrl, prefix, name }),
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
      const lag = await kafkaLag({ brokers, clientId: 'orderflow-faults', prefix })(JOURNEY_GROUPS)
      return lag.reduce((sum, l) => sum + l.lag, 0)
    },
  }

  const accepted = () => loadResults.flatMap((r) => r.accepted)
  const result: FaultResult = {
    fault: fault.name,
    accepted: 0,
    attempted: 0,
    refused: {},
    verification: undefined,
    drainMs: null,
    poison: [],
    notes,
    problems: [],
    ok: false,
  }
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

    const db = openPostgres({ connectionString: databaseUrl, max: 2 })
    try {
      const drain = await waitForDrain({ db, brokers, prefix, timeoutMs: scale.drainTimeoutMs }, log)
      if (drain.drainMs !== null) result.drainMs = Date.now() - startFrom
      else result.problems.push(`did not drain within ${scale.drainTimeoutMs / 1000} s: ${drain.last}`)
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
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error)
    result.problems.push(`could not run: ${result.error}`)
  } finally {
    readiness.stop()
    for (const load of loads) await load.stop().catch(() => {})
    await Promise.all(apps.map((app) => app.stop().catch(() => {})))
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
