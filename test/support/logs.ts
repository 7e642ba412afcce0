import pino from 'pino'
import type { Logger } from '../../src/platform/logger.ts'

export interface LogRecord {
  level: number
  msg: string
  [field: string]: unknown
}

/** A logger that keeps its records (pino's JSON lines, parsed), to check what a component reported. */
export function capturingLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = []
  const destination = { write: (line: string) => void records.push(JSON.parse(line) as LogRecord) }
  return { logger: pino({ level: 'debug' }, destination), records }
}
