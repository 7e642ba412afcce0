import assert from 'node:assert/strict'
import { globSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { allVariables } from '../settings.ts'
import { unknownVariables, unknownVariableWarnings } from './unknown-variables.ts'

const known = allVariables()

describe('unknown variables', () => {
  it('names the closest known variable for a misspelling', () => {
    assert.deepEqual(unknownVariables({ KAFKA_BROKER: 'x:1', SAGA_MOD: 'choreography' }, known), [
      { name: 'KAFKA_BROKER', closest: 'KAFKA_BROKERS' },
      { name: 'SAGA_MOD', closest: 'SAGA_MODE' },
    ])
    assert.match(
      unknownVariableWarnings({ SAGA_MOD: 'x' }, known)[0] ?? '',
      /SAGA_MOD .* ignored; did you mean SAGA_MODE\?/,
    )
  })

  it('leaves known variables and other programs’ variables alone', () => {
    assert.deepEqual(
      unknownVariables(
        {
          KAFKA_BROKERS: 'x:1',
          PATH: '/bin',
          HOME: '/root',
          NODE_OPTIONS: '',
          DATA_DIR: 'd',
          PORT: '1',
        },
        known,
      ),
      [],
    )
  })

  it('catches a variable one edit away from a known one even without a prefix', () => {
    assert.deepEqual(unknownVariables({ PORTS: '3000' }, known), [{ name: 'PORTS', closest: 'PORT' }])
  })

  it('knows every variable the source reads', () => {
    const root = resolve(import.meta.dirname, '../..')
    const files = globSync(['src/**/*.ts'], { cwd: root }).filter(
      (f) => !f.endsWith('.test.ts') && !f.includes('testing'),
    )
    const read = new Set<string>()
    for (const file of files) {
      const text = readFileSync(join(root, file), 'utf8')
      for (const match of text.matchAll(/process\.env\.([A-Z][A-Z0-9_]+)|value\('([A-Z][A-Z0-9_]+)'\)/g)) {
        const name = match[1] ?? match[2]
        if (name) read.add(name)
      }
    }
    const missing = [...read].filter((name) => !known.includes(name) && name !== 'PATH')
    assert.deepEqual(missing, [])
  })
})
