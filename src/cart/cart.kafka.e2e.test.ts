import { kafkaBrokers, postgresTestDatabase, uniqueName } from '../../test/support/index.ts'
import { createKafkaTransport } from '../platform/transport/kafka.ts'
import { namespaceTransport } from '../platform/transport/namespaced.ts'
import { cartSuite } from './cart.testsuite.ts'

cartSuite('Kafka and PostgreSQL', async () => {
  const database = await postgresTestDatabase('of_cart')
  const raw = await createKafkaTransport({
    brokers: kafkaBrokers(),
    clientId: uniqueName('cart'),
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
    sessionTimeoutMs: 6_000,
  })
  return {
    db: database.db,
    transport: namespaceTransport(raw, `${uniqueName('cart')}.`),
    async cleanup() {
      await raw.close()
      await database.cleanup()
    },
  }
})
