import { z } from 'zod'

/**
 * Configuration from the environment. Names follow the seed documents where one names them
 * (`KAFKA_BROKERS`, `KAFKA_RETRY_MAX`, `KAFKA_REQUIRED_ACKS`, `DATABASE_URL`, `PORT`).
 * A bad value stops start-up with a `ConfigError` naming every wrong variable and what is allowed.
 */

const wholeNumber = (name: string, min: number, max: number, fallback: number) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return fallback
      const value = Number(raw)
      if (!Number.isInteger(value) || value < min || value > max) {
        ctx.addIssue({ code: 'custom', message: `${name} must be a whole number from ${min} to ${max} (got '${raw}')` })
        return z.NEVER
      }
      return value
    })

const brokerList = z
  .string()
  .optional()
  .transform((raw, ctx) => {
    if (raw === undefined || raw.trim() === '') return []
    const brokers = raw.split(',').map((b) => b.trim())
    for (const broker of brokers) {
      if (!/^[^\s:]+:\d{1,5}$/.test(broker)) {
        ctx.addIssue({
          code: 'custom',
          message: `KAFKA_BROKERS must be a comma-separated list of host:port (got '${broker}' in '${raw}')`,
        })
        return z.NEVER
      }
    }
    return brokers
  })

/** A rate from 0 to 1, such as a share of calls that fail. */
const rate = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return 0
      const value = Number(raw)
      if (!Number.isFinite(value) || value < 0 || value > 1) {
        ctx.addIssue({ code: 'custom', message: `${name} must be a number from 0 to 1 (got '${raw}')` })
        return z.NEVER
      }
      return value
    })

/** A decimal amount (`1000` or `1000.00`) as minor units; unset means no limit. */
const amountLimit = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined
      const match = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(raw.trim())
      if (!match) {
        ctx.addIssue({
          code: 'custom',
          message: `${name} must be a decimal amount with at most 2 decimals, such as 1000.00 (got '${raw}')`,
        })
        return z.NEVER
      }
      return Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'))
    })

const nameList = z
  .string()
  .optional()
  .transform((raw) =>
    raw === undefined
      ? []
      : raw
          .split(',')
          .map((name) => name.trim())
          .filter((name) => name !== ''),
  )

const HOUR_MS = 3600 * 1000

