/**
 * The whole test suite, as CI runs it: lint, typecheck and the schema compatibility gate, then
 * every test file against a real PostgreSQL and a real Kafka broker started for this run.
 *
 *   npm test                          everything
 *   npm test -- src/platform          only test files whose path contains `src/platform`
 *   npm test -- --test-name-pattern=x flags starting with `-` go to `node --test`
 *
 * KAFKA_BROKERS set: use that Kafka instead of starting one. DATABASE_URL: the PostgreSQL to use.
 * TEST_CONCURRENCY: test files run at a time (default 2).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { globSync } from 'node:fs'
import { constants } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { findChromium } from './chromium.ts'
import { type Broker, startBroker } from './kafka.ts'

const repoRoot = resolve(import.meta.dirname, '..')
const testFilePatterns = ['src/**/*.test.ts', 'test/**/*.test.ts']
// Keep in step with test/support, which connects to the same default.
const databaseUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test'

/**
 * The files that take minutes, started first: two run at a time, and one of them started last
 * would run on alone at the end. The rest keep their name order.
 */
const SLOW_FIRST = [
  'test/faults/smoke',
  'test/docs/docs.e2e',
  'test/scale/',
  'src/order/replay.int',
  'src/main.startup',
]
const slowRank = (file: string) => {
  const rank = SLOW_FIRST.findIndex((prefix) => file.startsWith(prefix))
  return rank < 0 ? SLOW_FIRST.length : rank
}

let broker: Broker | undefined
let running: ChildProcess | undefined
let interruptedBy: NodeJS.Signals | undefined

const announce = (text: string) => process.stdout.write(`\n» ${text}\n`)

async function main(args: string[]): Promise<number> {
  const nodeTestFlags = args.filter((arg) => arg.startsWith('-'))
  const filters = args.filter((arg) => !arg.startsWith('-')).map((arg) => arg.replace(/^\.\//, ''))

  announce('lint and format: biome check .')
  if ((await run(bin('biome'), ['check', '.'])) !== 0) {
    return failed('biome check failed (`npm run format` fixes formatting and import order)')
  }
  announce('typecheck: tsc --noEmit')
  if ((await run(bin('tsc'), ['--noEmit'])) !== 0) return failed('the typecheck failed')
  announce('schema compatibility: npm run schemas -- check')
  if ((await run(process.execPath, [join(repoRoot, 'scripts', 'schemas.ts'), 'check'])) !== 0) {
    return failed('a message schema change would break its readers (see "Schema evolution" in src/contracts/README.md)')
  }

  const files = globSync(testFilePatterns, { cwd: repoRoot, exclude: (path) => path.includes('node_modules') })
    .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
    .sort()
    .sort((a, b) => slowRank(a) - slowRank(b))
  if (files.length === 0) {
    if (filters.length > 0) return failed(`no test file matches ${filters.join(', ')}`)
    announce(`no test files yet (${testFilePatterns.join(', ')}): nothing to run`)
    return 0
  }

  // The browser tests drive the system's Chromium: without one they skip themselves, except in CI.
  const browserTests = files.some((file) => file.includes('.browser.'))
  const chromium = browserTests ? findChromium() : undefined
  if (browserTests) {
    if (chromium) announce(`Chromium at ${chromium}: the browser tests run`)
    else if (process.env.CI === 'true') {
      return failed('no Chromium for the browser tests (CI=true): apt-get install chromium, or set CHROMIUM_PATH')
    } else announce('no Chromium found: the browser tests are skipped (apt-get install chromium, or set CHROMIUM_PATH)')
  }

  // Before the broker: it is the cheaper thing to find missing.
  announce(`PostgreSQL at ${redacted(databaseUrl)}`)
  await checkPostgres(databaseUrl)

  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent' }
  if (chromium) env.CHROMIUM_PATH = chromium
  if (process.env.KAFKA_BROKERS) {
    announce(`Kafka at ${process.env.KAFKA_BROKERS} (from KAFKA_BROKERS)`)
  } else {
    announce('Kafka: starting a broker for this run')
    broker = await startBroker()
    env.KAFKA_BROKERS = broker.brokers
  }

  announce(`${files.length} test file${files.length === 1 ? '' : 's'}: node --test`)
  // No --test-force-exit: with it, node --test now and then ends a file's process before the rest
  // of its tests ran, and reports the file as passed with those tests missing (seen on Node 24.21:
  // 1 run in 5 of the unit tests lost 12). A file whose process does not exit after its tests (a
  // consumer, a timer or a connection left open) is bounded by the run's own limit instead.
  // Two files at a time by default. Three took 817-843 s instead of 971 s on this machine kind,
  // but a timing-sensitive test failed once at three; TEST_CONCURRENCY=3 is there to try it.
  const concurrency = Number(process.env.TEST_CONCURRENCY ?? 2)
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    return failed(
      `TEST_CONCURRENCY must be a whole number of test files at a time, 1 or more (got ${process.env.TEST_CONCURRENCY})`,
    )
  }
  const testFlags = ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=120000', '--test-reporter=spec']
  const limitMs = Number(process.env.TEST_RUN_TIMEOUT_MS ?? 45 * 60_000)
  // process.execPath: the Node 24 that runs this script, whatever `node` is first on the PATH.
  return run(process.execPath, [...testFlags, ...nodeTestFlags, ...files], env, {
    limitMs,
    onLimit: () =>
      failed(
        `the tests ran past ${Math.round(limitMs / 1000)} s (TEST_RUN_TIMEOUT_MS) and were stopped: a test ` +
          "file's process most likely did not exit after its tests (a consumer, a timer or a connection left " +
          'open); the file whose results are missing above is the one',
      ),
  })
}

function bin(name: string): string {
  return join(repoRoot, 'node_modules', '.bin', name)
}

function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  limit?: { limitMs: number; onLimit: () => number },
): Promise<number> {
  return new Promise((done, fail) => {
    // No stdin: CI has none, and nothing here should wait for a keypress.
    const child = spawn(command, args, { cwd: repoRoot, env, stdio: ['ignore', 'inherit', 'inherit'] })
    running = child
    let overrun = false
    const timer = limit
      ? setTimeout(() => {
          overrun = true
          child.kill('SIGTERM')
          setTimeout(() => child.kill('SIGKILL'), 10_000).unref()
        }, limit.limitMs)
      : undefined
    child.once('error', fail)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      running = undefined
      if (overrun && limit && !interruptedBy) return done(limit.onLimit())
      // An interrupted step must not read as a failed one, nor let the next step start.
      if (interruptedBy) fail(new Interrupted())
      else done(code ?? 128 + (signal ? constants.signals[signal] : 0))
    })
  })
}

