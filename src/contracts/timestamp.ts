import { z } from 'zod'

/**
 * Timestamps on the wire, read liberally and written one way.
 *
 * Other producers write what their language writes: Python's `isoformat()` gives
 * `2026-11-30T19:00:00` (no offset) or `2026-11-30T19:00:00.123456` (microseconds), others
 * `…+00:00`, and seed 001's own example is `2025-12-25T10:00:00`. Rejecting those would dead-letter
 * valid business messages over a formatting detail, so any RFC 3339 / ISO 8601 extended date-time
 * is read, and what this platform keeps and writes is one canonical form: UTC, milliseconds, `Z`
 * (`new Date().toISOString()`). One fixed-width form also means timestamps sort as strings.
 */

/** `YYYY-MM-DDTHH:mm:ss.sssZ`: what `Date#toISOString` writes and every decoded timestamp is. */
export const CANONICAL_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

/**
 * Date, `T` / `t` / space, time with seconds, 0–9 fractional digits, and an optional offset
 * (`Z`, `z`, `±hh:mm`, `±hhmm`, `±hh`). Kept as a source string so the AsyncAPI document can show it.
 */
export const TIMESTAMP_PATTERN =
  '^(\\d{4})-(\\d{2})-(\\d{2})[Tt ](\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,9}))?(?:([Zz])|([+-])(\\d{2})(?::?(\\d{2}))?)?$'

const timestampSyntax = new RegExp(TIMESTAMP_PATTERN)

const EXAMPLE = '2026-11-30T19:00:00Z'

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
] as const

const isLeapYear = (year: number) => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0

const daysInMonth = (year: number, month: number) =>
  month === 2 ? (isLeapYear(year) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31

/**
 * The canonical UTC form of a timestamp, or why it is not one. Without an offset the time is UTC:
 * that is what the producers that omit it mean (seed 001 and the Python services write UTC), and a
 * server's local zone would make the same message mean different instants on different machines.
 * Digits beyond milliseconds are truncated, not rounded, so a timestamp never moves into the next
 * second (or day).
 */
export function parseTimestamp(text: string): { ok: true; value: string } | { ok: false; message: string } {
  const match = timestampSyntax.exec(text)
  if (!match) {
    return { ok: false, message: `must be an ISO 8601 date-time such as ${EXAMPLE}` }
  }
  const [, y, mo, d, h, mi, s, fraction = '', , sign, offsetHours = '0', offsetMinutes = '0'] = match
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = Number(s)
  if (month < 1 || month > 12) {
    return { ok: false, message: `${y}-${mo}-${d} is not a date: there is no month ${mo}` }
  }
  const lastDay = daysInMonth(year, month)
  if (day < 1 || day > lastDay) {
    return {
      ok: false,
      message: `${y}-${mo}-${d} is not a date: ${MONTHS[month - 1]} ${y} has ${lastDay} days`,
    }
  }
  // Leap seconds (:60) and 24:00 are legal ISO 8601 but no producer here writes them; a Date cannot
  // hold the first, and the second is the next day's 00:00, which is how it should be sent.
  if (hour > 23 || minute > 59 || second > 59) {
    return { ok: false, message: `${h}:${mi}:${s} is not a time of day` }
  }
  const offsetH = Number(offsetHours)
  const offsetM = Number(offsetMinutes)
  if (offsetH > 23 || offsetM > 59) {
    return { ok: false, message: `the offset ${sign}${offsetHours}:${offsetMinutes} is not a UTC offset` }
  }
  const millis = Number(fraction.slice(0, 3).padEnd(3, '0'))
  const offset = (sign === '-' ? -1 : 1) * (offsetH * 60 + offsetM)
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0–99 as 1900–1999.
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute - offset, second, millis)
  const utcYear = date.getUTCFullYear()
  if (utcYear < 0 || utcYear > 9999) {
    return { ok: false, message: 'is out of range: the year in UTC must be between 0000 and 9999' }
  }
  return { ok: true, value: date.toISOString() }
}

/**
 * A timestamp field: decodes any ISO 8601 date-time (see `parseTimestamp`) to the canonical UTC
 * form; encodes a UTC `…Z` timestamp as it is, so stored events go back on the wire unchanged.
 */
export const timestamp = z.codec(
  z.string({ error: `must be an ISO 8601 date-time string such as ${EXAMPLE}` }),
  z.iso.datetime({ offset: false, error: `must be a UTC ISO 8601 date-time such as ${EXAMPLE}` }),
  {
    decode: (text, payload) => {
      const parsed = parseTimestamp(text)
      if (parsed.ok) return parsed.value
      payload.issues.push({ code: 'custom', message: parsed.message, input: text })
      return z.NEVER
    },
    encode: (utc) => utc,
  },
)

/** How a timestamp is documented (AsyncAPI, OpenAPI): the wire input, which is a string. */
export const timestampDocument = {
  type: 'string',
  pattern: TIMESTAMP_PATTERN,
  description:
    'ISO 8601 / RFC 3339 date-time; without an offset it is UTC. Read with any offset and 0–9 fractional digits; written in UTC as YYYY-MM-DDTHH:mm:ss.sssZ',
  examples: ['2026-11-30T19:00:00.000Z'],
} as const