const environmentSchema = z.object({
  TRANSPORT: z
    .enum(['embedded', 'kafka'], { error: (issue) => `TRANSPORT must be 'embedded' or 'kafka' (got '${issue.input}')` })
    .optional(),
  KAFKA_BROKERS: brokerList,
  KAFKA_CLIENT_ID: z.string().default('orderflow'),
  KAFKA_TOPIC_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]*$/, 'KAFKA_TOPIC_PREFIX may only contain letters, digits, ".", "_" and "-"')
    .default(''),
  KAFKA_RETRY_MAX: wholeNumber('KAFKA_RETRY_MAX', 0, 20, 3),
  KAFKA_RETRY_BACKOFF_MS: wholeNumber('KAFKA_RETRY_BACKOFF_MS', 0, 600_000, 1000),
  KAFKA_REQUIRED_ACKS: z
    .enum(['all', '-1', '1', '0'], {
      error: (issue) => `KAFKA_REQUIRED_ACKS must be 'all', '1' or '0' (got '${issue.input}')`,
    })
    .default('all')
    .transform((acks) => (acks === '-1' ? 'all' : acks)),
  KAFKA_PARTITIONS: wholeNumber('KAFKA_PARTITIONS', 1, 1000, 3),
  KAFKA_REPLICATION_FACTOR: wholeNumber('KAFKA_REPLICATION_FACTOR', 1, 10, 1),
  DATABASE_URL: z
    .string()
    .optional()
    .refine((url) => url === undefined || url === '' || /^postgres(ql)?:\/\//.test(url), {
      message: "DATABASE_URL must be a PostgreSQL URL such as 'postgres://user@127.0.0.1:5432/orderflow'",
    }),
  DATA_DIR: z.string().default('.orderflow/data'),
  PORT: wholeNumber('PORT', 0, 65535, 3000),
  HOST: z.string().default('127.0.0.1'),
  SERVICES: z.string().optional(),
  SHUTDOWN_TIMEOUT_MS: wholeNumber('SHUTDOWN_TIMEOUT_MS', 100, 600_000, 10_000),
  LOG_RETENTION_MS: wholeNumber('LOG_RETENTION_MS', 0, Number.MAX_SAFE_INTEGER, 7 * 24 * 3600 * 1000),
  LOG_RETENTION_BYTES: wholeNumber('LOG_RETENTION_BYTES', 0, Number.MAX_SAFE_INTEGER, 0),
  IDEMPOTENCY_KEY_TTL_MS: wholeNumber('IDEMPOTENCY_KEY_TTL_MS', 0, Number.MAX_SAFE_INTEGER, 24 * 3600 * 1000),
  INBOX_RETENTION_MS: wholeNumber('INBOX_RETENTION_MS', 0, Number.MAX_SAFE_INTEGER, 7 * 24 * 3600 * 1000),
  SAGA_MODE: z
    .enum(['orchestration', 'choreography'], {
      error: (issue) => `SAGA_MODE must be 'orchestration' or 'choreography' (got '${issue.input}')`,
    })
    .default('orchestration'),
  PAYMENT_GATEWAY_DECLINE_ABOVE: amountLimit('PAYMENT_GATEWAY_DECLINE_ABOVE'),
  PAYMENT_GATEWAY_DECLINED_CUSTOMERS: nameList,
  PAYMENT_GATEWAY_LATENCY_MS: wholeNumber('PAYMENT_GATEWAY_LATENCY_MS', 0, 600_000, 0),
  PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE: rate('PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE'),
  PAYMENT_GATEWAY_SEED: wholeNumber('PAYMENT_GATEWAY_SEED', 0, 2 ** 32 - 1, 1),
  PAYMENT_GATEWAY_TIMEOUT_MS: wholeNumber('PAYMENT_GATEWAY_TIMEOUT_MS', 1, 600_000, 5_000),
  PAYMENT_GATEWAY_ATTEMPTS: wholeNumber('PAYMENT_GATEWAY_ATTEMPTS', 1, 20, 4),
  PAYMENT_GATEWAY_RETRY_BACKOFF_MS: wholeNumber('PAYMENT_GATEWAY_RETRY_BACKOFF_MS', 0, 60_000, 50),
  DELIVERY_DELAY_MS: wholeNumber('DELIVERY_DELAY_MS', 0, 24 * HOUR_MS, 2_000),
  SAGA_PAYMENT_TIMEOUT_MS: wholeNumber('SAGA_PAYMENT_TIMEOUT_MS', 1, 24 * HOUR_MS, 30_000),
  SAGA_CONFIRM_TIMEOUT_MS: wholeNumber('SAGA_CONFIRM_TIMEOUT_MS', 1, 24 * HOUR_MS, 15_000),
  SAGA_DISPATCH_TIMEOUT_MS: wholeNumber('SAGA_DISPATCH_TIMEOUT_MS', 1, 24 * HOUR_MS, 30_000),
  SAGA_DELIVERY_TIMEOUT_MS: wholeNumber('SAGA_DELIVERY_TIMEOUT_MS', 1, 24 * HOUR_MS, 5 * 60_000),
  SAGA_COMPENSATION_TIMEOUT_MS: wholeNumber('SAGA_COMPENSATION_TIMEOUT_MS', 1, 24 * HOUR_MS, 30_000),
  SCHEDULER_POLL_INTERVAL_MS: wholeNumber('SCHEDULER_POLL_INTERVAL_MS', 10, 600_000, 1_000),
  AUDIT_STUCK_AFTER_MS: wholeNumber('AUDIT_STUCK_AFTER_MS', 0, 30 * 24 * HOUR_MS, 15 * 60_000),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: (issue) =>
        `LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got '${issue.input}')`,
    })
    .default('info'),
})

export type RequiredAcks = 'all' | '1' | '0'

export interface Config {
  transport: 'embedded' | 'kafka'
  kafka: {
    brokers: string[]
    clientId: string
    /** Prepended to every topic and consumer group name (several deployments on one cluster). */
    topicPrefix: string
    retryMax: number
    retryBackoffMs: number
    requiredAcks: RequiredAcks
    partitions: number
    replicationFactor: number
  }
  database: { kind: 'pglite'; dataDir: string } | { kind: 'postgres'; url: string }
  http: { port: number; host: string }
  logLevel: string
  /** The service modules this process runs, by name; `undefined` means every module. */
  services: string[] | undefined
  /** How long a graceful shutdown may take before the process exits with a failure. */
  shutdownTimeoutMs: number
  retention: {
    /** Embedded log: messages older than this are deleted (Kafka's `retention.ms`); 0 keeps them. */
    logMs: number
    /** Embedded log: per topic partition, oldest messages beyond this many bytes go; 0 = no limit. */
    logBytes: number
    /** Idempotency-Key responses are kept this long. */
    idempotencyKeyMs: number
    /** Inbox entries (handled message ids) are kept this long; redeliveries older than that are not expected. */
    inboxMs: number
  }
  /**
   * How the order journey is coordinated: `orchestration` (the Create-Order saga sends every
   * command) or `choreography` (each service reacts to the previous one's events).
   */
  sagaMode: 'orchestration' | 'choreography'
  /** The simulated payment gateway, and how the payment service treats its faults. */
  paymentGateway: {
    /** Amounts above this (minor units) are declined; undefined = no limit. */
    declineAbove: number | undefined
    declinedCustomers: string[]
    latencyMs: number
    /** Share of calls (0–1) that fail as if the gateway were away. */
    transientFailureRate: number
    /** Seed of the pseudo-random source of transient failures (deterministic runs). */
    seed: number
    /** A call that takes longer counts as a transient failure. */
    timeoutMs: number
    /** Calls per payment before it is recorded as failed with GATEWAY_UNAVAILABLE. */
    attempts: number
    retryBackoffMs: number
  }
  /** The simulated travel time from dispatch to delivery. */
  delivery: { delayMs: number }
  /** The Create-Order saga's step timeouts (retries per step are in the saga's step table). */
  saga: {
    timeoutsMs: { payment: number; confirm: number; dispatch: number; delivery: number; compensation: number }
  }
  /** How often durable timers (saga timeouts, due deliveries) are looked for besides local wake-ups. */
  schedulerPollIntervalMs: number
  /** Orders not terminal after this long are reported as stuck by the auditor. */
  audit: { stuckAfterMs: number }
}

