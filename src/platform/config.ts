import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { z } from 'zod'
import {
  ConfigError,
  onOff,
  optionalText,
  type Environment as RawEnvironment,
  type VariableDoc,
  wholeNumber,
} from './settings.ts'

export { ConfigError } from './settings.ts'

/**
 * Configuration from the environment. Names follow the seed documents where one names them
 * (`KAFKA_BROKERS`, `KAFKA_RETRY_MAX`, `KAFKA_REQUIRED_ACKS`, `DATABASE_URL`, `PORT`).
 * A bad value stops start-up with a `ConfigError` naming every wrong variable and what is allowed.
 */

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

/** OTEL_TRACES_SAMPLER's values (the OpenTelemetry specification's, less the Jaeger ones). */
export const SAMPLER_NAMES = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const
export type SamplerName = (typeof SAMPLER_NAMES)[number]

/** How traces are exported when tracing is on (`OTEL_*`, see tracing.ts). */
export interface TracingSettings {
  serviceName: string
  /** OTEL_RESOURCE_ATTRIBUTES: `deployment.environment`, `service.version`, … */
  resourceAttributes: Record<string, string>
  exporter: { kind: 'otlp'; url: string; headers: Record<string, string> } | { kind: 'console' }
  sampler: { kind: SamplerName; ratio: number }
}

const HOUR_MS = 3600 * 1000

/** OpenTelemetry's booleans (`OTEL_SDK_DISABLED`): `true` or `false`, any case. */
const otelBoolean = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined
      const value = raw.trim().toLowerCase()
      if (value === 'true') return true
      if (value === 'false') return false
      ctx.addIssue({ code: 'custom', message: `${name} must be 'true' or 'false' (got '${raw}')` })
      return z.NEVER
    })

const httpUrl = (name: string, example: string) =>
  optionalText.refine((url) => url === undefined || /^https?:\/\/\S+$/.test(url), {
    message: `${name} must be an http(s) URL such as '${example}'`,
  })

/** OpenTelemetry's `key=value,key=value` lists (headers, resource attributes), values URL-encoded. */
const keyValueList = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const pairs: Record<string, string> = {}
      if (raw === undefined || raw.trim() === '') return pairs
      for (const part of raw.split(',')) {
        if (part.trim() === '') continue
        const at = part.indexOf('=')
        const key = at > 0 ? part.slice(0, at).trim() : ''
        let value: string | undefined
        try {
          value = at > 0 ? decodeURIComponent(part.slice(at + 1).trim()) : undefined
        } catch {
          value = undefined
        }
        if (key === '' || value === undefined) {
          ctx.addIssue({
            code: 'custom',
            message: `${name} must be a comma-separated list of key=value (values URL-encoded), such as 'a=1,b=x%20y' (got '${part.trim()}')`,
          })
          return z.NEVER
        }
        pairs[key] = value
      }
      return pairs
    })

