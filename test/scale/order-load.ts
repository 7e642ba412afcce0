/**
 * The load client of the scale-out test: orders placed at a steady rate, alternately on two HTTP
 * instances, as a client behind two instances would. An order goes to one instance; only when
 * that connection is refused, or closed before any response came (a process stopping, a
 * kept-alive connection it just closed), is it sent to the other, with the same Idempotency-Key,
 * so a request that did get through is answered once and never placed twice. Every other outcome
 * is the answer: a 201 is an order the system accepted and must not lose; a 5xx is a failure.
 */

export interface OrderLoadOptions {
  /** The base URLs of the two instances. */
  targets: readonly [string, string]
  ratePerSecond: number
  /** Distinguishes this load's customers and idempotency keys from any other's. */
  tag: string
  requestTimeoutMs?: number
  maxInFlight?: number
}

export interface OrderLoadResult {
  attempted: number
  /** Ids of the orders a 201 acknowledged. */
  accepted: string[]
  /** Final answers by status (`201`, `503`) or, for no answer, by what happened (`timeout`, `refused by both`). */
  answers: Record<string, number>
  /** Orders sent to the other instance after a refused or closed connection, by why. */
  retried: Record<string, number>
  /**
   * Retries answered with the first attempt's response (`Idempotent-Replayed`): the instance that
   * closed the connection had placed the order and its answer was lost on the way.
   */
  replayed: number
  /** 5xx answers, with their problem (at most 20). */
  serverErrors: string[]
  /** Orders neither instance answered, and why (at most 20). */
  unanswered: string[]
  /** Ticks skipped because `maxInFlight` requests were waiting. */
  skipped: number
}

export interface OrderLoad {
  accepted(): number
  stop(): Promise<OrderLoadResult>
}

/** What a refused or closed connection looks like through fetch (undici): the only errors retried. */
const CONNECTION_REFUSED_OR_CLOSED = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'])

type Attempt = { status: number; body: string; replayed: boolean } | { error: string }

export function startOrderLoad(options: OrderLoadOptions): OrderLoad {
  const result: OrderLoadResult = {
    attempted: 0,
    accepted: [],
    answers: {},
    retried: {},
    replayed: 0,
    serverErrors: [],
    unanswered: [],
    skipped: 0,
  }
  const count = (into: Record<string, number>, what: string) => {
    into[what] = (into[what] ?? 0) + 1
  }
  const inFlight = new Set<Promise<void>>()

  const send = async (base: string, n: number): Promise<Attempt> => {
    try {
      const response = await fetch(`${base}/api/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `${options.tag}-order-${n}` },
        body: JSON.stringify({
          customerId: `${options.tag}-customer-${n}`,
          items: [{ productId: `product-${n % 7}`, quantity: 1 + (n % 3), price: 10 + (n % 5) }],
        }),
        signal: AbortSignal.timeout(options.requestTimeoutMs ?? 15_000),
      })
      return {
        status: response.status,
        body: await response.text(),
        replayed: response.headers.get('idempotent-replayed') === 'true',
      }
    } catch (error) {
      const err = error as Error & { cause?: { code?: string } }
      return { error: err.name === 'TimeoutError' ? 'timeout' : (err.cause?.code ?? err.message) }
    }
  }

  const place = async (n: number) => {
    const [first, other] = n % 2 === 0 ? options.targets : [options.targets[1], options.targets[0]]
    let attempt = await send(first, n)
    if ('error' in attempt && CONNECTION_REFUSED_OR_CLOSED.has(attempt.error)) {
      count(result.retried, attempt.error)
      const again = await send(other, n)
      attempt = 'error' in again && CONNECTION_REFUSED_OR_CLOSED.has(again.error) ? { error: 'refused by both' } : again
    }
    if ('error' in attempt) {
      count(result.answers, attempt.error)
      if (result.unanswered.length < 20) result.unanswered.push(`order ${n}: ${attempt.error}`)
      return
    }
    count(result.answers, String(attempt.status))
    if (attempt.replayed) result.replayed++
    if (attempt.status >= 500 && result.serverErrors.length < 20) {
      result.serverErrors.push(`order ${n}: ${attempt.status} ${attempt.body.slice(0, 300)}`)
    }
    if (attempt.status === 201) {
      const { id } = JSON.parse(attempt.body) as { id?: unknown }
      if (typeof id === 'string') result.accepted.push(id)
    }
  }

  const timer = setInterval(() => {
    if (inFlight.size >= (options.maxInFlight ?? 100)) {
      result.skipped++
      return
    }
    const request = place(result.attempted++).finally(() => inFlight.delete(request))
    inFlight.add(request)
  }, 1000 / options.ratePerSecond)

  return {
    accepted: () => result.accepted.length,
    async stop() {
      clearInterval(timer)
      await Promise.all(inFlight)
      return result
    },
  }
}
