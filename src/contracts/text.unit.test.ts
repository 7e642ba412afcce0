import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { findUnsafeText } from './text.ts'

describe('text PostgreSQL can store', () => {
  it('finds NUL characters and unpaired surrogates anywhere, naming the field', () => {
    assert.deepEqual(findUnsafeText({ customerId: 'a\u0000b' }), {
      field: 'customerId',
      message: 'must not contain NUL characters (\\u0000)',
    })
    assert.equal(findUnsafeText({ items: [{ name: 'ok' }, { name: 'x\ud800' }] })?.field, 'items.1.name')
    assert.equal(findUnsafeText({ items: [{ name: '\udc00y' }] })?.field, 'items.0.name')
    assert.equal(findUnsafeText({ 'k\u0000': 1 })?.field, 'k\u0000')
    assert.equal(findUnsafeText('\u0000')?.field, '(value)')
  })

  it('accepts any valid Unicode, emoji (surrogate pairs) included', () => {
    assert.equal(findUnsafeText({ name: 'Café ☕ 😀 日本', n: 1, nested: [null, true, { a: '\u0001' }] }), null)
  })
})
