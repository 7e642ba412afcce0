import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CoffeeConfigError, loadCoffeeConfig } from './config.ts'

describe("the coffee app's configuration", () => {
  it("has seed 003's defaults", () => {
    const config = loadCoffeeConfig({})
    assert.deepEqual(config.brokers, ['localhost:9092'])
    assert.equal(config.topic, 'coffee_orders')
    assert.equal(config.retryMax, 5)
    assert.equal(config.requiredAcks, 'all')
  })

  it('reads KAFKA_* variables', () => {
    const config = loadCoffeeConfig({
      KAFKA_BROKERS: 'k1:9092, k2:9093',
      KAFKA_TOPIC: 'espresso',
      KAFKA_RETRY_MAX: '2',
      KAFKA_REQUIRED_ACKS: '1',
    })
    assert.deepEqual(config.brokers, ['k1:9092', 'k2:9093'])
    assert.equal(config.topic, 'espresso')
    assert.equal(config.retryMax, 2)
    assert.equal(config.requiredAcks, '1')
  })

  it('names every wrong variable', () => {
    assert.throws(
      () =>
        loadCoffeeConfig({
          KAFKA_BROKERS: 'nohost',
          KAFKA_TOPIC: 'bad topic',
          KAFKA_RETRY_MAX: 'many',
          KAFKA_REQUIRED_ACKS: 'some',
        }),
      (error: unknown) => {
        assert.ok(error instanceof CoffeeConfigError)
        for (const name of ['KAFKA_BROKERS', 'KAFKA_TOPIC', 'KAFKA_RETRY_MAX', 'KAFKA_REQUIRED_ACKS']) {
          assert.ok(
            error.problems.some((p) => p.startsWith(name)),
            `${name} is named in: ${error.message}`,
          )
        }
        return true
      },
    )
  })
})
