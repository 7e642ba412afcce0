import { z } from 'zod'

/**
 * Money is exact: the domain holds integer minor units (cents) and only ever adds and multiplies
 * integers, so 0.10 × 3 + 0.20 is exactly 50. The wire and HTTP carry decimal numbers (`45.99`), as
 * the seeds do; the conversion goes through the decimal's string form, never through float
 * arithmetic (`0.29 * 100` is 28.999999999999996, `'0.29'` split at the point is 29).
 *
 * Two decimal places fit every currency this platform sells in; a currency with three (KWD) would
 * need the scale to travel with the currency.
 */
export const MINOR_UNITS_PER_MAJOR = 100

const plainDecimal = /^(\d+)(?:\.(\d{1,2}))?$/

/** Minor units from a decimal number or numeric string, or the reason it is not an amount. */
export function parseMinorUnits(value: number | string): { ok: true; minor: number } | { ok: false; message: string } {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    return { ok: false, message: 'must be a finite number' }
  }
  // A JS number's shortest round-trip string is the decimal the sender wrote (12.99 → '12.99',
  // 100.00 → '100'), so parsing that string is exact.
  const text = typeof value === 'number' ? String(value) : value
  const match = plainDecimal.exec(text)
  if (!match) {
    if (/^-/.test(text)) return { ok: false, message: 'must not be negative' }
    if (/e/i.test(text)) return { ok: false, message: 'must be a plain decimal with at most 2 decimal places' }
    if (/^\d+\.\d{3,}$/.test(text)) return { ok: false, message: 'must have at most 2 decimal places' }
    return { ok: false, message: 'must be a decimal amount such as 12.99' }
  }
  const whole = match[1] ?? '0'
  const fraction = (match[2] ?? '').padEnd(2, '0')
  const minor = Number(whole) * MINOR_UNITS_PER_MAJOR + Number(fraction)
  if (!Number.isSafeInteger(minor)) {
    return { ok: false, message: 'is too large' }
  }
  return { ok: true, minor }
}

/**
 * Minor units back to a decimal number for output (1299 → 12.99). Integer division by 100 is
 * correctly rounded, so the result is the same double as the literal `12.99`.
 */
export function toDecimal(minor: number): number {
  return minor / MINOR_UNITS_PER_MAJOR
}

/** Minor units as a decimal string with both places, for messages (2500 → '25.00'). */
export function formatAmount(minor: number): string {
  const whole = Math.trunc(minor / MINOR_UNITS_PER_MAJOR)
  const fraction = String(Math.abs(minor % MINOR_UNITS_PER_MAJOR)).padStart(2, '0')
  return `${minor < 0 && whole === 0 ? '-' : ''}${whole}.${fraction}`
}

/** An amount in minor units, as the domain holds it. */
export const minorUnits = z
  .number()
  .int('must be a whole number of minor units')
  .nonnegative('must not be negative')
  .max(Number.MAX_SAFE_INTEGER, 'is too large')

/**
 * A decimal amount on the wire (number or numeric string, ≥ 0, at most 2 decimal places), decoded
 * to integer minor units. It is a codec, so `z.encode` turns minor units back into the decimal
 * number the wire carries.
 */
export const decimalAmount = z.codec(
  z.union([z.number(), z.string()], { error: 'must be a decimal amount such as 12.99' }),
  minorUnits,
  {
    decode: (value, payload) => {
      const parsed = parseMinorUnits(value)
      if (parsed.ok) return parsed.minor
      payload.issues.push({ code: 'custom', message: parsed.message, input: value })
      return z.NEVER
    },
    encode: (minor) => toDecimal(minor),
  },
)

/** ISO-4217 alphabetic code. */
export const currencyCode = z.string().regex(/^[A-Z]{3}$/, 'must be a 3-letter ISO-4217 code in upper case, like USD')

export const DEFAULT_CURRENCY = 'USD'
