import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { accessPolicy, ConfigError, loadConfig } from './config.ts'
import { createLogger } from './logger.ts'

/**
 * Secure where it matters: the access policy a configuration leads to, the AUTH_*, RATE_LIMIT_* and
 * KAFKA_SASL_* and KAFKA_TLS_* variables, and the secrets that never reach a log line.
 */

const SECRET = 'a-development-secret-of-at-least-32-bytes'

function configError(env: Record<string, string>): string {
  try {
    accessPolicy(loadConfig(env))
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error))
    return error.message
  }
  assert.fail(`${JSON.stringify(env)} was accepted`)
}

describe('access policy', () => {
  it('runs without authentication on the embedded default on loopback', () => {
    assert.deepEqual(accessPolicy(loadConfig({})), { mode: 'off', exposure: [], explicitlyOpen: false })
    assert.equal(accessPolicy(loadConfig({ HOST: 'localhost' })).mode, 'off')
    assert.equal(accessPolicy(loadConfig({ HOST: '::1' })).mode, 'off')
  })

  it('refuses to start exposed without authentication, naming why and the variables to set', () => {
    const message = configError({ KAFKA_BROKERS: 'kafka:9092', DATABASE_URL: 'postgres://app@db/orders' })
    assert.match(message, /KAFKA_BROKERS is set/)
    assert.match(message, /DATABASE_URL is set/)
    for (const variable of ['AUTH_JWKS_URL', 'AUTH_ISSUER', 'AUTH_AUDIENCE', 'AUTH_JWT_SECRET', 'AUTH=off']) {
      assert.ok(message.includes(variable), `${variable} in: ${message}`)
    }
    assert.match(configError({ HOST: '0.0.0.0' }), /HOST=0\.0\.0\.0 listens beyond loopback/)
  })

  it('starts exposed with a JWKS or a secret, or with AUTH=off said on purpose', () => {
    const jwks = {
      KAFKA_BROKERS: 'kafka:9092',
      HOST: '0.0.0.0',
      AUTH_JWKS_URL: 'https://id.example.test/.well-known/jwks.json',
      AUTH_ISSUER: 'https://id.example.test/',
      AUTH_AUDIENCE: 'orderflow',
    }
    const policy = accessPolicy(loadConfig(jwks))
    assert.equal(policy.mode, 'jwt')
    assert.equal(policy.explicitlyOpen, false)
    assert.deepEqual(loadConfig(jwks).auth.jwt?.algorithms, ['RS256', 'ES256'])
    assert.equal(accessPolicy(loadConfig({ DATABASE_URL: 'postgres://db/x', AUTH_JWT_SECRET: SECRET })).mode, 'jwt')
    const open = accessPolicy(loadConfig({ DATABASE_URL: 'postgres://db/x', AUTH: 'off' }))
    assert.deepEqual(open, { mode: 'off', exposure: ['DATABASE_URL is set'], explicitlyOpen: true })
  })

  it('keeps AUTH=dev on loopback', () => {
    assert.equal(accessPolicy(loadConfig({ AUTH: 'dev', KAFKA_BROKERS: '127.0.0.1:9092' })).mode, 'dev')
    assert.match(configError({ AUTH: 'dev', HOST: '0.0.0.0' }), /AUTH=dev .* not HOST=0\.0\.0\.0/)
  })

  it('refuses incomplete or unsafe token settings, naming the variables', () => {
    assert.throws(
      () => loadConfig({ AUTH_JWKS_URL: 'https://id.example.test/jwks' }),
      /AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE/,
    )
    assert.throws(() => loadConfig({ AUTH_JWT_SECRET: 'short' }), /AUTH_JWT_SECRET must be at least 32 bytes/)
    assert.throws(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_ALGORITHMS: 'none' }), /AUTH_ALGORITHMS must list/)
    assert.throws(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_ALGORITHMS: 'RS256' }), /HS256, HS384 or HS512/)
    assert.throws(
      () =>
        loadConfig({
          AUTH_JWKS_URL: 'https://id.example.test/jwks',
          AUTH_ISSUER: 'i',
          AUTH_AUDIENCE: 'a',
          AUTH_ALGORITHMS: 'HS256',
        }),
      /AUTH_ALGORITHMS must list RS256/,
    )
    assert.throws(() => loadConfig({ AUTH: 'jwt' }), /AUTH is jwt but no key is configured/)
    assert.throws(() => loadConfig({ AUTH: 'maybe' }), /AUTH must be 'off', 'jwt' or 'dev'/)
  })

  it('reads secrets from _FILE variables', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orderflow-secrets-'))
    writeFileSync(join(dir, 'jwt'), `${SECRET}\n`)
    writeFileSync(join(dir, 'kafka'), 'scram-password\n')
    writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\n')
    const config = loadConfig({
      AUTH_JWT_SECRET_FILE: join(dir, 'jwt'),
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256',
      KAFKA_SASL_USERNAME: 'orderflow',
      KAFKA_SASL_PASSWORD_FILE: join(dir, 'kafka'),
      KAFKA_TLS_CA_FILE: join(dir, 'ca.pem'),
    })
    assert.deepEqual(config.auth.jwt?.keys, { kind: 'secret', secret: SECRET })
    assert.deepEqual(config.kafka.security, {
      sasl: { mechanism: 'SCRAM-SHA-256', username: 'orderflow', password: 'scram-password' },
      tls: { ca: '-----BEGIN CERTIFICATE-----\n' },
    })
    assert.throws(
      () => loadConfig({ AUTH_JWT_SECRET_FILE: join(dir, 'missing') }),
      /AUTH_JWT_SECRET_FILE cannot be read/,
    )
  })

  it('names incomplete Kafka security settings', () => {
    assert.deepEqual(loadConfig({}).kafka.security, {})
    assert.throws(
      () => loadConfig({ KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512', KAFKA_SASL_USERNAME: 'u' }),
      /set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD/,
    )
    assert.throws(() => loadConfig({ KAFKA_SASL_MECHANISM: 'GSSAPI' }), /KAFKA_SASL_MECHANISM must be/)
    assert.throws(() => loadConfig({ KAFKA_SASL_PASSWORD: 'pw' }), /without KAFKA_SASL_MECHANISM/)
    assert.deepEqual(loadConfig({ KAFKA_TLS: 'on' }).kafka.security, { tls: {} })
  })

  it('reads rate limits, on with authentication unless RATE_LIMIT says otherwise', () => {
    assert.deepEqual(loadConfig({}).rateLimit, {
      enabled: undefined,
      windowMs: 60_000,
      perClient: 600,
      perIp: 1200,
      store: 'memory',
    })
    // Shared by every process on PostgreSQL, unless told otherwise.
    const url = 'postgres://app@127.0.0.1:5432/orderflow'
    assert.equal(loadConfig({ DATABASE_URL: url }).rateLimit.store, 'database')
    assert.equal(loadConfig({ DATABASE_URL: url, RATE_LIMIT_STORE: 'memory' }).rateLimit.store, 'memory')
    assert.throws(() => loadConfig({ RATE_LIMIT_STORE: 'redis' }), /RATE_LIMIT_STORE must be 'memory' or 'database'/)
    assert.throws(() => loadConfig({ TRUST_PROXY: 'the load balancer' }), /TRUST_PROXY must be/)
    assert.deepEqual(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.7' }).http.trustProxy, [
      '10.0.0.0/8',
      '192.168.1.7',
    ])
    assert.equal(loadConfig({ TRUST_PROXY: '2' }).http.trustProxy, 2)
    assert.equal(loadConfig({ RATE_LIMIT: 'off' }).rateLimit.enabled, false)
    assert.throws(() => loadConfig({ RATE_LIMIT_PER_CLIENT: '0' }), /RATE_LIMIT_PER_CLIENT must be a whole number/)
  })
})

