import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import { z } from 'zod'
import { accessPolicy, ConfigError, loadConfig } from '../../src/platform/config.ts'
import { allVariables, modulesSettingsProblems } from '../../src/settings.ts'

/**
 * What docker-compose.yml must keep true as the code moves, as a list of problems (empty: in step).
 * The file is read as compose reads it: YAML with merge keys, then `${VAR:-default}` interpolated
 * with the variables given (none: the defaults, as `docker compose up` without variables).
 *
 * The orderflow containers are those of the orderflow image; the service containers are the ones
 * that run the server (no `command`), the others are one-shots (`setup`).
 */

export const ORDERFLOW_IMAGE = 'orderflow:local'

const environment = z.union([
  z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  z.array(z.string()),
])
const service = z
  .object({
    image: z.string().optional(),
    command: z.union([z.string(), z.array(z.string())]).optional(),
    profiles: z.array(z.string()).optional(),
    environment: environment.optional(),
    ports: z.array(z.union([z.string(), z.number()])).optional(),
    healthcheck: z
      .object({ test: z.union([z.string(), z.array(z.string())]).optional(), disable: z.boolean().optional() })
      .loose()
      .optional(),
    depends_on: z
      .union([z.array(z.string()), z.record(z.string(), z.object({ condition: z.string().optional() }).loose())])
      .optional(),
  })
  .loose()
const composeFile = z.object({ services: z.record(z.string(), service) }).loose()

export type ComposeFile = z.infer<typeof composeFile>
type ComposeService = z.infer<typeof service>

/** The file's YAML as a plain tree, before interpolation (so a test may change it and check again). */
export function parseCompose(text: string): unknown {
  return parse(text, { merge: true })
}

/** Compose's interpolation of one string: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`. */
export function interpolate(text: string, variables: Readonly<Record<string, string>>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (whole, braced?: string, operator?: string, argument?: string, bare?: string) => {
      if (whole === '$$') return '$'
      const name = (braced ?? bare) as string
      const value = variables[name]
      const unset = operator?.startsWith(':') ? value === undefined || value === '' : value === undefined
      if (operator?.endsWith('-')) return unset ? (argument ?? '') : (value as string)
      if (operator?.endsWith('?') && unset) throw new Error(`${name} is required: ${argument}`)
      return value ?? ''
    },
  )
}

/** The tree with every string interpolated, then checked for the shape the checks read. */
export function resolveCompose(tree: unknown, variables: Readonly<Record<string, string>> = {}): ComposeFile {
  const walk = (node: unknown): unknown => {
    if (typeof node === 'string') return interpolate(node, variables)
    if (Array.isArray(node)) return node.map(walk)
    if (node !== null && typeof node === 'object') {
      return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, walk(value)]))
    }
    return node
  }
  return composeFile.parse(walk(tree))
}

/** A container's environment as the process sees it (a key without a value is the host's: left out). */
export function environmentOf(definition: ComposeService): Record<string, string> {
  const env = definition.environment ?? {}
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env
        .filter((entry) => entry.includes('='))
        .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
    )
  }
  return Object.fromEntries(
    Object.entries(env).flatMap(([key, value]) => (value === null ? [] : [[key, String(value)]])),
  )
}

function dependenciesOf(definition: ComposeService): Record<string, string> {
  const dependsOn = definition.depends_on ?? {}
  if (Array.isArray(dependsOn)) return Object.fromEntries(dependsOn.map((name) => [name, 'service_started']))
  return Object.fromEntries(
    Object.entries(dependsOn).map(([name, entry]) => [name, entry.condition ?? 'service_started']),
  )
}

/** `[host address:]host port:container port` (a bare container port publishes nothing fixed). */
function portMappings(definition: ComposeService): { host: number | undefined; container: number }[] {
  return (definition.ports ?? []).map((entry) => {
    const parts = String(entry)
      .replace(/\/(tcp|udp)$/, '')
      .split(':')
    const container = Number(parts.at(-1))
    return { host: parts.length >= 2 ? Number(parts.at(-2)) : undefined, container }
  })
}

const isOrderflow = (definition: ComposeService) => definition.image === ORDERFLOW_IMAGE
/** The containers that run the server, by name. */
export function serviceContainers(compose: ComposeFile): [string, ComposeService][] {
  return Object.entries(compose.services).filter(([, d]) => isOrderflow(d) && d.command === undefined)
}

export interface DriftContext {
  /** The module names `allModules()` has. */
  modules: readonly string[]
  /** `host:port` targets of Prometheus' job `orderflow`, and those probed by job `orderflow-ready`. */
  scraped: readonly string[]
  probed: readonly string[]
}