const otlpProtocol = (name: string) =>
  z
    .enum(['http/json', 'http/protobuf', 'grpc'], {
      error: (issue) => `${name} must be 'http/json' or 'http/protobuf' (got '${issue.input}')`,
    })
    .optional()
    .refine((protocol) => protocol !== 'grpc', {
      message: `${name}=grpc is not supported: orderflow sends traces over OTLP/HTTP; set ${name}=http/json and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)`,
    })

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
  // Unset: not managed (`topics apply` leaves the broker's default or the topic's own value alone).
  KAFKA_TOPIC_RETENTION_MS: wholeNumber('KAFKA_TOPIC_RETENTION_MS', -1, Number.MAX_SAFE_INTEGER, undefined),
  KAFKA_MIN_INSYNC_REPLICAS: wholeNumber('KAFKA_MIN_INSYNC_REPLICAS', 1, 10, undefined),
  KAFKA_CREATE_TOPICS: onOff('KAFKA_CREATE_TOPICS'),
  DATABASE_URL: z
    .string()
    .optional()
    .refine((url) => url === undefined || url === '' || /^postgres(ql)?:\/\//.test(url), {
      message: "DATABASE_URL must be a PostgreSQL URL such as 'postgres://user@127.0.0.1:5432/orderflow'",
    }),
  DATA_DIR: z.string().default('.orderflow/data'),
  PORT: wholeNumber('PORT', 0, 65535, 3000),
  HOST: z.string().default('127.0.0.1'),
  HTTP_MAX_IN_FLIGHT: wholeNumber('HTTP_MAX_IN_FLIGHT', 0, 1_000_000, 1000),
  SERVICES: z.string().optional(),
  SHUTDOWN_TIMEOUT_MS: wholeNumber('SHUTDOWN_TIMEOUT_MS', 100, 600_000, 10_000),
  SHUTDOWN_DRAIN_MS: wholeNumber('SHUTDOWN_DRAIN_MS', 0, 600_000, 0),
  LOG_RETENTION_MS: wholeNumber('LOG_RETENTION_MS', 0, Number.MAX_SAFE_INTEGER, 7 * 24 * 3600 * 1000),
  LOG_RETENTION_BYTES: wholeNumber('LOG_RETENTION_BYTES', 0, Number.MAX_SAFE_INTEGER, 0),
  IDEMPOTENCY_KEY_TTL_MS: wholeNumber('IDEMPOTENCY_KEY_TTL_MS', 0, Number.MAX_SAFE_INTEGER, 24 * 3600 * 1000),
  INBOX_RETENTION_MS: wholeNumber('INBOX_RETENTION_MS', 0, Number.MAX_SAFE_INTEGER, 7 * 24 * 3600 * 1000),
  SCHEDULER_POLL_INTERVAL_MS: wholeNumber('SCHEDULER_POLL_INTERVAL_MS', 10, 600_000, 1_000),
  CONSUMER_BATCH_MAX: wholeNumber('CONSUMER_BATCH_MAX', 1, 1_000, 50),
  PERSONAL_DATA_KEY_FILE: optionalText,
  PERSONAL_DATA_KEY_FILE_CREATE: onOff('PERSONAL_DATA_KEY_FILE_CREATE'),
  PERSONAL_DATA_KEY_CACHE_SIZE: wholeNumber('PERSONAL_DATA_KEY_CACHE_SIZE', 1, 10_000_000, 10_000),
  PERSONAL_DATA_KEY_CACHE_TTL_MS: wholeNumber('PERSONAL_DATA_KEY_CACHE_TTL_MS', 0, 24 * HOUR_MS, 60_000),
  OUTBOX_RELAY_SHARDS: wholeNumber('OUTBOX_RELAY_SHARDS', 1, 256, 8),
  GROUP_COMMIT_MAX: wholeNumber('GROUP_COMMIT_MAX', 1, 1_000, 64),
  AUTH: z
    .enum(['off', 'jwt', 'dev'], { error: (issue) => `AUTH must be 'off', 'jwt' or 'dev' (got '${issue.input}')` })
    .optional(),
  AUTH_JWKS_URL: optionalText.refine((url) => url === undefined || /^https?:\/\/\S+$/.test(url), {
    message: "AUTH_JWKS_URL must be an http(s) URL such as 'https://id.example.com/.well-known/jwks.json'",
  }),
  AUTH_ISSUER: optionalText,
  AUTH_AUDIENCE: optionalText,
  AUTH_JWT_SECRET: optionalText,
  AUTH_JWT_SECRET_FILE: optionalText,
  AUTH_ALGORITHMS: optionalText,
  AUTH_CLOCK_TOLERANCE_S: wholeNumber('AUTH_CLOCK_TOLERANCE_S', 0, 300, 30),
  AUTH_ROLES_CLAIM: z.string().trim().min(1, 'AUTH_ROLES_CLAIM must not be empty').default('roles'),
  /** Read by `npm run orderflow -- audit --url` (src/audit/cli.ts), not by the server: listed so it is known. */
  ORDERFLOW_TOKEN: optionalText,
  RATE_LIMIT: onOff('RATE_LIMIT'),
  RATE_LIMIT_WINDOW_MS: wholeNumber('RATE_LIMIT_WINDOW_MS', 1000, 24 * HOUR_MS, 60_000),
  RATE_LIMIT_PER_CLIENT: wholeNumber('RATE_LIMIT_PER_CLIENT', 1, 1_000_000, 600),
  RATE_LIMIT_PER_IP: wholeNumber('RATE_LIMIT_PER_IP', 1, 1_000_000, 1200),
  RATE_LIMIT_STORE: z
    .enum(['memory', 'database'], {
      error: (issue) => `RATE_LIMIT_STORE must be 'memory' or 'database' (got '${issue.input}')`,
    })
    .optional(),
  TRUST_PROXY: optionalText.transform((raw, ctx) => {
    if (raw === undefined || raw === 'false') return false
    if (raw === 'true') return true
    if (/^\d+$/.test(raw)) return Number(raw)
    const addresses = raw.split(',').map((a) => a.trim())
    if (addresses.every((a) => /^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(a))) return addresses
    ctx.addIssue({
      code: 'custom',
      message: `TRUST_PROXY must be 'true', 'false', the number of proxies in front, or a comma-separated list of proxy addresses or CIDRs such as 10.0.0.0/8 (got '${raw}')`,
    })
    return z.NEVER
  }),
  KAFKA_SASL_MECHANISM: z
    .enum(['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'], {
      error: (issue) =>
        `KAFKA_SASL_MECHANISM must be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512' (got '${issue.input}')`,
    })
    .optional(),
  KAFKA_SASL_USERNAME: optionalText,
  KAFKA_SASL_PASSWORD: z.string().optional(),
  KAFKA_SASL_PASSWORD_FILE: optionalText,
  KAFKA_TLS: onOff('KAFKA_TLS'),
  KAFKA_TLS_CA_FILE: optionalText,
  KAFKA_TLS_CERT_FILE: optionalText,
  KAFKA_TLS_KEY_FILE: optionalText,
  // OpenTelemetry (tracing.ts): the standard variables, off unless an exporter is configured.
  OTEL_SDK_DISABLED: otelBoolean('OTEL_SDK_DISABLED'),
  OTEL_TRACES_EXPORTER: z
    .enum(['otlp', 'console', 'none'], {
      error: (issue) => `OTEL_TRACES_EXPORTER must be 'otlp', 'console' or 'none' (got '${issue.input}')`,
    })
    .optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl('OTEL_EXPORTER_OTLP_ENDPOINT', 'http://otel-collector:4318'),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl(
    'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
    'http://otel-collector:4318/v1/traces',
  ),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol('OTEL_EXPORTER_OTLP_PROTOCOL'),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'),
  OTEL_EXPORTER_OTLP_HEADERS: keyValueList('OTEL_EXPORTER_OTLP_HEADERS'),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: keyValueList('OTEL_EXPORTER_OTLP_TRACES_HEADERS'),
  OTEL_SERVICE_NAME: optionalText,
  OTEL_RESOURCE_ATTRIBUTES: keyValueList('OTEL_RESOURCE_ATTRIBUTES'),
  OTEL_TRACES_SAMPLER: z
    .enum(SAMPLER_NAMES, {
      error: (issue) => `OTEL_TRACES_SAMPLER must be one of ${SAMPLER_NAMES.join(', ')} (got '${issue.input}')`,
    })
    .optional(),
  OTEL_TRACES_SAMPLER_ARG: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined
      const value = Number(raw)
      if (!Number.isFinite(value) || value < 0 || value > 1) {
        ctx.addIssue({
          code: 'custom',
          message: `OTEL_TRACES_SAMPLER_ARG must be a sampling ratio from 0 to 1 (got '${raw}')`,
        })
        return z.NEVER
      }
      return value
    }),
  OTEL_PROPAGATORS: z
    .string()
    .optional()
    .refine(
      (raw) =>
        raw === undefined ||
        raw
          .split(',')
          .map((p) => p.trim())
          .every((p) => ['tracecontext', 'baggage', ''].includes(p)),
      { message: "OTEL_PROPAGATORS: orderflow propagates W3C 'tracecontext' (and 'baggage') only" },
    ),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: (issue) =>
        `LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got '${issue.input}')`,
    })
    .default('info'),
})

