import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { isSealed, open, seal, TamperedError } from './sealed.ts'

const key = randomBytes(32)
const at = {
  subject: 'customer-1',
  keyVersion: 1,
  eventId: '0193a0b0-0000-7000-8000-000000000001',
  path: 'deliveryAddress',
}
const address = { name: 'Ada L', street: '1 Analytical Row', city: 'London', postalCode: 'N1 9GU', country: 'GB' }

describe('a sealed personal field', () => {
  it('opens to the value it sealed, and holds none of it in clear', () => {
    const sealed = seal(key, at, address)
    assert.ok(isSealed(sealed))
    assert.deepEqual(open(key, sealed, 'deliveryAddress'), address)
    const text = JSON.stringify(sealed)
    // Parts of 5 characters or more: a two-letter country code turns up in random base64 by chance.
    for (const part of Object.values(address).filter((p) => p.length >= 5)) {
      assert.ok(!text.includes(part), `${part} is not in ${text}`)
    }
    assert.ok(!text.includes(JSON.stringify(address)))
    assert.deepEqual(Object.keys(sealed).sort(), ['$enc', 'ct', 'eid', 'iv', 'kid', 'sub', 'tag'])
  })

  it('is refused, not opened to garbage, when any byte of it changed', () => {
    const sealed = seal(key, at, address)
    const flip = (b64: string) => {
      const bytes = Buffer.from(b64, 'base64url')
      bytes[0] = (bytes[0] ?? 0) ^ 1
      return bytes.toString('base64url')
    }
    for (const tampered of [
      { ...sealed, ct: flip(sealed.ct) },
      { ...sealed, iv: flip(sealed.iv) },
      { ...sealed, tag: flip(sealed.tag) },
    ]) {
      assert.throws(() => open(key, tampered, 'deliveryAddress'), TamperedError)
    }
  })

  it('is refused when moved to another customer, event or field (the associated data)', () => {
    const sealed = seal(key, at, address)
    assert.throws(() => open(key, { ...sealed, sub: 'customer-2' }, 'deliveryAddress'), TamperedError)
    assert.throws(
      () => open(key, { ...sealed, eid: '0193a0b0-0000-7000-8000-000000000002' }, 'deliveryAddress'),
      TamperedError,
    )
    assert.throws(() => open(key, sealed, 'contact'), /does not authenticate/)
    assert.throws(() => open(randomBytes(32), sealed, 'deliveryAddress'), TamperedError)
  })

  it('uses a fresh IV each time: the same value seals differently', () => {
    assert.notEqual(seal(key, at, address).ct, seal(key, at, address).ct)
  })
})
