/**
 * A misspelled variable (`KAFKA_BROKER`, `SAGA_MOD`) is otherwise ignored without a word, and the
 * process runs on a default the user did not mean. Variables that start like orderflow's own (one
 * of these prefixes, or one edit away from a known name) and are not known get a warning naming
 * the closest known one. Other variables (PATH, HOME, NODE_OPTIONS) are none of our business.
 */
const PREFIXES = [
  'KAFKA_',
  'SAGA_',
  'AUTH_',
  'PAYMENT_',
  'DELIVERY_',
  'RATE_LIMIT',
  'DATABASE_',
  'DATA_DIR',
  'SCHEDULER_',
  'AUDIT_',
  'ORDERFLOW_',
  'IDEMPOTENCY_',
  'INBOX_',
  'OUTBOX_',
  'CONSUMER_',
  'GROUP_COMMIT',
  'LOG_RETENTION',
  'SHUTDOWN_',
]

export interface UnknownVariable {
  name: string
  closest: string | undefined
}

export function unknownVariables(
  env: Record<string, string | undefined>,
  /** Every variable orderflow reads: the platform's and the modules' (`allVariables()` in src/settings.ts). */
  known: readonly string[],
): UnknownVariable[] {
  const knownSet = new Set(known)
  return Object.keys(env)
    .filter((name) => !knownSet.has(name))
    .filter((name) => PREFIXES.some((prefix) => name.startsWith(prefix)) || known.some((k) => distance(k, name) <= 1))
    .sort()
    .map((name) => ({ name, closest: closestOf(name, known) }))
}

/** One line per unknown variable, for the start-up log. */
export function unknownVariableWarnings(env: Record<string, string | undefined>, known: readonly string[]): string[] {
  return unknownVariables(env, known).map(
    ({ name, closest }) =>
      `${name} is not a variable orderflow reads and is ignored${closest ? `; did you mean ${closest}?` : ''}`,
  )
}

function closestOf(name: string, known: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined
  for (const candidate of known) {
    const d = distance(candidate, name)
    if (!best || d < best.distance) best = { name: candidate, distance: d }
  }
  // Far from everything: naming a variable would be a guess, not a hint.
  return best && best.distance <= Math.max(3, Math.floor(name.length / 3)) ? best.name : undefined
}

/** Levenshtein distance. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      )
    }
    previous = current
  }
  return previous[b.length] ?? 0
}