/**
 * What the README's configuration table says of each platform variable, in its order
 * (`npm run docs:config`); the type makes every variable of the schema documented.
 */
export const platformVariables: { readonly [Name in keyof typeof environmentSchema.shape]: VariableDoc } = {
  PORT: { default: '`3000`', meaning: 'HTTP port' },
  HOST: { default: '`127.0.0.1`', meaning: 'HTTP listen address; beyond loopback, authentication must be configured' },
  HTTP_MAX_IN_FLIGHT: {
    default: '`1000`',
    meaning:
      'requests handled at once; past it, new ones are answered 503 `OVERLOADED` with `Retry-After` at once, unhandled (probes and `/metrics` never are); `0` never sheds',
  },
  SERVICES: { default: '`all`', meaning: 'comma-separated service modules this process runs (`order`, …; see below)' },
  KAFKA_BROKERS: { default: '(empty)', meaning: 'comma-separated `host:port`; set, it selects the Kafka transport' },
  TRANSPORT: { default: '`kafka` if `KAFKA_BROKERS` is set, else `embedded`', meaning: 'force a transport' },
  KAFKA_CLIENT_ID: { default: '`orderflow`', meaning: 'client id prefix' },
  KAFKA_TOPIC_PREFIX: {
    default: '(empty)',
    meaning: 'prepended to every topic and consumer group (several deployments on one cluster)',
  },
  KAFKA_REQUIRED_ACKS: { default: '`all`', meaning: '`all` (idempotent producer), `1` or `0`' },
  KAFKA_RETRY_MAX: {
    default: '`3`',
    meaning: 'retries of a failed handler (and of a failed publish) before the dead-letter topic',
  },
  KAFKA_RETRY_BACKOFF_MS: { default: '`1000`', meaning: 'first retry delay; doubles each retry (1 s, 2 s, 4 s)' },
  KAFKA_PARTITIONS: { default: '`3`', meaning: 'partitions of the topics orderflow creates' },
  KAFKA_REPLICATION_FACTOR: { default: '`1`', meaning: 'replication factor of the topics orderflow creates' },
  KAFKA_TOPIC_RETENTION_MS: {
    default: '(unmanaged)',
    meaning: "topics' `retention.ms` that `orderflow topics apply` sets (`-1`: kept forever)",
  },
  KAFKA_MIN_INSYNC_REPLICAS: {
    default: '(unmanaged)',
    meaning: "topics' `min.insync.replicas` that `orderflow topics apply` sets (at most the replication factor)",
  },
  KAFKA_CREATE_TOPICS: {
    default: '`off`',
    meaning:
      '`on` lets a process create the topics it uses when missing; off, a missing topic holds its consumers and publishes (retried, named in the log) until `orderflow topics apply` creates it. The embedded log always creates them',
  },
  KAFKA_SASL_MECHANISM: { default: '—', meaning: '`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`' },
  KAFKA_SASL_USERNAME: { default: '—', meaning: "SASL user: the process's one principal (see its ACLs below)" },
  KAFKA_SASL_PASSWORD: { default: '—', meaning: 'SASL password' },
  KAFKA_SASL_PASSWORD_FILE: { default: '—', meaning: 'a file holding the SASL password, instead of the variable' },
  KAFKA_TLS: { default: 'off (on when a file is given)', meaning: 'TLS to the brokers' },
  KAFKA_TLS_CA_FILE: { default: '—', meaning: "PEM of the brokers' certificate authority" },
  KAFKA_TLS_CERT_FILE: { default: '—', meaning: "PEM of the client's certificate (with `KAFKA_TLS_KEY_FILE`)" },
  KAFKA_TLS_KEY_FILE: { default: '—', meaning: "PEM of the client certificate's key" },
  DATABASE_URL: { default: '(empty)', meaning: '`postgres://…`; set, it selects PostgreSQL instead of PGlite' },
  DATA_DIR: { default: '`.orderflow/data`', meaning: "PGlite's directory on the embedded default" },
  SHUTDOWN_TIMEOUT_MS: {
    default: '`10000`',
    meaning: 'how long a graceful stop may take before the process exits with code 1',
  },
  SHUTDOWN_DRAIN_MS: {
    default: '`0`',
    meaning:
      "on SIGTERM, how long readiness answers 503 while the process still serves, before it closes its listener: longer than the load balancer's probe period × failure threshold",
  },
  LOG_RETENTION_MS: {
    default: '`604800000` (7 days)',
    meaning: "embedded log: messages older than this are deleted (Kafka's `retention.ms`); 0 keeps all",
  },
  LOG_RETENTION_BYTES: {
    default: '`0` (no limit)',
    meaning: 'embedded log: per partition, the oldest messages beyond this size are deleted',
  },
  IDEMPOTENCY_KEY_TTL_MS: {
    default: '`86400000` (24 h)',
    meaning: 'how long an `Idempotency-Key` answers with its first response',
  },
  INBOX_RETENTION_MS: {
    default: '`604800000` (7 days)',
    meaning: 'how long consumers remember handled message ids (redelivery protection)',
  },
  CONSUMER_BATCH_MAX: {
    default: '`50`',
    meaning: "most messages of a partition's backlog handled in one transaction (`1`: one at a time)",
  },
  GROUP_COMMIT_MAX: {
    default: '`64`',
    meaning: 'most HTTP commands sharing one transaction while others commit (`1`: each its own)',
  },
  OUTBOX_RELAY_SHARDS: {
    default: '`8`',
    meaning: 'shards of the outbox relay (1–256): most processes publishing side by side; same for all',
  },
  SCHEDULER_POLL_INTERVAL_MS: {
    default: '`1000`',
    meaning: 'how often durable timers (saga timeouts, due deliveries) are looked for besides local wake-ups',
  },
  PERSONAL_DATA_KEY_FILE: {
    default: '`personal-data.key` beside `DATA_DIR`',
    meaning: "the key-encryption key that wraps customers' data keys (created at first start, mode 0600)",
  },
  PERSONAL_DATA_KEY_FILE_CREATE: {
    default: '`on`',
    meaning: '`off` refuses to start without the key file instead of creating one',
  },
  PERSONAL_DATA_KEY_CACHE_SIZE: { default: '`10000`', meaning: 'opened data keys kept in memory, at most' },
  PERSONAL_DATA_KEY_CACHE_TTL_MS: {
    default: '`60000`',
    meaning: "how long an opened data key is kept (another process's erasure is seen within it)",
  },
  AUTH: { default: 'decided', meaning: '`off`, `jwt` (implied by the keys below) or `dev`' },
  AUTH_JWKS_URL: { default: '—', meaning: "the identity provider's keys (with `AUTH_ISSUER` and `AUTH_AUDIENCE`)" },
  AUTH_ISSUER: { default: '—', meaning: 'the `iss` tokens must carry (required with a JWKS)' },
  AUTH_AUDIENCE: { default: '—', meaning: 'the `aud` tokens must carry (required with a JWKS)' },
  AUTH_JWT_SECRET: { default: '—', meaning: 'shared secret (32 bytes or more) instead of a JWKS' },
  AUTH_JWT_SECRET_FILE: { default: '—', meaning: 'a file holding the shared secret, instead of the variable' },
  AUTH_ALGORITHMS: { default: '`RS256,ES256` / `HS256`', meaning: 'accepted `alg` values, nothing else' },
  AUTH_CLOCK_TOLERANCE_S: { default: '`30`', meaning: 'clock skew allowed for `exp` and `nbf`' },
  AUTH_ROLES_CLAIM: { default: '`roles`', meaning: 'the claim that holds the roles' },
  ORDERFLOW_TOKEN: { default: '—', meaning: 'the bearer token the CLIs send with `--url`' },
  RATE_LIMIT: { default: 'on when auth is on', meaning: '`on`/`off`; 429 problem+json with `Retry-After`' },
  RATE_LIMIT_WINDOW_MS: { default: '`60000`', meaning: 'the window the limits count in' },
  RATE_LIMIT_PER_CLIENT: { default: '`600`', meaning: 'requests per window per token subject' },
  RATE_LIMIT_PER_IP: { default: '`1200`', meaning: 'requests per window per address' },
  RATE_LIMIT_STORE: {
    default: '`database` on PostgreSQL, else `memory`',
    meaning: '`database` (one budget for every process) or `memory` (per process)',
  },
  TRUST_PROXY: {
    default: '`false`',
    meaning: '`true`, a hop count, or proxy addresses/CIDRs whose `X-Forwarded-For` counts',
  },
  OTEL_SDK_DISABLED: { default: '`false`', meaning: '`true` turns tracing off whatever else is set' },
  OTEL_TRACES_EXPORTER: { default: '`otlp` once an endpoint is set', meaning: '`otlp`, `console` or `none`' },
  OTEL_EXPORTER_OTLP_ENDPOINT: { default: '—', meaning: "the collector's base URL (traces go to its `/v1/traces`)" },
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: { default: '—', meaning: 'the full URL traces are sent to' },
  OTEL_EXPORTER_OTLP_PROTOCOL: { default: '`http/json`', meaning: '`http/json` or `http/protobuf` (not `grpc`)' },
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: { default: '—', meaning: 'the same, for traces only' },
  OTEL_EXPORTER_OTLP_HEADERS: { default: '—', meaning: 'headers sent to the collector, `key=value,…` URL-encoded' },
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: { default: '—', meaning: 'the same, for traces only' },
  OTEL_SERVICE_NAME: { default: '`orderflow`', meaning: "the spans' `service.name`" },
  OTEL_RESOURCE_ATTRIBUTES: { default: '—', meaning: '`deployment.environment=…,service.version=…`' },
  OTEL_TRACES_SAMPLER: { default: '`parentbased_always_on`', meaning: "the OpenTelemetry specification's samplers" },
  OTEL_TRACES_SAMPLER_ARG: { default: '`1`', meaning: 'the ratio of the `traceidratio` samplers, from 0 to 1' },
  OTEL_PROPAGATORS: { default: '`tracecontext`', meaning: 'W3C `tracecontext` (and `baggage`) only' },
  LOG_LEVEL: { default: '`info`', meaning: '`fatal` … `trace`, `silent`' },
}

