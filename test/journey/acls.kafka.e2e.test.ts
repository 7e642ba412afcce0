import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import {
  AclOperations,
  AclPermissionTypes,
  Admin,
  ListOffsetTimestamps,
  Producer,
  ResourcePatternTypes,
  ResourceTypes,
  stringSerializers,
} from '@platformatic/kafka'
import { BROKER_SASL_MECHANISM, type Broker, startBroker } from '../../scripts/kafka.ts'
import type { App } from '../../src/app.ts'
import { ORDER_COMMANDS_TOPIC } from '../../src/contracts/order/commands.ts'
import { PAYMENT_COMMANDS_TOPIC } from '../../src/contracts/payment/commands.ts'
import { deliveryModule } from '../../src/delivery/index.ts'
import { dispatchModule } from '../../src/dispatch/index.ts'
import { type AclGrant, accessOf, aclGrants, servicePrincipal } from '../../src/kafka-acls.ts'
import { orderModule } from '../../src/order/index.ts'
import { paymentModule } from '../../src/payment/index.ts'
import { loadConfig } from '../../src/platform/config.ts'
import type { ServiceModule } from '../../src/platform/module.ts'
import { createKafkaTransport } from '../../src/platform/transport/kafka.ts'
import { namespaceTransport } from '../../src/platform/transport/namespaced.ts'
import type { Transport } from '../../src/platform/transport/port.ts'
import { sagaModule } from '../../src/saga/index.ts'
import { startTestApp } from '../support/app.ts'
import { postgresTestDatabase, type TestDatabase, uniqueName } from '../support/index.ts'
import { orderReaches, placeOrder, seed004Order } from './support.ts'

/**
 * Who may send a command: a broker of this file's own with SASL/SCRAM and Kafka's standard
 * authorizer (no ACL, no access), and every service with a principal of its own, allowed exactly
 * what src/kafka-acls.ts declares. A principal other than the saga's cannot write `order_commands`
 * or `payment_commands` (neither another service's nor an intruder's), and the services, each a
 * "process" of its own (its own principal, transport and database schema), still take an order to
 * DELIVERED.
 */

const password = () => randomBytes(12).toString('hex')
const superUser = { username: 'admin', password: password() }
const services = ['order', 'payment', 'dispatch', 'delivery', 'saga'] as const
type Service = (typeof services)[number]
const username = (service: string) => servicePrincipal(service).slice('User:'.length)
const credentials = Object.fromEntries(
  [...services, 'intruder'].map((s) => [s, { username: username(s), password: password() }]),
) as Record<Service | 'intruder', { username: string; password: string }>
const prefix = `${uniqueName('acl')}.`

const modules: Record<Service, () => ServiceModule> = {
  order: () => orderModule(),
  payment: () => paymentModule(),
  dispatch: () => dispatchModule(),
  delivery: () => deliveryModule(),
  saga: () => sagaModule(),
}

const sasl = (user: { username: string; password: string }) => ({
  mechanism: 'SCRAM-SHA-256' as const,
  username: user.username,
  password: user.password,
})

/** The reasons in a Kafka client error, however deeply the client nested them. */
function protocolErrors(error: unknown, found: string[] = []): string[] {
  const e = error as { apiId?: string; errors?: unknown[]; cause?: unknown } | undefined
  if (!e || typeof e !== 'object') return found
  if (e.apiId) found.push(e.apiId)
  for (const nested of e.errors ?? []) protocolErrors(nested, found)
  if (e.cause) protocolErrors(e.cause, found)
  return found
}

function toKafkaAcl(grant: AclGrant) {
  return grant.operations.map((operation) => ({
    resourceType: grant.resource === 'topic' ? ResourceTypes.TOPIC : ResourceTypes.GROUP,
    resourceName: grant.name,
    resourcePatternType: grant.pattern === 'literal' ? ResourcePatternTypes.LITERAL : ResourcePatternTypes.PREFIXED,
    principal: grant.principal,
    host: '*',
    operation: AclOperations[operation],
    permissionType: AclPermissionTypes.ALLOW,
  }))
}

