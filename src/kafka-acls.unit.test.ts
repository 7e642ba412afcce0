import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { accessOf, aclGrants, kafkaAclScript, serviceKafkaAccess, servicePrincipal } from './kafka-acls.ts'

/** The ACLs the docs show are the table's, so the docs cannot drift from the code. */
describe('the Kafka ACLs', () => {
  for (const document of ['README.md', 'docs/reliability.md']) {
    it(`are in ${document} exactly as src/kafka-acls.ts generates them`, () => {
      const text = readFileSync(new URL(`../${document}`, import.meta.url), 'utf8')
      assert.ok(
        text.includes(`\`\`\`bash\n${kafkaAclScript()}\n\`\`\``),
        `${document} does not show the current kafka-acls commands; paste kafkaAclScript()'s output:\n${kafkaAclScript()}`,
      )
    })
  }

  it('let only the saga write the command topics, in both modes', () => {
    for (const { service } of serviceKafkaAccess) {
      const writes = aclGrants(servicePrincipal(service), accessOf([service]), { mode: 'both' })
        .filter((grant) => grant.resource === 'topic' && grant.operations.includes('WRITE'))
        .map((grant) => grant.name)
      const commands = writes.filter((topic) => /_commands$/.test(topic))
      assert.deepEqual(
        commands.sort(),
        service === 'saga' ? ['delivery_commands', 'dispatch_commands', 'order_commands', 'payment_commands'] : [],
        service,
      )
    }
  })

  it('put topics and groups under the topic prefix, and a read means writing its dead letters', () => {
    const grants = aclGrants('User:p', accessOf(['payment']), { mode: 'choreography', topicPrefix: 'staging.' })
    assert.deepEqual(
      grants.map((g) => `${g.resource} ${g.name} ${g.operations.join(',')}`),
      [
        'topic staging.payment-events WRITE,CREATE',
        'topic staging.payment_commands READ,CREATE',
        'topic staging.payment_commands-dlq WRITE,CREATE',
        'topic staging.order-events READ,CREATE',
        'topic staging.order-events-dlq WRITE,CREATE',
        'group staging.payment-service-commands READ',
        'group staging.payment-service READ',
      ],
    )
  })

  it('give a process running several services the union of theirs', () => {
    const union = aclGrants('User:all', accessOf(['order', 'saga']), { mode: 'orchestration' })
    const orderCommands = union.find((g) => g.resource === 'topic' && g.name === 'order_commands')
    assert.deepEqual(orderCommands?.operations, ['READ', 'WRITE', 'CREATE'])
  })
})
