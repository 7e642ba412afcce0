import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { faultNamed, SMOKE } from '../../scripts/faults/scenarios.ts'
import {
  type FaultResult,
  type Infrastructure,
  openInfrastructure,
  runFault,
  type SagaMode,
} from '../../scripts/faults/suite.ts'
import { formatDetails, formatTable } from '../../scripts/faults/table.ts'

/**
 * The fault suite's smoke run (`npm run faults` is the full one, every fault in both saga modes),
 * on Kafka brokers and PostgreSQL servers of its own, at the app's default saga step timeouts. A
 * representative subset, each fault in one saga mode (the two modes alternate):
 *
 * - on one infrastructure: an app SIGKILL, then a broker outage longer than a step's timeout;
 * - on a second: a broker SIGKILL, the poison mix on every consumed topic, a database outage while
 *   the consumers work;
 * - on a third: every PostgreSQL connection held, a deadlock storm of concurrent PATCH, cancel and
 *   confirm, the app's clock stepped an hour both ways, the embedded default's disk full (not run,
 *   and said why, where the suite may not mount a tmpfs).
 *
 * Each under a small load; after each: no accepted order lost, every event on Kafka in per-key
 * order, no dead letter but the poison, auditor clean (money included), every order of the load
 * DELIVERED unless the fault cancels orders itself.
 *
 * The three run beside each other so that the whole fits the time a CI test may take: after the
 * app SIGKILL the outbox relay waits about a minute for the dead process's lease to run out, and
 * the long broker outage is 35 s plus the broker's restart.
 */

const log = (line: string) => {
  if (process.env.FAULTS_VERBOSE) process.stderr.write(`faults: ${line}\n`)
}

/** The app logs are kept when a fault fails (their path is in the failure), removed otherwise. */
let keepLogs = false

function assertClean(result: FaultResult, logDir: string): void {
  keepLogs ||= !result.ok
  const report = `\n${formatTable([result])}\n${formatDetails([result])}\napp logs: ${logDir}`
  const v = result.verification
  assert.ok(v, `${result.fault} was not verified:${report}`)
  assert.ok(result.accepted > 0, `no order was accepted:${report}`)
  assert.equal(v.found, result.accepted, `accepted orders lost:${report}`)
  assert.equal(v.outOfOrder, 0, `messages out of order:${report}`)
  assert.equal(v.outageDeadLetters, 0, `work dead-lettered by the fault:${report}`)
  assert.equal(v.unpublished + v.notOnBroker, 0, `outbox rows not on the broker:${report}`)
  assert.ok(v.audit.ok, `the auditor is not clean:${report}`)
  assert.notEqual(result.drainMs, null, `did not drain:${report}`)
  assert.deepEqual(result.problems, [], report)
}

// Longer than npm test's default (120 s per test): each lane runs several faults, on 2 cores.
const TIMEOUT_MS = 360_000

describe('fault suite smoke run (own Kafka brokers and PostgreSQL servers)', {
  concurrency: true,
  timeout: TIMEOUT_MS,
}, () => {
  let killed: Infrastructure
  let shared: Infrastructure
  let resources: Infrastructure

  before(
    async () => {
      ;[killed, shared, resources] = await Promise.all([
        openInfrastructure({ log }),
        openInfrastructure({ log }),
        openInfrastructure({ log }),
      ])
    },
    { timeout: TIMEOUT_MS },
  )
  after(
    async () => {
      const all = [killed, shared, resources]
      await Promise.all(all.map((infra) => infra?.destroy()))
      if (!keepLogs) for (const infra of all) if (infra) rmSync(infra.logDir, { recursive: true, force: true })
    },
    { timeout: TIMEOUT_MS },
  )

  const run = (infra: Infrastructure, name: string, index: number, mode: SagaMode) =>
    runFault(infra, faultNamed(name), { index, mode, scale: SMOKE })

  it('loses nothing, reorders nothing and dead-letters nothing when the app is SIGKILLed, or the broker is away longer than a step timeout', {
    timeout: TIMEOUT_MS,
  }, async () => {
    const appKill = await run(killed, 'app-sigkill', 0, 'orchestration')
    const longOutage = await run(killed, 'broker-outage-long', 1, 'choreography')
    assertClean(appKill, killed.logDir)
    assertClean(longOutage, killed.logDir)
  })

  it('nor when the broker is SIGKILLed, poison reaches every consumed topic, or the database goes away while consuming', {
    timeout: TIMEOUT_MS,
  }, async () => {
    const brokerKill = await run(shared, 'broker-sigkill-x5', 0, 'choreography')
    const poison = await run(shared, 'poison-mix', 1, 'orchestration')
    const outage = await run(shared, 'db-outage-consuming', 2, 'choreography')
    assertClean(brokerKill, shared.logDir)
    assertClean(poison, shared.logDir)
    assert.ok(poison.poison.length > 0, 'poison was injected')
    assert.deepEqual(poison.verification?.poisonNotDeadLettered, [], 'every group dead-lettered the poison it reads')
    assertClean(outage, shared.logDir)
  })

  it('nor when every database connection is held, orders are stormed, the clock steps or the embedded disk is full', {
    timeout: TIMEOUT_MS,
  }, async (t) => {
    const exhausted = await run(resources, 'connections-exhausted', 0, 'orchestration')
    const storm = await run(resources, 'deadlock-storm', 1, 'choreography')
    const clock = await run(resources, 'clock-step', 2, 'orchestration')
    const diskFull = await run(resources, 'embedded-disk-full', 3, 'choreography')
    assertClean(exhausted, resources.logDir)
    assertClean(storm, resources.logDir)
    assertClean(clock, resources.logDir)
    if (diskFull.notRun) t.diagnostic(`embedded-disk-full not run here: ${diskFull.notRun}`)
    else assertClean(diskFull, resources.logDir)
  })
})