export class ConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = environmentSchema.safeParse(env)
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => issue.message))
  }
  const e = parsed.data
  const transport = e.TRANSPORT ?? (e.KAFKA_BROKERS.length > 0 ? 'kafka' : 'embedded')
  if (transport === 'kafka' && e.KAFKA_BROKERS.length === 0) {
    throw new ConfigError(["TRANSPORT is 'kafka' but KAFKA_BROKERS is empty: set KAFKA_BROKERS=host:port[,host:port]"])
  }
  if (e.SAGA_DELIVERY_TIMEOUT_MS <= e.DELIVERY_DELAY_MS) {
    throw new ConfigError([
      `SAGA_DELIVERY_TIMEOUT_MS (${e.SAGA_DELIVERY_TIMEOUT_MS}) must be longer than DELIVERY_DELAY_MS (${e.DELIVERY_DELAY_MS}), or every delivery would time out`,
    ])
  }
  return {
    transport,
    kafka: {
      brokers: e.KAFKA_BROKERS,
      clientId: e.KAFKA_CLIENT_ID,
      topicPrefix: e.KAFKA_TOPIC_PREFIX,
      retryMax: e.KAFKA_RETRY_MAX,
      retryBackoffMs: e.KAFKA_RETRY_BACKOFF_MS,
      requiredAcks: e.KAFKA_REQUIRED_ACKS,
      partitions: e.KAFKA_PARTITIONS,
      replicationFactor: e.KAFKA_REPLICATION_FACTOR,
    },
    database: e.DATABASE_URL ? { kind: 'postgres', url: e.DATABASE_URL } : { kind: 'pglite', dataDir: e.DATA_DIR },
    http: { port: e.PORT, host: e.HOST },
    logLevel: e.LOG_LEVEL,
    services: parseServiceList(e.SERVICES),
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    retention: {
      logMs: e.LOG_RETENTION_MS,
      logBytes: e.LOG_RETENTION_BYTES,
      idempotencyKeyMs: e.IDEMPOTENCY_KEY_TTL_MS,
      inboxMs: e.INBOX_RETENTION_MS,
    },
    sagaMode: e.SAGA_MODE,
    paymentGateway: {
      declineAbove: e.PAYMENT_GATEWAY_DECLINE_ABOVE,
      declinedCustomers: e.PAYMENT_GATEWAY_DECLINED_CUSTOMERS,
      latencyMs: e.PAYMENT_GATEWAY_LATENCY_MS,
      transientFailureRate: e.PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE,
      seed: e.PAYMENT_GATEWAY_SEED,
      timeoutMs: e.PAYMENT_GATEWAY_TIMEOUT_MS,
      attempts: e.PAYMENT_GATEWAY_ATTEMPTS,
      retryBackoffMs: e.PAYMENT_GATEWAY_RETRY_BACKOFF_MS,
    },
    delivery: { delayMs: e.DELIVERY_DELAY_MS },
    saga: {
      timeoutsMs: {
        payment: e.SAGA_PAYMENT_TIMEOUT_MS,
        confirm: e.SAGA_CONFIRM_TIMEOUT_MS,
        dispatch: e.SAGA_DISPATCH_TIMEOUT_MS,
        delivery: e.SAGA_DELIVERY_TIMEOUT_MS,
        compensation: e.SAGA_COMPENSATION_TIMEOUT_MS,
      },
    },
    schedulerPollIntervalMs: e.SCHEDULER_POLL_INTERVAL_MS,
    audit: { stuckAfterMs: e.AUDIT_STUCK_AFTER_MS },
  }
}

/** `SERVICES=a,b`: names only; which names exist is checked against the modules at start. */
function parseServiceList(raw: string | undefined): string[] | undefined {
  if (raw === undefined || raw.trim() === '' || raw.trim() === 'all') return undefined
  const names = raw.split(',').map((name) => name.trim().toLowerCase())
  const invalid = names.filter((name) => !/^[a-z][a-z0-9-]*$/.test(name))
  if (invalid.length > 0) {
    throw new ConfigError([`SERVICES must be a comma-separated list of service names, or 'all' (got '${raw}')`])
  }
  return [...new Set(names)]
}
