/**
 * `npm run faults`: the fault suite. On a Kafka broker and a PostgreSQL server it starts itself, it
 * puts a bounded load of orders on orderflow (at its default saga step timeouts, in both saga
 * modes) and, one after another on fresh topics and a fresh database, SIGKILLs the broker, freezes
 * it, stops PostgreSQL immediately, SIGKILLs the app, kills one of two apps, feeds poison to every
 * consumed topic, takes the database away while the consumers work, keeps the broker down longer
 * than a step's timeout, holds every PostgreSQL connection, fills the embedded default's disk,
 * steps the app's clock an hour both ways and storms orders with concurrent PATCH, cancel and
 * confirm. After each it checks that no accepted order was lost, every event is on Kafka
 * in per-key order, nothing was dead-lettered by the outage and the auditor is clean, and prints a
 * table (docs/reliability.md holds one). Exit code 1 when any fault fails.
 *
 *   npm run faults                       every fault at full scale (about 15 minutes on 2 cores)
 *   npm run faults -- --smoke            every fault, short (what test/faults/smoke.e2e.test.ts runs, and more)
 *   npm run faults -- --only poison-mix,app-sigkill
 *   npm run faults -- --modes choreography  saga modes to run each fault in (default: orchestration,choreography)
 *   npm run faults -- --log-dir DIR      keep the app processes' logs there (default: a temp dir)
 */
import { parseArgs } from 'node:util'
import { argumentProblem } from '../src/platform/cli.ts'
import { FAULTS, FULL, SMOKE } from './faults/scenarios.ts'
import { runFaultSuite, SAGA_MODES, type SagaMode } from './faults/suite.ts'
import { formatDetails, formatTable } from './faults/table.ts'

const usage = `usage: npm run faults -- [--smoke] [--only fault,fault] [--modes orchestration,choreography] [--log-dir DIR]
  --smoke        every fault, short
  --only         these faults only: ${FAULTS.map((f) => f.name).join(', ')}
  --modes        the saga modes to run each fault in (default: both)
  --log-dir DIR  keep the app processes' logs there (default: a temp dir)
It starts its own Kafka broker and PostgreSQL server (see the comment at the top of scripts/faults.ts).
`

async function main(): Promise<number> {
  const parse = () =>
    parseArgs({
      options: {
        smoke: { type: 'boolean', default: false },
        only: { type: 'string' },
        modes: { type: 'string', default: SAGA_MODES.join(',') },
        'log-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse()
  } catch (error) {
    const problem = argumentProblem(error)
    if (!problem) throw error
    process.stderr.write(`faults: ${problem}\n\n${usage}`)
    return 2
  }
  const { values } = parsed
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const names = values.only
    ?.split(',')
    .map((n) => n.trim())
    .filter(Boolean)
  const unknown = names?.filter((n) => !FAULTS.some((f) => f.name === n)) ?? []
  if (unknown.length > 0) {
    process.stderr.write(`unknown fault ${unknown.join(', ')}; choose from ${FAULTS.map((f) => f.name).join(', ')}\n`)
    return 2
  }
  const faults = names ? FAULTS.filter((f) => names.includes(f.name)) : FAULTS
  const modes = values.modes
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean)
  const badModes = modes.filter((m) => !(SAGA_MODES as readonly string[]).includes(m))
  if (modes.length === 0 || badModes.length > 0) {
    process.stderr.write(`unknown saga mode ${badModes.join(', ')}; choose from ${SAGA_MODES.join(', ')}\n`)
    return 2
  }
  const started = Date.now()
  const suite = await runFaultSuite({
    faults,
    modes: modes as SagaMode[],
    scale: values.smoke ? SMOKE : FULL,
    ...(values['log-dir'] ? { logDir: values['log-dir'] } : {}),
  })
  const minutes = ((Date.now() - started) / 60_000).toFixed(1)
  process.stdout.write(`\n${formatTable(suite.results)}\n\n${formatDetails(suite.results)}\n\n`)
  process.stdout.write(
    `${suite.ok ? 'all faults passed' : 'FAULTS FAILED'} in ${minutes} min; app logs in ${suite.logDir}\n`,
  )
  return suite.ok ? 0 : 1
}

try {
  process.exitCode = await main()
} catch (error) {
  process.stderr.write(
    `the fault suite could not run: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`,
  )
  process.exitCode = 1
}