export type RequiredAcks = 'all' | '1' | '0'

/** How bearer JWTs are verified (`AUTH_*`). */
export interface JwtSettings {
  keys: { kind: 'jwks'; url: string } | { kind: 'secret'; secret: string }
  algorithms: string[]
  issuer: string | undefined
  audience: string | undefined
  clockToleranceSeconds: number
  rolesClaim: string
}

export type AuthMode = 'off' | 'jwt' | 'dev'

/** SASL and TLS towards the Kafka brokers (`KAFKA_SASL_*`, `KAFKA_TLS_*`). */
export interface KafkaSecurity {
  sasl?: { mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512'; username: string; password: string }
  /** TLS on; PEM contents (not paths) of the CA and of the client's certificate and key, when given. */
  tls?: { ca?: string; cert?: string; key?: string }
}

export interface Config {
  /**
   * The variables this configuration was read from: the modules read their own slices of it
   * (platform/settings.ts), validated with the rest at start-up.
   */
  environment: RawEnvironment
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
    /** Topics' `retention.ms` that `topics apply` sets (-1: kept forever); undefined leaves it alone. */
    topicRetentionMs: number | undefined
    /** Topics' `min.insync.replicas` that `topics apply` sets; undefined leaves it alone. */
    minInsyncReplicas: number | undefined
    /** Whether a process creates a missing topic it uses (KAFKA_CREATE_TOPICS); else `topics apply` does. */
    createTopics: boolean
    security: KafkaSecurity
  }
  database: { kind: 'pglite'; dataDir: string } | { kind: 'postgres'; url: string }
  http: {
    port: number
    host: string
    /**
     * Which proxies' `X-Forwarded-For` to believe for the client's address (Fastify's trustProxy):
     * false (the default: the peer is the client), true (any), a hop count, or their addresses.
     * Rate limits per address need it behind a load balancer, else every client is the balancer.
     */
    trustProxy: boolean | number | string[]
    /** Requests handled at once before new ones are shed with 503 OVERLOADED; 0 never sheds. */
    maxInFlight: number
  }
  logLevel: string
  /** The service modules this process runs, by name; `undefined` means every module. */
  services: string[] | undefined
  /** How long a graceful shutdown may take before the process exits with a failure. */
  shutdownTimeoutMs: number
  /** On SIGTERM, how long readiness is 503 while the process still serves, before it closes. */
  shutdownDrainMs: number
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
  /** How often durable timers (saga timeouts, due deliveries) are looked for besides local wake-ups. */
  schedulerPollIntervalMs: number
  /** The most messages of a partition's backlog a consumer handles in one transaction (1: one at a time). */
  consumerBatchMax: number
  /**
   * Personal fields are sealed with per-customer data keys, wrapped by the key-encryption key in
   * `keyFile` (created at first start when `createKeyFile`); see platform/personal-data.
   */
  personalData: { keyFile: string; createKeyFile: boolean; cacheSize: number; cacheTtlMs: number }
  /**
   * Shards of the outbox relay's lease: at most this many processes publish side by side, each
   * key's messages in order. One value for every process of a database (a different one refuses to start).
   */
  outboxRelayShards: number
  /**
   * The most HTTP commands that share one transaction when they arrive while others are committing
   * (1: each its own). A command that arrives when nothing is in flight starts at once.
   */
  groupCommitMax: number
  auth: {
    /** `AUTH` as given; undefined lets `accessPolicy` decide from the rest of the configuration. */
    mode: AuthMode | undefined
    /** Set when AUTH_JWKS_URL or AUTH_JWT_SECRET(_FILE) is. */
    jwt: JwtSettings | undefined
  }
  /**
   * OpenTelemetry traces; undefined (off) unless an exporter is configured
   * (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER) and
   * OTEL_SDK_DISABLED is not true.
   */
  tracing: TracingSettings | undefined
  rateLimit: {
    /** `RATE_LIMIT` as given; undefined means on exactly when authentication is on. */
    enabled: boolean | undefined
    windowMs: number
    perClient: number
    perIp: number
    /**
     * Where the counters are: `database` (shared by every process of the deployment, the default on
     * PostgreSQL) or `memory` (per process, the default on the embedded database).
     */
    store: 'memory' | 'database'
  }
}

