import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestApp } from '../test/support/app.ts'
import { pgliteTestDatabase, type TestDatabase } from '../test/support/index.ts'
import { type SagaMode, serviceKafkaAccess } from './kafka-acls.ts'
import { createEmbeddedTransport } from './platform/transport/embedded.ts'
import type { Transport } from './platform/transport/port.ts'
import { allModules } from './services.ts'

/**
 * The ACL table (src/kafka-acls.ts) against the code: every module is started on its own, in each
 * saga mode, and the consumer groups it subscribes, with their topics, must be the table's `reads`
 * for that mode. What a service writes is checked on a broker with the authorizer
 * (test/journey/acls.kafka.e2e.test.ts): there a write the table does not allow fails the journey.
 */

const sorted = (groups: { group: string; topics: readonly string[] }[]) =>
  groups.map((g) => ({ group: g.group, topics: [...g.topics].sort() })).sort((a, b) => a.group.localeCompare(b.group))

describe('the Kafka ACL table matches what each module does', () => {
  let db: TestDatabase
  let transport: Transport
  let subscribed: { group: string; topics: string[] }[] = []

  before(async () => {
    db = await pgliteTestDatabase()
    const embedded = await createEmbeddedTransport({ db: db.db, partitions: 1, pollIntervalMs: 50 })
    transport = {
      ...embedded,
      kind: embedded.kind,
      ensureTopics: (topics) => embedded.ensureTopics(topics),
      publish: (messages, options) => embedded.publish(messages, options),
      close: () => embedded.close(),
      subscribe(options) {
        subscribed.push({ group: options.groupId, topics: [...options.topics] })
        return embedded.subscribe(options)
      },
    }
  })

  after(async () => {
    await transport?.close()
    await db?.cleanup()
  })

  it('declares every module', () => {
    const declared = serviceKafkaAccess.map((a) => a.service).sort()
    assert.deepEqual(
      declared,
      allModules()
        .map((m) => m.name)
        .sort(),
    )
  })

  it('writes only topics a module documents (its AsyncAPI topics)', () => {
    for (const module of allModules()) {
      const access = serviceKafkaAccess.find((a) => a.service === module.name)
      const documented = new Set([
        ...(module.topics ?? []).map((t) => t.topic),
        ...(module.plainTopics ?? []).map((t) => t.topic),
      ])
      for (const topic of access?.writes ?? [])
        assert.ok(documented.has(topic), `${module.name}: ${topic} is not among its topics`)
    }
  })

  for (const mode of ['orchestration', 'choreography'] as const satisfies readonly SagaMode[]) {
    it(`in ${mode}, every module subscribes exactly the groups and topics the table says`, async () => {
      for (const module of allModules()) {
        subscribed = []
        const app = await startTestApp({ db: db.db, transport, modules: [module], env: { SAGA_MODE: mode } })
        await app.close()
        const declared = (serviceKafkaAccess.find((a) => a.service === module.name)?.reads ?? []).filter(
          (read) => read.modes === undefined || read.modes.includes(mode),
        )
        assert.deepEqual(sorted(subscribed), sorted([...declared]), `${module.name} in ${mode}`)
      }
    })
  }
})
