import { kafkaBrokers, postgresTestDatabase, uniqueName } from '../../test/support/index.ts'
import { createKafkaTransport } from '../platform/transport/kafka.ts'
import { namespaceTransport } from '../platform/transport/namespaced.ts'
import { coffeeSuite } from './coffee.testsuite.ts'

coffeeSuite('Kafka', async () => {
  const database = await postgresTestDatabase('of_coffee')
  const raw = await createKafkaTransport({
    brokers: kafkaBrokers(),
    clientId: uniqueName('coffee'),
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 5,
    retryBackoffMs: 100,
    sessionTimeoutMs: 6_000,
  })
  return {
    db: database.db,
    transport: namespaceTransport(raw, `${uniqueName('coffee')}.`),
    async cleanup() {
      await raw.close()
      await database.cleanup()
    },
  }
})
