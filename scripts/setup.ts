/**
 * One-shot setup of a deployment whose services run in processes of their own (docker-compose.yml's
 * `setup` container), before any of them starts:
 *
 *   node scripts/setup.ts [--tokens-dir DIR]
 *
 * 1. creates the shared secrets the services only read: AUTH_JWT_SECRET_FILE (random, when the file
 *    does not exist) and the personal-data key file (when PERSONAL_DATA_KEY_FILE_CREATE is on);
 * 2. applies every module's migrations, as the app does at start (`migrateModules`), so that
 *    processes that each run a few modules never race on a shared table;
 * 3. creates every topic orderflow uses (`orderflowTopics`, as `npm run orderflow -- topics` does) that
 *    is missing, with KAFKA_PARTITIONS and KAFKA_REPLICATION_FACTOR, waiting for enough brokers (a
 *    cluster's brokers start together); topic configs are `topics apply`'s to set;
 * 4. with a shared JWT secret, signs tokens: an operator token for Prometheus' scrapes in
 *    DIR/prometheus.jwt, and a customer's, a service's and an operator's token printed as exports.
 *
 * Every step is idempotent: running it again changes nothing but the tokens. Exit code 0 when done,
 * 2 for a configuration error (one line naming the variable), 1 otherwise.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { SignJWT } from 'jose'
import { migrateModules } from '../src/app.ts'
import { type Config, ConfigError, type JwtSettings, loadConfig } from '../src/platform/config.ts'
import type { Role } from '../src/platform/http/auth.ts'
import { DEVELOPMENT_SUBJECTS } from '../src/platform/http/dev-tokens.ts'
import type { Logger } from '../src/platform/logger.ts'
import { openRuntime } from '../src/platform/runtime.ts'
import { explainStartupFailure } from '../src/platform/startup-errors.ts'
import type { Transport } from '../src/platform/transport/port.ts'
import { orderflowTopics } from '../src/platform/transport/topics-cli.ts'
import { reasonOf } from '../src/platform/transport/topics-plan.ts'
import { allModules } from '../src/services.ts'

/** How long the topics may wait for brokers: a three-broker cluster's last broker may still be starting. */
const TOPICS_DEADLINE_MS = 120_000
const TOPICS_RETRY_MS = 2_000
/** Prometheus' token outlives a working week of `docker compose up`; each setup run renews it. */
const SCRAPE_TOKEN_SECONDS = 365 * 24 * 3600
const PRINTED_TOKEN_SECONDS = 12 * 3600

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'tokens-dir': { type: 'string' } } })
  const tokensDir = values['tokens-dir']

  // Before loadConfig: it reads the file, and only this one-shot container may write it.
  createSecretFile(process.env.AUTH_JWT_SECRET_FILE)
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`orderflow setup cannot start. ${error.message}\n`)
      process.exit(2)
    }
    throw error
  }

  // Setup is what creates the topics, whatever KAFKA_CREATE_TOPICS says for the services.
  const runtime = await openRuntime({ ...config, kafka: { ...config.kafka, createTopics: true } }).catch(
    (error: unknown) => {
      const explained = explainStartupFailure(error, config)
      if (explained === undefined) throw error
      process.stderr.write(`orderflow setup cannot start: ${explained}\n`)
      process.exit(1)
    },
  )
  const { logger } = runtime
  try {
    const applied = await migrateModules(runtime.db, allModules(), (migration) =>
      logger.info(
        { module: migration.module, version: migration.version, migration: migration.name },
        `applied migration ${migration.module} ${migration.version} ${migration.name}`,
      ),
    )
    logger.info({ applied: applied.length }, `migrations: ${applied.length} applied, every module is current`)

    const topics = orderflowTopics()
    await ensureTopicsPatiently(runtime.transport, topics, config, logger)
    logger.info(
      { topics: topics.length, transport: runtime.transport.kind },
      `topics: all ${topics.length} present (${config.kafka.partitions} partitions, replication factor ${config.kafka.replicationFactor})`,
    )

    const jwt = config.auth.jwt
    if (jwt?.keys.kind === 'secret') {
      await issueTokens(jwt, jwt.keys.secret, tokensDir)
    } else if (tokensDir !== undefined) {
      logger.warn(
        'no shared JWT secret (AUTH_JWT_SECRET or _FILE): setup cannot sign tokens; give Prometheus an operator token from your identity provider',
      )
    }
  } finally {
    await runtime.close()
  }
}

