import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { configTable, readmeTable } from '../../scripts/config-table.ts'
import { platformVariables } from '../../src/platform/config.ts'
import { allSettings, allVariables, variableRows } from '../../src/settings.ts'

/**
 * The README's configuration table is what the code declares: the platform's variables and every
 * module's settings slice, each variable once, with who reads it.
 */
describe('the configuration as documented', () => {
  it("the README's table is generated from the declared settings", () => {
    const inReadme = readmeTable()
    assert.ok(inReadme !== undefined, 'README.md has the <!-- config:start --> and <!-- config:end --> markers')
    assert.equal(inReadme, configTable().trim(), 'the table is stale: run `npm run docs:config` to regenerate it')
  })

  it('lists every variable once, the services’ under the service that owns them', () => {
    const rows = variableRows()
    const names = rows.map((row) => row.name)
    assert.equal(new Set(names).size, names.length, 'no variable is declared twice')
    for (const name of Object.keys(platformVariables)) assert.ok(names.includes(name), name)
    const owner = (name: string) => rows.find((row) => row.name === name)?.owner
    assert.equal(owner('PAYMENT_GATEWAY_LATENCY_MS'), 'payment')
    assert.equal(owner('DELIVERY_DELAY_MS'), 'delivery')
    assert.equal(owner('SAGA_MODE'), 'journey')
    assert.equal(owner('AUDIT_STUCK_AFTER_MS'), 'audit')
    // The platform's configuration holds no service's variable.
    for (const slice of allSettings()) {
      for (const name of Object.keys(slice.docs))
        assert.ok(!(name in platformVariables), `${name} is the platform's too`)
    }
    for (const name of names) assert.ok(allVariables().includes(name), `${name} is known to the misspelling check`)
  })
})
