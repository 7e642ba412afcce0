import { kafkaBrokers, postgresTestDatabase, uniqueName } from '../../test/support/index.ts'
import { createKafkaTransport } from '../platform/transport/kafka.ts'
import { namespaceTransport } from '../platform/transport/namespaced.ts'
import { seed002Suite } from './seed002.testsuite.ts'

// Kafka and PostgreSQL. The topics and groups carry a prefix of this file's own (the broker is
// shared with other test files); KAFKA_TOPIC_PREFIX tells the app's configuration the same prefix.
seed002Suite('Kafka and PostgreSQL', async () => {
  const database = await postgresTestDatabase('of_seed002')
  const prefix = `${uniqueName('seed002')}.`
  const raw = await createKafkaTransport({
    brokers: kafkaBrokers(),
    clientId: uniqueName('seed002'),
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
    sessionTimeoutMs: 6_000,
  })
  return {
    db: database.db,
    transport: namespaceTransport(raw, prefix),
    env: { KAFKA_BROKERS: kafkaBrokers().join(','), KAFKA_TOPIC_PREFIX: prefix },
    async cleanup() {
      await raw.close()
      await database.cleanup()
    },
  }
})