describe('Kafka ACLs: only the saga may command an order', () => {
  let broker: Broker
  let admin: Admin
  const closing: (() => Promise<unknown>)[] = []

  before(async () => {
    broker = await startBroker({
      sasl: { ...superUser, users: Object.values(credentials) },
      authorizer: true,
    })
    admin = new Admin({ clientId: 'acl-test-admin', bootstrapBrokers: [broker.brokers], sasl: sasl(superUser) })
    const grants = services.flatMap((service) =>
      aclGrants(servicePrincipal(service), accessOf([service]), { mode: 'orchestration', topicPrefix: prefix }),
    )
    await admin.createAcls({ creations: grants.flatMap(toKafkaAcl) })
    // The command topics exist before anyone writes, so a refusal cannot be "no such topic".
    await admin.createTopics({
      topics: [`${prefix}${ORDER_COMMANDS_TOPIC}`, `${prefix}${PAYMENT_COMMANDS_TOPIC}`],
      partitions: 3,
      replicas: 1,
    })
  })

  after(async () => {
    for (const close of closing.reverse()) await close().catch(() => {})
    await admin?.close().catch(() => {})
    await broker?.stop()
  })

  /** Messages on the command topics, from the log ends (the super user reads them). */
  async function commandsOnTopics(): Promise<number> {
    const topics = [`${prefix}${ORDER_COMMANDS_TOPIC}`, `${prefix}${PAYMENT_COMMANDS_TOPIC}`]
    const ends = await admin.listOffsets({
      topics: topics.map((name) => ({
        name,
        partitions: [0, 1, 2].map((partitionIndex) => ({ partitionIndex, timestamp: ListOffsetTimestamps.LATEST })),
      })),
    })
    return ends.flatMap((t) => t.partitions).reduce((sum, p) => sum + Number(p.offset), 0)
  }

  for (const who of ['payment', 'intruder'] as const) {
    for (const topic of [ORDER_COMMANDS_TOPIC, PAYMENT_COMMANDS_TOPIC]) {
      it(`refuses ${servicePrincipal(who)} a write on ${topic}, as kcat would send it`, async (t) => {
        const producer = new Producer({
          clientId: uniqueName('acl_attack'),
          bootstrapBrokers: [broker.brokers],
          sasl: sasl(credentials[who]),
          serializers: stringSerializers,
          idempotent: false,
          retries: 0,
        })
        t.after(() => producer.close())
        const message = { commandType: 'ConfirmOrder', orderId: 'o-1', commandId: 'c-1' }
        const refused = await producer
          .send({ messages: [{ topic: `${prefix}${topic}`, key: 'o-1', value: JSON.stringify(message) }] })
          .then(
            () => undefined,
            (error: unknown) => error,
          )
        assert.ok(refused, `${who} wrote ${topic}`)
        assert.ok(
          protocolErrors(refused).includes('TOPIC_AUTHORIZATION_FAILED'),
          `refused for another reason: ${protocolErrors(refused).join(', ') || String(refused)}`,
        )
        assert.equal(await commandsOnTopics(), 0, 'a command reached the topic')
      })
    }
  }

  it("refuses the payment service's own transport a publish on order_commands", async (t) => {
    const transport = await serviceTransport('payment')
    t.after(() => transport.close())
    const refused = await transport
      .publish([{ topic: ORDER_COMMANDS_TOPIC, key: 'o-1', value: '{}', headers: {} }])
      .then(
        () => undefined,
        (error: unknown) => error,
      )
    assert.ok(refused, 'the payment principal published on order_commands')
    assert.ok(
      protocolErrors(refused).includes('TOPIC_AUTHORIZATION_FAILED'),
      `refused for another reason: ${protocolErrors(refused).join(', ') || String(refused)}`,
    )
    assert.equal(await commandsOnTopics(), 0, 'a command reached the topic')
  })

  it('runs the journey to DELIVERED with each service as its own principal, in a process of its own', async () => {
    const apps = {} as Record<Service, App>
    // The saga last: every service it commands is listening by then.
    for (const service of services) apps[service] = await startService(service)
    const order = await placeOrder(apps.order, seed004Order)
    await orderReaches(apps.order, order.id, 'DELIVERED', 60_000)
    assert.ok((await commandsOnTopics()) > 0, 'the saga sent no command')
  })

  async function serviceTransport(service: Service | 'intruder'): Promise<Transport> {
    const config = loadConfig({
      KAFKA_SASL_MECHANISM: BROKER_SASL_MECHANISM,
      KAFKA_SASL_USERNAME: credentials[service].username,
      KAFKA_SASL_PASSWORD: credentials[service].password,
    })
    const raw = await createKafkaTransport({
      brokers: [broker.brokers],
      clientId: uniqueName(`acl_${service}`),
      partitions: 3,
      replicationFactor: 1,
      requiredAcks: 'all',
      retries: 3,
      retryBackoffMs: 100,
      sessionTimeoutMs: 6_000,
      heartbeatIntervalMs: 500,
      security: config.kafka.security,
    })
    return namespaceTransport(raw, prefix)
  }

  /** One service as its own process would run it: its principal, its transport, its database. */
  async function startService(service: Service): Promise<App> {
    const db: TestDatabase = await postgresTestDatabase(`of_acl_${service}`)
    closing.push(() => db.cleanup())
    const transport = await serviceTransport(service)
    closing.push(() => transport.close())
    const app = await startTestApp({
      db: db.db,
      transport,
      modules: [modules[service]()],
      env: {
        SAGA_MODE: 'orchestration',
        KAFKA_TOPIC_PREFIX: prefix,
        KAFKA_SASL_MECHANISM: BROKER_SASL_MECHANISM,
        KAFKA_SASL_USERNAME: credentials[service].username,
        KAFKA_SASL_PASSWORD: credentials[service].password,
        KAFKA_RETRY_MAX: '3',
        KAFKA_RETRY_BACKOFF_MS: '20',
        DELIVERY_DELAY_MS: '20',
        SCHEDULER_POLL_INTERVAL_MS: '200',
        PAYMENT_GATEWAY_RETRY_BACKOFF_MS: '5',
      },
      app: { pollIntervalMs: 100 },
    })
    closing.push(() => app.close())
    return app
  }
})
