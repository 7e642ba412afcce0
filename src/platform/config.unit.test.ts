import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, loadConfig } from './config.ts'

describe('configuration from the environment', () => {
  it('defaults to the embedded transport on PGlite with seed 001 retries and acks=all', () => {
    const config = loadConfig({})
    assert.equal(config.transport, 'embedded')
    assert.deepEqual(config.database, { kind: 'pglite', dataDir: '.orderflow/data' })
    assert.equal(config.kafka.retryMax, 3)
    assert.equal(config.kafka.retryBackoffMs, 1000)
    assert.equal(config.kafka.requiredAcks, 'all')
    assert.equal(config.http.port, 3000)
  })

  it('switches to Kafka and PostgreSQL when KAFKA_BROKERS and DATABASE_URL are set', () => {
    const config = loadConfig({
      KAFKA_BROKERS: 'kafka-1:9092, kafka-2:9092',
      DATABASE_URL: 'postgres://app@db:5432/orders',
    })
    assert.equal(config.transport, 'kafka')
    assert.deepEqual(config.kafka.brokers, ['kafka-1:9092', 'kafka-2:9092'])
    assert.deepEqual(config.database, { kind: 'postgres', url: 'postgres://app@db:5432/orders' })
  })

  it('names every bad variable and what is allowed', () => {
    assert.throws(
      () =>
        loadConfig({
          KAFKA_RETRY_MAX: 'three',
          PORT: '70000',
          KAFKA_REQUIRED_ACKS: 'most',
          KAFKA_BROKERS: 'nohost',
          HTTP_MAX_IN_FLIGHT: '-5',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError)
        const text = error.message
        assert.match(text, /KAFKA_RETRY_MAX must be a whole number from 0 to 20 \(got 'three'\)/)
        assert.match(text, /PORT must be a whole number from 0 to 65535 \(got '70000'\)/)
        assert.match(text, /HTTP_MAX_IN_FLIGHT must be a whole number from 0 to 1000000 \(got '-5'\)/)
        assert.match(text, /KAFKA_REQUIRED_ACKS must be 'all', '1' or '0' \(got 'most'\)/)
        assert.match(text, /KAFKA_BROKERS must be a comma-separated list of host:port/)
        return true
      },
    )
  })

  it('refuses TRANSPORT=kafka without brokers and a DATABASE_URL that is not PostgreSQL', () => {
    assert.throws(() => loadConfig({ TRANSPORT: 'kafka' }), /KAFKA_BROKERS is empty/)
    assert.throws(() => loadConfig({ DATABASE_URL: 'mysql://x' }), /DATABASE_URL must be a PostgreSQL URL/)
  })
})
