import os from 'node:os'

export interface BenchContext {
  brokers: string[]
  events: number
  batch: number
  inFlight: number
  size: number
  partitions: number
  rounds: number
  databaseUrl: string
}

/** Progress goes to stderr; stdout carries the results, the last line being one JSON object. */
export const say = (line: string) => process.stderr.write(`bench: ${line}\n`)

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[index] ?? Number.NaN
}

export function machine(): Record<string, unknown> {
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()}`,
  }
}
