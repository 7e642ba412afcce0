import { type DestinationStream, pino } from 'pino'

export type Logger = pino.Logger

/**
 * What never reaches a log line, wherever it sits in a logged object (up to three levels deep,
 * which covers `{ req: { headers: { authorization } } }` and `{ config: { sasl: { password } } }`):
 * credentials in headers, passwords, secrets and tokens, and personal fields. pino replaces them
 * with `[Redacted]`.
 */
const SECRET_KEYS = [
  'authorization',
  'cookie',
  'set-cookie',
  'password',
  'secret',
  'token',
  'accessToken',
  // Personal fields (contracts/personal.ts): sealed wherever they are kept, and never logged in
  // clear either, should a request body or an opened order ever be logged.
  'deliveryAddress',
  'contact',
] as const
export const REDACTED_PATHS = SECRET_KEYS.flatMap((key) => {
  const field = /^[A-Za-z_$][\w$]*$/.test(key) ? key : `["${key}"]`
  const nested = field.startsWith('[') ? field : `.${field}`
  return [field, `*${nested}`, `*.*${nested}`, `*.*.*${nested}`]
})

/** Structured JSON logs on stdout. `LOG_LEVEL` picks the level (default `info`; tests use `silent`). */
export function createLogger(options: { level?: string; name?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'orderflow',
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS },
    },
    options.destination,
  )
}