async function checkPostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('select 1')
  } catch (error) {
    const reason = error instanceof Error ? error.message || error.name : String(error)
    throw new Error(
      `PostgreSQL is not reachable at ${redacted(url)}: ${reason}\n` +
        'The integration tests need one (each test file creates and drops its own schema there): ' +
        'start PostgreSQL and create the database, or point DATABASE_URL at one.',
    )
  } finally {
    await client.end().catch(() => {})
  }
}

function redacted(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return url
  }
}

function failed(message: string): number {
  process.stderr.write(`\n✖ ${message}\n`)
  return 1
}

class Interrupted extends Error {}

/** Quietly, so the output still ends with the test runner's summary. */
async function stopBroker(): Promise<void> {
  const stopping = broker
  broker = undefined
  await stopping?.stop().catch((error: unknown) => {
    process.stderr.write(`could not stop the Kafka broker (pid ${stopping.pid}): ${error}\n`)
  })
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    const exitCode = 128 + constants.signals[signal]
    if (interruptedBy) {
      // A second Ctrl-C: stop waiting; kafka.ts still kills a broker it started when this process exits.
      process.exit(exitCode)
    }
    interruptedBy = signal
    process.stderr.write(`\n${signal}: stopping\n`)
    // The running step exits, main() returns and the broker is stopped below as on any other exit.
    if (running) running.kill(signal)
    else void stopBroker().finally(() => process.exit(exitCode))
  })
}

let exitCode: number
try {
  exitCode = await main(process.argv.slice(2))
} catch (error) {
  if (error instanceof Interrupted && interruptedBy) exitCode = 128 + constants.signals[interruptedBy]
  else exitCode = failed(error instanceof Error ? error.message : String(error))
} finally {
  await stopBroker()
}
process.exitCode = exitCode
