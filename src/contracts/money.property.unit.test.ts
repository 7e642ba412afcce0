import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { z } from 'zod'
import { decimalAmount, formatAmount, parseMinorUnits, toDecimal } from './money.ts'

/** Money is exact: minor units survive every trip through the wire's decimals. */
describe('money, for any amount', () => {
  const minor = fc.integer({ min: 0, max: 10 ** 12 })

  it('round-trips minor units through the decimal on the wire, as a number and as a string', () => {
    fc.assert(
      fc.property(minor, (amount) => {
        assert.deepEqual(parseMinorUnits(toDecimal(amount)), { ok: true, minor: amount })
        assert.deepEqual(parseMinorUnits(formatAmount(amount)), { ok: true, minor: amount })
        assert.equal(z.decode(decimalAmount, z.encode(decimalAmount, amount)), amount)
      }),
      { numRuns: 2000 },
    )
  })

  it('adds exactly: the decimal of a sum is the sum of the decimals, to the cent', () => {
    fc.assert(
      fc.property(
        fc.array(
          minor.map((m) => m % 10 ** 9),
          { maxLength: 100 },
        ),
        (amounts) => {
          const total = amounts.reduce((sum, m) => sum + m, 0)
          assert.equal(formatAmount(total), toDecimal(total).toFixed(2))
        },
      ),
    )
  })

  it('refuses more than two decimals, negatives and non-numbers instead of rounding them', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 ** 6 }), fc.integer({ min: 1, max: 9 }), (major, third) => {
        assert.equal(parseMinorUnits(`${major}.12${third}`).ok, false)
        assert.equal(parseMinorUnits(-(major + 1)).ok, false)
      }),
    )
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, 'abc', '']) assert.equal(parseMinorUnits(bad).ok, false)
  })
})
