/**
 * Text that PostgreSQL cannot store: a NUL character (`\u0000`, refused in `text` and `jsonb`) and
 * an unpaired UTF-16 surrogate (not Unicode at all). JSON can carry both, so every input is checked
 * at the edge (HTTP requests, consumed messages) and refused there with the field named, instead of
 * failing deep inside a transaction.
 */
export interface UnsafeText {
  /** Dotted path of the offending value (`items.0.name`), or `(value)` for a bare string. */
  field: string
  message: string
}

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

export function problemWithText(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain NUL characters (\\u0000)'
  if (loneSurrogate.test(text)) return 'must be valid Unicode text (it has an unpaired surrogate)'
  return undefined
}

/** The first string in `value` (keys included) that cannot be stored, or null when all can. */
export function findUnsafeText(value: unknown, path: string[] = [], depth = 0): UnsafeText | null {
  if (depth > 64) return null
  if (typeof value === 'string') {
    const message = problemWithText(value)
    return message ? { field: path.length > 0 ? path.join('.') : '(value)', message } : null
  }
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = findUnsafeText(item, [...path, String(i)], depth + 1)
      if (found) return found
    }
    return null
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const keyProblem = problemWithText(key)
      if (keyProblem) return { field: [...path, key].join('.'), message: `its name ${keyProblem}` }
      const found = findUnsafeText(item, [...path, key], depth + 1)
      if (found) return found
    }
  }
  return null
}
