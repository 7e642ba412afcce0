import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { parse } from 'yaml'
import { z } from 'zod'
import { allModules } from '../../src/services.ts'
import {
  brokers,
  type ComposeFile,
  clusterProblems,
  composeProblems,
  type DriftContext,
  interpolate,
  parseCompose,
  resolveCompose,
} from './compose-drift.ts'

/**
 * docker-compose.yml runs the whole system, one container per service: it must follow the code.
 * A module added to `allModules()`, a variable renamed in config.ts, a container added without a
 * Prometheus target or a healthcheck fails here, not on someone's `docker compose up`.
 */

const repoRoot = resolve(import.meta.dirname, '../..')
const composeText = readFileSync(join(repoRoot, 'docker-compose.yml'), 'utf8')
const tree = parseCompose(composeText)

const prometheus = z
  .object({
    scrape_configs: z.array(
      z.object({ job_name: z.string(), static_configs: z.array(z.object({ targets: z.array(z.string()) })) }),
    ),
  })
  .parse(parse(readFileSync(join(repoRoot, 'deploy/prometheus/prometheus.yml'), 'utf8')))
const targetsOf = (job: string) =>
  prometheus.scrape_configs
    .filter((c) => c.job_name === job)
    .flatMap((c) => c.static_configs.flatMap((s) => s.targets))
    // The readiness probe's targets are URLs: the container is their host:port.
    .map((target) => target.replace(/^https?:\/\/([^/]+).*$/, '$1'))

const context: DriftContext = {
  modules: allModules().map((m) => m.name),
  scraped: targetsOf('orderflow'),
  probed: targetsOf('orderflow-ready'),
}

/** The variables the header tells users to set for the three-brokers profile. */
const threeBrokerVariables = z
  .record(z.string(), z.string())
  .parse((tree as Record<string, unknown>)['x-three-brokers'])

/** A changed copy of the file's tree: the checks must notice. */
function drifted(change: (services: Record<string, Record<string, unknown>>) => void): ComposeFile {
  const copy = structuredClone(tree) as { services: Record<string, Record<string, unknown>> }
  change(copy.services)
  return resolveCompose(copy)
}
const environment = (services: Record<string, Record<string, unknown>>, name: string) =>
  services[name]?.environment as Record<string, unknown>