/** Everything docker-compose.yml (resolved with one set of variables) gets wrong about the code. */
export function composeProblems(compose: ComposeFile, context: DriftContext): string[] {
  return [
    ...moduleProblems(compose, context.modules),
    ...environmentProblems(compose),
    ...portProblems(compose),
    ...healthProblems(compose),
    ...dependencyProblems(compose),
    ...scrapeProblems(compose, context),
  ]
}

function moduleProblems(compose: ComposeFile, modules: readonly string[]): string[] {
  const problems: string[] = []
  const runners = new Map<string, string[]>()
  for (const [name, definition] of serviceContainers(compose)) {
    const services = environmentOf(definition).SERVICES
    if (services === undefined || services.trim() === '' || services.trim() === 'all') {
      problems.push(`${name}: SERVICES is not set, so it would run every module`)
      continue
    }
    for (const module of services.split(',').map((m) => m.trim())) {
      if (!modules.includes(module)) problems.push(`${name}: SERVICES names '${module}', which is not a module`)
      runners.set(module, [...(runners.get(module) ?? []), name])
    }
  }
  for (const module of modules) {
    const containers = runners.get(module) ?? []
    if (containers.length === 0) problems.push(`module '${module}' runs in no container`)
    if (containers.length > 1)
      problems.push(`module '${module}' runs in ${containers.length}: ${containers.join(', ')}`)
  }
  return problems
}

/** Secrets given as files are read by loadConfig: the checks put a stand-in at a path of their own. */
function withStandInFiles(env: Record<string, string>, directory: string): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).map(([key, value]) => {
      if (!key.endsWith('_FILE') || key === 'PERSONAL_DATA_KEY_FILE') return [key, value]
      const path = join(directory, key)
      writeFileSync(path, 'a stand-in secret of more than thirty-two bytes\n')
      return [key, path]
    }),
  )
}

function environmentProblems(compose: ComposeFile): string[] {
  const problems: string[] = []
  const known = new Set(allVariables())
  const directory = mkdtempSync(join(tmpdir(), 'orderflow-compose-'))
  try {
    for (const [name, definition] of Object.entries(compose.services).filter(([, d]) => isOrderflow(d))) {
      const env = environmentOf(definition)
      for (const key of Object.keys(env).filter((k) => !known.has(k))) {
        problems.push(`${name}: ${key} is not a variable orderflow reads`)
      }
      try {
        const config = loadConfig(withStandInFiles(env, directory))
        // What main.ts checks next: every module's settings.
        problems.push(...modulesSettingsProblems(env).map((problem) => `${name}: ${problem}`))
        if (config.transport !== 'kafka') problems.push(`${name}: runs on the ${config.transport} transport, not Kafka`)
        if (config.database.kind !== 'postgres')
          problems.push(`${name}: runs on ${config.database.kind}, not PostgreSQL`)
        if (definition.command !== undefined) continue
        // What main.ts decides at start: a process beyond loopback needs authentication.
        accessPolicy(config)
        const published = portMappings(definition).map((p) => p.container)
        if (!published.includes(config.http.port)) {
          problems.push(`${name}: listens on ${config.http.port} but publishes ${published.join(', ') || 'no port'}`)
        }
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error
        problems.push(...error.problems.map((problem) => `${name}: ${problem}`))
      }
    }
  } finally {
    rmSync(directory, { recursive: true, force: true })
  }
  return problems
}

function portProblems(compose: ComposeFile): string[] {
  const owners = new Map<number, string[]>()
  for (const [name, definition] of Object.entries(compose.services)) {
    for (const { host } of portMappings(definition)) {
      if (host !== undefined) owners.set(host, [...(owners.get(host) ?? []), name])
    }
  }
  return [...owners]
    .filter(([, names]) => names.length > 1)
    .map(([port, names]) => `host port ${port} is published by ${names.join(' and ')}`)
}

function healthProblems(compose: ComposeFile): string[] {
  const hasHealthcheck = (definition: ComposeService | undefined) => {
    const check = definition?.healthcheck
    if (!check || check.disable === true || check.test === undefined) return false
    const test = Array.isArray(check.test) ? check.test : [check.test]
    return test.length > 0 && test[0] !== 'NONE'
  }
  const problems = serviceContainers(compose)
    .filter(([, definition]) => !hasHealthcheck(definition))
    .map(([name]) => `${name}: no healthcheck`)
  for (const [name, definition] of Object.entries(compose.services)) {
    for (const [dependency, condition] of Object.entries(dependenciesOf(definition))) {
      if (condition === 'service_healthy' && !hasHealthcheck(compose.services[dependency])) {
        problems.push(`${name} waits for ${dependency} to be healthy, which has no healthcheck`)
      }
    }
  }
  return problems
}