export function loadConfig(env: RawEnvironment = process.env): Config {
  const parsed = environmentSchema.safeParse(env)
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => issue.message))
  }
  const e = parsed.data
  const transport = e.TRANSPORT ?? (e.KAFKA_BROKERS.length > 0 ? 'kafka' : 'embedded')
  if (transport === 'kafka' && e.KAFKA_BROKERS.length === 0) {
    throw new ConfigError(["TRANSPORT is 'kafka' but KAFKA_BROKERS is empty: set KAFKA_BROKERS=host:port[,host:port]"])
  }
  const problems: string[] = []
  if (e.SHUTDOWN_DRAIN_MS >= e.SHUTDOWN_TIMEOUT_MS) {
    problems.push(
      `SHUTDOWN_DRAIN_MS (${e.SHUTDOWN_DRAIN_MS}) must be shorter than SHUTDOWN_TIMEOUT_MS (${e.SHUTDOWN_TIMEOUT_MS}), which bounds the whole stop, drain included`,
    )
  }
  if (e.KAFKA_MIN_INSYNC_REPLICAS !== undefined && e.KAFKA_MIN_INSYNC_REPLICAS > e.KAFKA_REPLICATION_FACTOR) {
    problems.push(
      `KAFKA_MIN_INSYNC_REPLICAS (${e.KAFKA_MIN_INSYNC_REPLICAS}) must not exceed KAFKA_REPLICATION_FACTOR (${e.KAFKA_REPLICATION_FACTOR}): no partition could have that many replicas in sync, so every write with acks=all would fail`,
    )
  }
  const jwt = jwtSettings(e, problems)
  const security = kafkaSecurity(e, problems)
  if (problems.length > 0) throw new ConfigError(problems)
  return {
    environment: { ...env },
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
      topicRetentionMs: e.KAFKA_TOPIC_RETENTION_MS,
      minInsyncReplicas: e.KAFKA_MIN_INSYNC_REPLICAS,
      createTopics: e.KAFKA_CREATE_TOPICS ?? false,
      security,
    },
    database: e.DATABASE_URL ? { kind: 'postgres', url: e.DATABASE_URL } : { kind: 'pglite', dataDir: e.DATA_DIR },
    http: { port: e.PORT, host: e.HOST, trustProxy: e.TRUST_PROXY, maxInFlight: e.HTTP_MAX_IN_FLIGHT },
    logLevel: e.LOG_LEVEL,
    services: parseServiceList(e.SERVICES),
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    shutdownDrainMs: e.SHUTDOWN_DRAIN_MS,
    retention: {
      logMs: e.LOG_RETENTION_MS,
      logBytes: e.LOG_RETENTION_BYTES,
      idempotencyKeyMs: e.IDEMPOTENCY_KEY_TTL_MS,
      inboxMs: e.INBOX_RETENTION_MS,
    },
    schedulerPollIntervalMs: e.SCHEDULER_POLL_INTERVAL_MS,
    consumerBatchMax: e.CONSUMER_BATCH_MAX,
    personalData: {
      // Beside the embedded database's directory, not in it: a copy of the data is not a copy of the key.
      keyFile: e.PERSONAL_DATA_KEY_FILE ?? join(dirname(resolve(e.DATA_DIR)), 'personal-data.key'),
      createKeyFile: e.PERSONAL_DATA_KEY_FILE_CREATE ?? true,
      cacheSize: e.PERSONAL_DATA_KEY_CACHE_SIZE,
      cacheTtlMs: e.PERSONAL_DATA_KEY_CACHE_TTL_MS,
    },
    outboxRelayShards: e.OUTBOX_RELAY_SHARDS,
    groupCommitMax: e.GROUP_COMMIT_MAX,
    auth: { mode: e.AUTH, jwt },
    tracing: tracingSettings(e),
    rateLimit: {
      enabled: e.RATE_LIMIT,
      windowMs: e.RATE_LIMIT_WINDOW_MS,
      perClient: e.RATE_LIMIT_PER_CLIENT,
      perIp: e.RATE_LIMIT_PER_IP,
      store: e.RATE_LIMIT_STORE ?? (e.DATABASE_URL ? 'database' : 'memory'),
    },
  }
}