/** A random secret in `path` unless one is there: `wx` so that two runs never overwrite each other's. */
function createSecretFile(path: string | undefined): void {
  if (path === undefined || path.trim() === '') return
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  try {
    writeFileSync(path, `${randomBytes(48).toString('base64url')}\n`, { flag: 'wx', mode: 0o600 })
    process.stdout.write(`created a JWT signing secret in ${path}\n`)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  }
}

/** The topics could not be created in time: said in one line, with the broker's reason. */
class TopicsNotCreated extends Error {}

async function ensureTopicsPatiently(transport: Transport, topics: string[], config: Config, logger: Logger) {
  const deadline = Date.now() + TOPICS_DEADLINE_MS
  for (;;) {
    try {
      await transport.ensureTopics(topics)
      return
    } catch (error) {
      // Not enough brokers for the replication factor yet, or a broker still electing leaders.
      const reason = reasonOf(error).replace(/\.$/, '')
      if (Date.now() > deadline) {
        throw new TopicsNotCreated(
          `the topics were not created within ${TOPICS_DEADLINE_MS / 1000} s: ${reason}. KAFKA_REPLICATION_FACTOR=${config.kafka.replicationFactor} needs as many brokers running (in docker-compose.yml, 3 come with --profile three-brokers)`,
          { cause: error },
        )
      }
      logger.warn({ err: error }, `topics not created yet (${reason}), trying again in ${TOPICS_RETRY_MS / 1000} s`)
      await sleep(TOPICS_RETRY_MS)
    }
  }
}

async function issueTokens(jwt: JwtSettings, secret: string, tokensDir: string | undefined): Promise<void> {
  const key = new TextEncoder().encode(secret)
  const algorithm = jwt.algorithms[0] ?? 'HS256'
  const sign = (subject: string, roles: readonly Role[], lifetimeSeconds: number) => {
    const now = Math.floor(Date.now() / 1000)
    const token = new SignJWT({ [jwt.rolesClaim]: [...roles] })
      .setProtectedHeader({ alg: algorithm, typ: 'JWT' })
      .setSubject(subject)
      .setIssuedAt(now)
      .setExpirationTime(now + lifetimeSeconds)
    if (jwt.issuer) token.setIssuer(jwt.issuer)
    if (jwt.audience) token.setAudience(jwt.audience)
    return token.sign(key)
  }

  if (tokensDir !== undefined) {
    const path = join(tokensDir, 'prometheus.jwt')
    mkdirSync(tokensDir, { recursive: true })
    // Renamed into place: Prometheus reads the file at every scrape and must never see half of it.
    const temporary = `${path}.${process.pid}.tmp`
    writeFileSync(temporary, await sign('prometheus', ['operator'], SCRAPE_TOKEN_SECONDS), { mode: 0o644 })
    renameSync(temporary, path)
    process.stdout.write(`Prometheus' operator token (valid 365 days): ${path}\n`)
  }
  const [customer, service, operator] = await Promise.all([
    sign(DEVELOPMENT_SUBJECTS.customer, ['customer'], PRINTED_TOKEN_SECONDS),
    sign(DEVELOPMENT_SUBJECTS.service, ['service'], PRINTED_TOKEN_SECONDS),
    sign(DEVELOPMENT_SUBJECTS.operator, ['operator'], PRINTED_TOKEN_SECONDS),
  ])
  // Plain text on purpose, as AUTH=dev prints its tokens: meant to be pasted into a shell.
  process.stdout.write(
    [
      'Tokens signed with the deployment secret (valid 12 h; `docker compose run --rm setup` prints new ones):',
      `  export CUSTOMER_TOKEN=${customer}   # sub ${DEVELOPMENT_SUBJECTS.customer}, role customer`,
      `  export SERVICE_TOKEN=${service}   # sub ${DEVELOPMENT_SUBJECTS.service}, role service`,
      `  export OPERATOR_TOKEN=${operator}   # sub ${DEVELOPMENT_SUBJECTS.operator}, role operator`,
      '',
    ].join('\n'),
  )
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    // A known failure in one line; anything else with its stack (a bug).
    const text =
      error instanceof TopicsNotCreated
        ? error.message
        : error instanceof Error
          ? (error.stack ?? error.message)
          : String(error)
    process.stderr.write(`orderflow setup failed: ${text}\n`)
    process.exit(1)
  })
}