describe('secrets in logs', () => {
  it('redacts Authorization headers, passwords, secrets and tokens', async () => {
    let written = ''
    const destination = new Writable({
      write(chunk, _encoding, done) {
        written += chunk
        done()
      },
    })
    const logger = createLogger({ level: 'info', destination })
    const config = loadConfig({
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256',
      KAFKA_SASL_USERNAME: 'orderflow',
      KAFKA_SASL_PASSWORD: 'kafka-pass-123',
      AUTH_JWT_SECRET: SECRET,
    })
    logger.info({ req: { headers: { authorization: 'Bearer eyJhbGciOi.secret.sig', cookie: 'sid=1' } } }, 'request')
    logger.info({ kafka: config.kafka }, 'kafka settings')
    logger.info({ auth: config.auth }, 'auth settings')
    logger.info({ password: 'top-level-pass', token: 'raw-token' }, 'flat')
    await new Promise((done) => setImmediate(done))
    for (const secret of ['eyJhbGciOi', 'sid=1', 'kafka-pass-123', SECRET, 'top-level-pass', 'raw-token']) {
      assert.ok(!written.includes(secret), `${secret} leaked: ${written}`)
    }
    assert.match(written, /"authorization":"\[Redacted\]"/)
    assert.match(written, /"username":"orderflow"/)
    assert.equal(written.trim().split('\n').length, 4)
  })
})