type Environment = z.output<typeof environmentSchema>

/** A secret from VAR or VAR_FILE (the container convention: the file holds the secret). */
function secretFrom(name: string, value: string | undefined, file: string | undefined, problems: string[]) {
  if (value !== undefined && value !== '' && file !== undefined) {
    problems.push(`set ${name} or ${name}_FILE, not both`)
    return undefined
  }
  if (file === undefined) return value === '' ? undefined : value
  return readPem(`${name}_FILE`, file, problems)?.replace(/\r?\n$/, '')
}

function readPem(name: string, path: string, problems: string[]): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    problems.push(`${name} cannot be read ('${path}': ${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`)
    return undefined
  }
}

const JWKS_ALGORITHMS = /^(RS|PS|ES)(256|384|512)$|^EdDSA$|^Ed25519$/
const SECRET_ALGORITHMS = /^HS(256|384|512)$/
/** HS256 needs a key at least as long as its hash (RFC 7518 §3.2). */
const MIN_SECRET_BYTES = 32

function jwtSettings(e: Environment, problems: string[]): JwtSettings | undefined {
  const secret = secretFrom('AUTH_JWT_SECRET', e.AUTH_JWT_SECRET, e.AUTH_JWT_SECRET_FILE, problems)
  const url = e.AUTH_JWKS_URL
  if (url === undefined && secret === undefined) {
    if (e.AUTH === 'jwt') {
      problems.push(
        'AUTH is jwt but no key is configured: set AUTH_JWKS_URL (with AUTH_ISSUER and AUTH_AUDIENCE) or AUTH_JWT_SECRET (or AUTH_JWT_SECRET_FILE)',
      )
    }
    return undefined
  }
  if (e.AUTH === 'dev') {
    problems.push('AUTH=dev signs with a generated key: unset AUTH_JWKS_URL and AUTH_JWT_SECRET, or set AUTH=jwt')
    return undefined
  }
  if (url !== undefined && secret !== undefined) {
    problems.push('set AUTH_JWKS_URL or AUTH_JWT_SECRET, not both')
    return undefined
  }
  const fromJwks = url !== undefined
  const algorithms = (e.AUTH_ALGORITHMS ?? (fromJwks ? 'RS256,ES256' : 'HS256'))
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '')
  const allowed = fromJwks ? JWKS_ALGORITHMS : SECRET_ALGORITHMS
  const refused = algorithms.filter((a) => !allowed.test(a))
  if (algorithms.length === 0 || refused.length > 0) {
    problems.push(
      `AUTH_ALGORITHMS must list ${fromJwks ? 'RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA for a JWKS' : 'HS256, HS384 or HS512 for a shared secret'} (got '${e.AUTH_ALGORITHMS}')`,
    )
  }
  if (fromJwks && (e.AUTH_ISSUER === undefined || e.AUTH_AUDIENCE === undefined)) {
    problems.push(
      'AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE: tokens of other issuers or audiences must not pass',
    )
  }
  if (secret !== undefined && Buffer.byteLength(secret) < MIN_SECRET_BYTES) {
    problems.push(`AUTH_JWT_SECRET must be at least ${MIN_SECRET_BYTES} bytes (got ${Buffer.byteLength(secret)})`)
  }
  return {
    keys: fromJwks ? { kind: 'jwks', url } : { kind: 'secret', secret: secret ?? '' },
    algorithms,
    issuer: e.AUTH_ISSUER,
    audience: e.AUTH_AUDIENCE,
    clockToleranceSeconds: e.AUTH_CLOCK_TOLERANCE_S,
    rolesClaim: e.AUTH_ROLES_CLAIM,
  }
}