describe('docker-compose.yml', () => {
  it('runs every module in exactly one container, each configured as orderflow accepts', () => {
    assert.deepEqual(composeProblems(resolveCompose(tree), context), [])
  })

  it('has the same settings with the three-brokers variables, and the Kafka settings agree with the brokers', () => {
    const single = resolveCompose(tree)
    assert.deepEqual(brokers(single, []), ['kafka'])
    assert.deepEqual(clusterProblems(single, []), [])

    const three = resolveCompose(tree, threeBrokerVariables)
    assert.deepEqual(brokers(three, ['three-brokers']), ['kafka', 'kafka-2', 'kafka-3'])
    assert.deepEqual(composeProblems(three, context), [])
    assert.deepEqual(clusterProblems(three, ['three-brokers']), [])
    // The header's command line sets the same values as x-three-brokers.
    for (const [name, value] of Object.entries(threeBrokerVariables)) {
      assert.ok(composeText.includes(`${name}=${value} `), `the header's three-brokers command sets ${name}=${value}`)
    }
  })

  it('notices when the file drifts from the code', () => {
    const problems = (change: (services: Record<string, Record<string, unknown>>) => void) =>
      composeProblems(drifted(change), context)

    // A module dropped from its container, and one run twice.
    assert.deepEqual(
      problems((s) => {
        environment(s, 'customer').SERVICES = 'cart'
      }),
      ["module 'cart' runs in 2: cart, customer", "module 'customer' runs in no container"],
    )
    // A misspelt variable, and one whose value loadConfig refuses.
    assert.deepEqual(
      problems((s) => {
        environment(s, 'payment').KAFKA_BROKER = 'kafka:9092'
        environment(s, 'delivery').DELIVERY_DELAY_MS = '600000'
      }),
      [
        'payment: KAFKA_BROKER is not a variable orderflow reads',
        'delivery: SAGA_DELIVERY_TIMEOUT_MS (300000) must be longer than DELIVERY_DELAY_MS (600000), or every delivery would time out',
      ],
    )
    // Listening beyond loopback without authentication: main.ts would refuse to start.
    const open = problems((s) => {
      delete environment(s, 'order').AUTH_JWT_SECRET_FILE
    })
    assert.equal(open.length, 1)
    assert.match(open[0] ?? '', /^order: .*authentication is not configured/)
    // Two containers on one host port, a service without a healthcheck, one that starts before setup.
    assert.deepEqual(
      problems((s) => {
        ;(s.ops as Record<string, unknown>).ports = ['127.0.0.1:3001:3000']
        delete (s.saga as Record<string, unknown>).healthcheck
        delete ((s.shop as Record<string, unknown>).depends_on as Record<string, unknown>).setup
      }),
      [
        'host port 3001 is published by cart and ops',
        'saga: no healthcheck',
        'shop: does not wait for setup (service_completed_successfully)',
      ],
    )
    // A second container for a module, which Prometheus does not scrape.
    assert.deepEqual(
      problems((s) => {
        s['coffee-2'] = { ...s.coffee, ports: ['127.0.0.1:3012:3000'] }
      }),
      [
        "module 'coffee' runs in 2: coffee, coffee-2",
        'Prometheus job orderflow does not reach coffee-2:3000',
        'Prometheus job orderflow-ready does not reach coffee-2:3000',
      ],
    )
    // The three-brokers profile with the services left on one broker.
    const halfSwitched = resolveCompose(tree, { ...threeBrokerVariables, STACK_BROKERS: 'kafka:9092' })
    assert.ok(
      clusterProblems(halfSwitched, ['three-brokers']).includes(
        'cart: KAFKA_BROKERS lists kafka, the brokers are kafka, kafka-2, kafka-3',
      ),
    )
  })

  it('interpolates as compose does', () => {
    const variables = { SET: 'x', EMPTY: '' }
    // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's interpolation, not a template
    assert.equal(interpolate('${SET:-d} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $SET $$SET', variables), 'x d d  x $SET')
    // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's interpolation, not a template
    assert.throws(() => interpolate('${UNSET:?needed}', variables), /UNSET is required: needed/)
  })

  it('passes `docker-compose config` in every profile (Debian docker-compose 1.29: no Docker engine needed)', (t) => {
    const version = spawnSync('docker-compose', ['version', '--short'], { encoding: 'utf8' })
    if (version.error) {
      // CI installs it (.ci/run); a laptop without it relies on the checks above.
      if (process.env.CI === 'true') assert.fail('docker-compose is not installed (.ci/run installs it)')
      t.skip('docker-compose is not installed')
      return
    }
    for (const profiles of [[], ['three-brokers'], ['observability'], ['three-brokers', 'observability']]) {
      const run = spawnSync(
        'docker-compose',
        [...profiles.flatMap((p) => ['--profile', p]), '-f', 'docker-compose.yml', 'config', '-q'],
        // The host's variables stay out: the file must be valid on its defaults.
        { cwd: repoRoot, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } },
      )
      assert.equal(
        run.status,
        0,
        `docker-compose ${profiles.map((p) => `--profile ${p} `).join('')}config: ${run.stderr}`,
      )
    }
  })

  it('starts the image as `npm start` does, with node itself as PID 1', () => {
    const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8')
    const start = z
      .object({ scripts: z.object({ start: z.string() }) })
      .parse(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'))).scripts.start
    const command = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1]
    assert.ok(command, 'the Dockerfile has an exec-form CMD')
    assert.deepEqual(JSON.parse(command), start.split(' '))
  })
})
