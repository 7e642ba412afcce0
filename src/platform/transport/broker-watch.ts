import { lookup } from 'node:dns/promises'
import { connect } from 'node:net'
import type { Logger } from '../logger.ts'

/**
 * Whether the brokers of KAFKA_BROKERS can be reached at all, said once in words. The Kafka client
 * retries a broker it cannot resolve or reach for ever, quietly, deep in its stacks; a user who
 * mistyped KAFKA_BROKERS would see orders accepted and stuck. The watch resolves and connects to
 * each broker (TCP only: whether it speaks Kafka is the client's business), logs one line naming
 * KAFKA_BROKERS and the cause when none answers, checks again with a growing interval, and logs
 * once more when one answers.
 */

export interface BrokerProbe {
  broker: string
  ok: boolean
  /** Why it cannot be reached, in words (with the error code). */
  cause?: string
}

export async function probeBroker(broker: string, timeoutMs = 3_000): Promise<BrokerProbe> {
  const separator = broker.lastIndexOf(':')
  const host = broker.slice(0, separator)
  const port = Number(broker.slice(separator + 1))
  let address: string
  try {
    address = (await lookup(host)).address
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'lookup failed'
    return { broker, ok: false, cause: `the host name '${host}' does not resolve (${code})` }
  }
  return new Promise((resolve) => {
    const socket = connect({ host: address, port })
    const done = (probe: BrokerProbe) => {
      socket.destroy()
      clearTimeout(timer)
      resolve(probe)
    }
    const timer = setTimeout(
      () => done({ broker, ok: false, cause: `no answer from ${address}:${port} within ${timeoutMs} ms (ETIMEDOUT)` }),
      timeoutMs,
    )
    socket.once('connect', () => done({ broker, ok: true }))
    socket.once('error', (error: NodeJS.ErrnoException) => {
      const code = error.code ?? 'error'
      const cause =
        code === 'ECONNREFUSED'
          ? `nothing listens on ${address}:${port} (ECONNREFUSED)`
          : `${address}:${port} cannot be reached (${code})`
      done({ broker, ok: false, cause })
    })
  })
}

/** One line about every broker of the list, or undefined when at least one answers. */
export async function unreachableBrokers(brokers: readonly string[]): Promise<string | undefined> {
  const probes = await Promise.all(brokers.map((broker) => probeBroker(broker)))
  if (probes.some((p) => p.ok)) return undefined
  return `no Kafka broker of KAFKA_BROKERS=${brokers.join(',')} can be reached: ${probes.map((p) => `${p.broker}: ${p.cause}`).join('; ')}`
}

export interface BrokerWatch {
  /** The last verdict: undefined when a broker answered, else the line that says why not. */
  problem(): string | undefined
  /** The first check is done. */
  readonly checked: Promise<void>
  stop(): void
}

export function watchBrokers(options: {
  brokers: readonly string[]
  logger: Logger
  /** What callers should know while no broker answers (for example, that orders wait in the outbox). */
  consequence: string
  firstIntervalMs?: number
  maxIntervalMs?: number
}): BrokerWatch {
  const { brokers, logger } = options
  let problem: string | undefined
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let interval = options.firstIntervalMs ?? 2_000
  const maxInterval = options.maxIntervalMs ?? 60_000

  const check = async () => {
    const found = await unreachableBrokers(brokers)
    if (stopped) return
    if (found && !problem) logger.error({ kafkaBrokers: brokers.join(',') }, `${found}. ${options.consequence}`)
    if (!found && problem)
      logger.info({ kafkaBrokers: brokers.join(',') }, 'a Kafka broker of KAFKA_BROKERS answers again')
    problem = found
    if (!found) return // The client takes it from here; its reconnects are logged by the transport.
    timer = setTimeout(() => void check(), interval)
    timer.unref()
    interval = Math.min(interval * 2, maxInterval)
  }
  const checked = check()
  return {
    problem: () => problem,
    checked,
    stop() {
      stopped = true
      if (timer) clearTimeout(timer)
    },
  }
}