function dependencyProblems(compose: ComposeFile): string[] {
  const problems: string[] = []
  const oneShots = Object.entries(compose.services).filter(([, d]) => isOrderflow(d) && d.command !== undefined)
  for (const [name, definition] of serviceContainers(compose)) {
    const dependencies = dependenciesOf(definition)
    for (const [dependency, condition] of [
      ['postgres', 'service_healthy'],
      ['kafka', 'service_healthy'],
      ...oneShots.map(([oneShot]) => [oneShot, 'service_completed_successfully']),
    ] as const) {
      if (dependencies[dependency] !== condition) {
        problems.push(`${name}: does not wait for ${dependency} (${condition})`)
      }
    }
  }
  for (const [name, definition] of Object.entries(compose.services)) {
    for (const dependency of Object.keys(dependenciesOf(definition))) {
      const target = compose.services[dependency]
      if (!target) {
        problems.push(`${name} depends on ${dependency}, which is not a service`)
        continue
      }
      // Compose refuses to start a service whose dependency is in a profile not asked for.
      const missing =
        (target.profiles ?? []).length > 0 && !(target.profiles ?? []).some((p) => definition.profiles?.includes(p))
      if (missing)
        problems.push(`${name} depends on ${dependency}, which runs only in profile ${target.profiles?.join(', ')}`)
    }
  }
  return problems
}

function scrapeProblems(compose: ComposeFile, context: DriftContext): string[] {
  const expected = serviceContainers(compose).map(([name, definition]) => {
    const port = environmentOf(definition).PORT ?? '3000'
    return `${name}:${port}`
  })
  const problems: string[] = []
  for (const [job, targets] of [
    ['orderflow', context.scraped],
    ['orderflow-ready', context.probed],
  ] as const) {
    for (const target of expected.filter((t) => !targets.includes(t))) {
      problems.push(`Prometheus job ${job} does not reach ${target}`)
    }
    for (const target of targets.filter((t) => !expected.includes(t))) {
      problems.push(`Prometheus job ${job} reaches ${target}, which is no service container`)
    }
  }
  return problems
}

/** The broker services of a resolved file that run with the given profiles. */
export function brokers(compose: ComposeFile, profiles: readonly string[]): string[] {
  return Object.entries(compose.services)
    .filter(([, d]) => d.image?.startsWith('apache/kafka:'))
    .filter(([, d]) => (d.profiles ?? []).length === 0 || (d.profiles ?? []).some((p) => profiles.includes(p)))
    .map(([name]) => name)
}

/**
 * The Kafka settings that must agree with the brokers that run: the services reach every broker
 * and ask for a replication factor the cluster has, the brokers share one controller quorum and a
 * min.insync.replicas below the replication factor.
 */
export function clusterProblems(compose: ComposeFile, profiles: readonly string[]): string[] {
  const problems: string[] = []
  const running = brokers(compose, profiles)
  for (const [name, definition] of serviceContainers(compose)) {
    const env = environmentOf(definition)
    const listed = (env.KAFKA_BROKERS ?? '').split(',').map((b) => b.trim().split(':')[0])
    if (listed.join() !== running.join()) {
      problems.push(`${name}: KAFKA_BROKERS lists ${listed.join(', ')}, the brokers are ${running.join(', ')}`)
    }
    if (Number(env.KAFKA_REPLICATION_FACTOR ?? 1) !== running.length) {
      problems.push(
        `${name}: KAFKA_REPLICATION_FACTOR is ${env.KAFKA_REPLICATION_FACTOR}, with ${running.length} broker(s)`,
      )
    }
  }
  const voters = new Set<string>()
  for (const name of running) {
    const env = environmentOf(compose.services[name] as ComposeService)
    voters.add(env.KAFKA_CONTROLLER_QUORUM_VOTERS ?? '')
    const hosts = (env.KAFKA_CONTROLLER_QUORUM_VOTERS ?? '').split(',').map((v) => v.split('@')[1]?.split(':')[0])
    if (hosts.join() !== running.join()) problems.push(`${name}: the controller quorum is ${hosts.join(', ')}`)
    const minInsync = Number(env.KAFKA_MIN_INSYNC_REPLICAS ?? 1)
    // A majority of the replicas (2 of 3): writes go on while one broker is away, and none that was
    // acknowledged is on a single broker.
    const expected = Math.floor(running.length / 2) + 1
    if (minInsync !== expected) {
      problems.push(
        `${name}: min.insync.replicas is ${minInsync}, with ${running.length} broker(s) it should be ${expected}`,
      )
    }
  }
  if (voters.size > 1) problems.push(`the brokers disagree on the controller quorum: ${[...voters].join(' / ')}`)
  return problems
}
