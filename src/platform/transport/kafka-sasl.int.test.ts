import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { BROKER_SASL_MECHANISM, type Broker, startBroker } from '../../../scripts/kafka.ts'
import { uniqueName } from '../../../test/support/index.ts'
import { type KafkaSecurity, loadConfig } from '../config.ts'
import { transportContract } from './contract.ts'
import { createKafkaTransport } from './kafka.ts'
import type { Transport } from './port.ts'

/**
 * Kafka with authentication: a broker of this test's own whose only client listener is
 * SASL_PLAINTEXT with SCRAM-SHA-256. The transport contract runs through it with the credentials
 * from KAFKA_SASL_* as `loadConfig` reads them; without credentials, or with a wrong password, the
 * broker does not answer.
 */

const credentials = { username: 'orderflow', password: randomBytes(12).toString('hex') }

// One broker for the file: the contract's setup and the refusals below share it.
let starting: Promise<Broker> | undefined
const broker = () => {
  starting ??= startBroker({ sasl: credentials })
  return starting
}
after(async () => {
  if (starting) await (await starting).stop()
})

const securityFor = (password: string): KafkaSecurity =>
  loadConfig({
    KAFKA_SASL_MECHANISM: BROKER_SASL_MECHANISM,
    KAFKA_SASL_USERNAME: credentials.username,
    KAFKA_SASL_PASSWORD: password,
  }).kafka.security

async function transportOn(brokers: string, security: KafkaSecurity | undefined, clientId: string): Promise<Transport> {
  return createKafkaTransport({
    brokers: [brokers],
    clientId,
    partitions: 3,
    replicationFactor: 1,
    requiredAcks: 'all',
    retries: 3,
    retryBackoffMs: 100,
    ...(security ? { security } : {}),
  })
}

transportContract('kafka over SASL_PLAINTEXT with SCRAM-SHA-256', async () => {
  const { brokers } = await broker()
  const opened: Transport[] = []
  const clientId = uniqueName('contract_sasl')
  return {
    async transport() {
      const transport = await transportOn(brokers, securityFor(credentials.password), clientId)
      opened.push(transport)
      return transport
    },
    async cleanup() {
      await Promise.allSettled(opened.map((t) => t.close()))
    },
  }
})

describe('a SASL listener refuses clients that do not authenticate', () => {
  let brokers: string
  before(async () => {
    brokers = (await broker()).brokers
  })

  for (const [name, security] of [
    ['no credentials', undefined],
    ['a wrong password', securityFor('not-the-password')],
  ] as const) {
    it(`refuses a client with ${name}`, async (t) => {
      const transport = await transportOn(brokers, security, uniqueName('sasl_refused'))
      t.after(() => transport.close())
      await assert.rejects(transport.ping(), `a client with ${name} reached the broker`)
      await assert.rejects(
        transport.publish([{ topic: uniqueName('sasl_refused'), key: 'k', value: 'v', headers: {} }]),
        `a client with ${name} published`,
      )
    })
  }

  it('lets the right credentials through', async (t) => {
    const transport = await transportOn(brokers, securityFor(credentials.password), uniqueName('sasl_ok'))
    t.after(() => transport.close())
    await transport.ping()
  })
})
