/** Whether an error means the database cannot be reached (as opposed to a bad statement). */
export function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { code?: string; message?: string } | undefined
  if (!e) return false
  const code = e.code ?? ''
  // Network errors from the driver, and PostgreSQL's connection-exception / operator-intervention classes.
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code)) return true
  if (code.startsWith('08') || code.startsWith('57P')) return true
  const message = e.message ?? ''
  return /Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED|PGlite is closed|Client has encountered a connection error|Cannot use a pool after calling end/i.test(
    message,
  )
}
