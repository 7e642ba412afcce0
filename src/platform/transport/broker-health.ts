import type { Transport } from './port.ts'

/**
 * When the broker was last in trouble (a ping that failed or did not answer), on the monotonic
 * clock. A step timeout asks it before firing: time during which the broker was away does not
 * count, because no answer could come (issue 13: the saga's clock runs only while the broker does).
 * The embedded log's ping is a query on the database, which is the saga's own dependency anyway.
 */
export interface BrokerHealth {
  /** Milliseconds since the broker was last in trouble; Infinity when it never was. */
  troubleFreeForMs(): number
  stop(): void
}

export function trackBrokerHealth(
  transport: Pick<Transport, 'ping'>,
  options: { intervalMs?: number } = {},
): BrokerHealth {
  const intervalMs = options.intervalMs ?? 2_000
  let lastTroubleAt = Number.NEGATIVE_INFINITY
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const check = async () => {
    try {
      await transport.ping()
    } catch {
      lastTroubleAt = performance.now()
    }
    if (stopped) return
    timer = setTimeout(() => void check(), intervalMs)
    timer.unref()
  }
  void check()
  return {
    troubleFreeForMs: () => performance.now() - lastTroubleAt,
    stop() {
      stopped = true
      if (timer) clearTimeout(timer)
    },
  }
}
