import { pino } from 'pino'

export type Logger = pino.Logger

/** Structured JSON logs on stdout. `LOG_LEVEL` picks the level (default `info`; tests use `silent`). */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'orderflow',
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  })
}
