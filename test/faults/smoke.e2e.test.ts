import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { faultNamed, SMOKE } from '../../scripts/faults/scenarios.ts'
import { type FaultResult, type Infrastructure, openInfrastructure, runFault } from '../../scripts/faults/suite.ts'
import { formatDetails, formatTable } from '../../scripts/faults/table.ts'

/**
 * The fault suite's smoke run (`npm run faults` is the full one), on Kafka brokers and PostgreSQL
 * servers of its own: a broker SIGKILL, an app SIGKILL, the poison mix on every consumed topic and
 * a database outage while the consumers work, each under a small load. After each: no accepted
 * order lost, every event on Kafka in per-key order, no dead letter but the poison, auditor clean.
 *
 * The app SIGKILL runs beside the others, on a broker and PostgreSQL of its own so that their
 * faults do not reach it: after it, the outbox relay waits about a minute for the dead process's
 * lease to run out, and one after the other the faults would not fit the time a CI test may take.
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

// Longer than npm test's default (120 s per test): the app SIGKILL alone takes about 100 s on 2 cores.
const TIMEOUT_MS = 240_000

describe('fault suite smoke run (own Kafka brokers and PostgreSQL servers)', {
  concurrency: true,
  timeout: TIMEOUT_MS,
}, () => {
  let shared: Infrastructure
  let ownForAppKill: Infrastructure

  before(
    async () => {
      ;[shared, ownForAppKill] = await Promise.all([openInfrastructure({ log }), openInfrastructure({ log })])
    },
    { timeout: TIMEOUT_MS },
  )
  after(
    async () => {
      await Promise.all([shared?.destroy(), ownForAppKill?.destroy()])
      if (!keepLogs)
        for (const infra of [shared, ownForAppKill]) if (infra) rmSync(infra.logDir, { recursive: true, force: true })
    },
    { timeout: TIMEOUT_MS },
  )

  it('loses nothing, reorders nothing and dead-letters nothing when the app is SIGKILLed', {
    timeout: TIMEOUT_MS,
  }, async () => {
    assertClean(
      await runFault(ownForAppKill, faultNamed('app-sigkill'), { index: 0, scale: SMOKE }),
      ownForAppKill.logDir,
    )
  })

  it('nor when the broker is SIGKILLed, poison reaches every consumed topic, or the database goes away while consuming', {
    timeout: TIMEOUT_MS,
  }, async () => {
    const brokerKill = await runFault(shared, faultNamed('broker-sigkill-x5'), { index: 0, scale: SMOKE })
    const poison = await runFault(shared, faultNamed('poison-mix'), { index: 1, scale: SMOKE })
    const outage = await runFault(shared, faultNamed('db-outage-consuming'), { index: 2, scale: SMOKE })
    assertClean(brokerKill, shared.logDir)
    assertClean(poison, shared.logDir)
    assert.ok(poison.poison.length > 0, 'poison was injected')
    assert.deepEqual(poison.verification?.poisonNotDeadLettered, [], 'every group dead-lettered the poison it reads')
    assertClean(outage, shared.logDir)
  })
})
