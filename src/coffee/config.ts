/**
 * The coffee app's own configuration (seed 003's variables and defaults), for running it on its
 * own with `npm run coffee`. Inside orderflow's process the platform's configuration applies
 * instead (same variable names, KAFKA_RETRY_MAX defaulting to 3 there).
 */

export interface CoffeeConfig {
  brokers: string[]
  topic: string
  retryMax: number
  requiredAcks: 'all' | '1' | '0'
  groupId: string
  port: number
  host: string
  logLevel: string
}

export class CoffeeConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[]) {
    super(problems.join('; '))
    this.name = 'CoffeeConfigError'
    this.problems = problems
  }
}

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/

/** Reads the environment; every wrong variable is named, with what it may be. */
export function loadCoffeeConfig(env: Record<string, string | undefined> = process.env): CoffeeConfig {
  const problems: string[] = []
  const value = (name: string) => {
    const raw = env[name]?.trim()
    return raw === undefined || raw === '' ? undefined : raw
  }
  const whole = (name: string, min: number, max: number, fallback: number) => {
    const raw = value(name)
    if (raw === undefined) return fallback
    const n = Number(raw)
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max} (got '${raw}')`)
      return fallback
    }
    return n
  }

  const brokers = (value('KAFKA_BROKERS') ?? 'localhost:9092').split(',').map((b) => b.trim())
  for (const broker of brokers) {
    if (!/^[^\s:]+:\d{1,5}$/.test(broker)) {
      problems.push(`KAFKA_BROKERS must be a comma-separated list of host:port (got '${broker}')`)
    }
  }
  const topic = value('KAFKA_TOPIC') ?? 'coffee_orders'
  if (!TOPIC_NAME.test(topic)) problems.push(`KAFKA_TOPIC must be 1 to 249 of a-z A-Z 0-9 . _ - (got '${topic}')`)
  const acks = (value('KAFKA_REQUIRED_ACKS') ?? 'all').toLowerCase()
  const requiredAcks = acks === '-1' ? 'all' : acks
  if (requiredAcks !== 'all' && requiredAcks !== '1' && requiredAcks !== '0') {
    problems.push(`KAFKA_REQUIRED_ACKS must be 'all', '1' or '0' (got '${env.KAFKA_REQUIRED_ACKS}')`)
  }
  const groupId = value('KAFKA_GROUP_ID') ?? 'coffee-consumers'
  const config: CoffeeConfig = {
    brokers,
    topic,
    retryMax: whole('KAFKA_RETRY_MAX', 0, 20, 5),
    requiredAcks: requiredAcks as CoffeeConfig['requiredAcks'],
    groupId,
    port: whole('PORT', 0, 65535, 3001),
    host: value('HOST') ?? '127.0.0.1',
    logLevel: value('LOG_LEVEL') ?? 'info',
  }
  if (problems.length > 0) throw new CoffeeConfigError(problems)
  return config
}
