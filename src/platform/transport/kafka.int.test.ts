import { kafkaBrokers, uniqueName } from '../../../test/support/index.ts'
import { transportContract } from './contract.ts'
import { createKafkaTransport } from './kafka.ts'
import type { Transport } from './port.ts'

transportContract('kafka', async () => {
  const opened: Transport[] = []
  const clientId = uniqueName('contract')
  return {
    async transport() {
      const transport = await createKafkaTransport({
        brokers: kafkaBrokers(),
        clientId,
        partitions: 3,
        replicationFactor: 1,
        requiredAcks: 'all',
        retries: 3,
        retryBackoffMs: 100,
      })
      opened.push(transport)
      return transport
    },
    async cleanup() {
      await Promise.allSettled(opened.map((t) => t.close()))
    },
  }
})