/** Tracing is on once an exporter is named, by an endpoint or OTEL_TRACES_EXPORTER, and not disabled. */
function tracingSettings(e: Environment): TracingSettings | undefined {
  if (e.OTEL_SDK_DISABLED === true || e.OTEL_TRACES_EXPORTER === 'none') return undefined
  const endpoint = e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? signalUrl(e.OTEL_EXPORTER_OTLP_ENDPOINT)
  if (endpoint === undefined && e.OTEL_TRACES_EXPORTER === undefined) return undefined
  const { 'service.name': fromAttributes, ...resourceAttributes } = e.OTEL_RESOURCE_ATTRIBUTES
  const ratio = e.OTEL_TRACES_SAMPLER_ARG ?? 1
  return {
    serviceName: e.OTEL_SERVICE_NAME ?? fromAttributes ?? 'orderflow',
    resourceAttributes,
    exporter:
      e.OTEL_TRACES_EXPORTER === 'console'
        ? { kind: 'console' }
        : {
            kind: 'otlp',
            // The specification's default: a collector on this machine.
            url: endpoint ?? 'http://localhost:4318/v1/traces',
            headers: { ...e.OTEL_EXPORTER_OTLP_HEADERS, ...e.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
          },
    sampler: { kind: e.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on', ratio },
  }
}

/** OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL: traces go to its `v1/traces`. */
function signalUrl(base: string | undefined): string | undefined {
  return base === undefined ? undefined : `${base.replace(/\/+$/, '')}/v1/traces`
}

function kafkaSecurity(e: Environment, problems: string[]): KafkaSecurity {
  const security: KafkaSecurity = {}
  const password = secretFrom('KAFKA_SASL_PASSWORD', e.KAFKA_SASL_PASSWORD, e.KAFKA_SASL_PASSWORD_FILE, problems)
  if (e.KAFKA_SASL_MECHANISM !== undefined) {
    if (e.KAFKA_SASL_USERNAME === undefined || password === undefined) {
      problems.push(
        `KAFKA_SASL_MECHANISM is ${e.KAFKA_SASL_MECHANISM}: set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)`,
      )
    } else {
      security.sasl = { mechanism: e.KAFKA_SASL_MECHANISM, username: e.KAFKA_SASL_USERNAME, password }
    }
  } else if (e.KAFKA_SASL_USERNAME !== undefined || password !== undefined) {
    problems.push(
      'KAFKA_SASL_USERNAME/PASSWORD are set without KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)',
    )
  }
  const files = { ca: e.KAFKA_TLS_CA_FILE, cert: e.KAFKA_TLS_CERT_FILE, key: e.KAFKA_TLS_KEY_FILE }
  const anyFile = Object.values(files).some((f) => f !== undefined)
  if (e.KAFKA_TLS === false && anyFile) {
    problems.push('KAFKA_TLS is off but KAFKA_TLS_*_FILE is set')
  } else if (e.KAFKA_TLS === true || anyFile) {
    if ((files.cert === undefined) !== (files.key === undefined)) {
      problems.push('KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together (a client certificate and its key)')
    }
    const tls: NonNullable<KafkaSecurity['tls']> = {}
    for (const [part, path] of Object.entries(files) as [keyof typeof files, string | undefined][]) {
      if (path === undefined) continue
      const pem = readPem(`KAFKA_TLS_${part.toUpperCase()}_FILE`, path, problems)
      if (pem !== undefined) tls[part] = pem
    }
    security.tls = tls
  }
  return security
}

const LOOPBACK_HOSTS = /^(localhost|127(?:\.\d{1,3}){3}|::1|\[::1\])$/i

/** Whether `host` is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTS.test(host.trim())
}

/** How this process authenticates, decided from the configuration by `accessPolicy`. */
export interface AccessPolicy {
  mode: AuthMode
  /** Why this process counts as exposed (listening beyond loopback, a shared database or broker); empty on the laptop default. */
  exposure: string[]
  /** AUTH=off was given although the process is exposed. */
  explicitlyOpen: boolean
}

/**
 * Secure where it matters: a process that listens beyond loopback, or shares a PostgreSQL or a
 * Kafka with others, needs authentication configured, or AUTH=off said on purpose. The embedded
 * default on loopback may run without it, so that the quick start is two commands.
 */
export function accessPolicy(config: Config): AccessPolicy {
  const exposure = [
    ...(isLoopback(config.http.host) ? [] : [`HOST=${config.http.host} listens beyond loopback`]),
    ...(config.database.kind === 'postgres' ? ['DATABASE_URL is set'] : []),
    ...(config.transport === 'kafka' ? ['KAFKA_BROKERS is set'] : []),
  ]
  const mode = config.auth.mode ?? (config.auth.jwt ? 'jwt' : 'off')
  if (config.auth.mode === undefined && mode === 'off' && exposure.length > 0) {
    throw new ConfigError([
      `authentication is not configured, and this process is not the embedded default on loopback (${exposure.join('; ')}). ` +
        'Set AUTH_JWKS_URL with AUTH_ISSUER and AUTH_AUDIENCE, or AUTH_JWT_SECRET (or AUTH_JWT_SECRET_FILE); ' +
        'or AUTH=dev for development tokens on loopback; or AUTH=off to run without authentication on purpose',
    ])
  }
  if (mode === 'dev' && !isLoopback(config.http.host)) {
    throw new ConfigError([
      `AUTH=dev prints its tokens and signs with a throwaway key: it is for a process on loopback, not HOST=${config.http.host}. Configure AUTH_JWKS_URL or AUTH_JWT_SECRET instead`,
    ])
  }
  return { mode, exposure, explicitlyOpen: mode === 'off' && exposure.length > 0 }
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

/**
 * Every variable the platform reads: the configuration above, and the few read elsewhere (the
 * CLIs' URL, the Kafka launcher's heap). The services' own are in their settings slices
 * (`src/settings.ts` lists them all). A variable with one
 * of orderflow's prefixes that is not here is probably misspelled (`unknownVariableWarnings`).
 */
export const knownVariables: readonly string[] = [
  ...Object.keys(environmentSchema.shape),
  'ORDERFLOW_TOKEN',
  'ORDERFLOW_URL',
  'KAFKA_HEAP_OPTS',
  // Seed 003's coffee app (src/coffee/config.ts) reads these as the seed named them.
  'KAFKA_TOPIC',
  'KAFKA_GROUP_ID',
  // `npm run kafka:start`'s ports (scripts/kafka.ts).
  'KAFKA_PORT',
  'KAFKA_CONTROLLER_PORT',
  // OpenTelemetry variables the SDK reads itself (its batching, the exporter's timeout and compression).
  'OTEL_BSP_SCHEDULE_DELAY',
  'OTEL_BSP_EXPORT_TIMEOUT',
  'OTEL_BSP_MAX_QUEUE_SIZE',
  'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
  'OTEL_EXPORTER_OTLP_TIMEOUT',
  'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT',
  'OTEL_EXPORTER_OTLP_COMPRESSION',
  'OTEL_EXPORTER_OTLP_TRACES_COMPRESSION',
  'OTEL_LOG_LEVEL',
  'OTEL_FASTIFY_IGNORE_PATHS',
]
