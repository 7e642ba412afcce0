/**
 * The bounded load: orders placed at a fixed rate through POST /api/orders, spread round-robin
 * over the app processes, each request with a deadline. Every 201 is recorded with its order id:
 * those are the requests the system accepted, and must not lose. Anything else (a 503 while the
 * database is down, a refused connection while the app is dead) was refused, and is only counted.
 */

import { paymentIdFor } from '../../src/contracts/payment/events.ts'

export interface LoadResult {
  attempted: number
  /** Ids of the orders a 201 acknowledged. */
  accepted: string[]
  /** Refused requests by what happened: `503`, `ECONNREFUSED`, `timeout`, … */
  refused: Record<string, number>
  /** Ticks skipped because too many requests were already in flight. */
  skipped: number
}

export interface Load {
  /** Accepted so far. */
  accepted(): number
  /** The ids accepted so far, oldest first. */
  acceptedIds(): readonly string[]
  /** Stops placing orders and waits for the requests in flight. */
  stop(): Promise<LoadResult>
}

export interface LoadOptions {
  /** The base URLs to spread requests over, asked before each request (apps come and go). */
  targets: () => string[]
  ratePerSecond: number
  requestTimeoutMs?: number
  maxInFlight?: number
  /** Distinguishes the customers of one run from another's. */
  tag: string
}

export function startLoad(options: LoadOptions): Load {
  const result: LoadResult = { attempted: 0, accepted: [], refused: {}, skipped: 0 }
  const inFlight = new Set<Promise<void>>()
  const maxInFlight = options.maxInFlight ?? 200
  const timeoutMs = options.requestTimeoutMs ?? 15_000
  const refuse = (reason: string) => {
    result.refused[reason] = (result.refused[reason] ?? 0) + 1
  }
  let next = 0
  const place = async (n: number, base: string) => {
    try {
      const response = await fetch(`${base}/api/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          customerId: `${options.tag}-customer-${n}`,
          items: [{ productId: `product-${n % 7}`, quantity: 1 + (n % 3), price: 10 + (n % 5) }],
        }),
        signal: AbortSignal.timeout(timeoutMs),
      })
      const text = await response.text()
      if (response.status !== 201) return refuse(String(response.status))
      const { id } = JSON.parse(text) as { id?: string }
      if (typeof id !== 'string') return refuse('201 without an id')
      result.accepted.push(id)
    } catch (error) {
      const err = error as Error & { cause?: { code?: string } }
      refuse(err.name === 'TimeoutError' ? 'timeout' : (err.cause?.code ?? err.name))
    }
  }
  const tick = () => {
    const targets = options.targets()
    if (targets.length === 0) return refuse('no app running')
    if (inFlight.size >= maxInFlight) {
      result.skipped++
      return
    }
    const n = result.attempted++
    const base = targets[next++ % targets.length] as string
    const request = place(n, base).finally(() => inFlight.delete(request))
    inFlight.add(request)
  }
  const timer = setInterval(tick, 1000 / options.ratePerSecond)
  return {
    accepted: () => result.accepted.length,
    acceptedIds: () => result.accepted,
    async stop() {
      clearInterval(timer)
      await Promise.all(inFlight)
      return result
    },
  }
}

export interface StormResult {
  /** Answers by request and status: `PATCH 200`, `cancel 409`, `confirm 500`, `GET timeout`, … */
  answers: Record<string, number>
  /** The 5xx answers' problem details (at most 10). */
  serverErrors: string[]
}

/**
 * The deadlock storm on one order: its ETag first, then at the same moment a PATCH of its items
 * with that If-Match, a cancel and a confirm (with the order's own payment id), as a customer and
 * a retrying payment callback racing each other would. 409 (a conflict, or a state that no longer allows it) is an answer; 5xx is not.
 */
export async function stormOrder(base: string, orderId: string, n: number, into: StormResult): Promise<void> {
  const count = (what: string) => {
    into.answers[what] = (into.answers[what] ?? 0) + 1
  }
  const send = async (name: string, path: string, init: RequestInit) => {
    try {
      const response = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(15_000) })
      const text = await response.text()
      count(`${name} ${response.status}`)
      if (response.status >= 500 && into.serverErrors.length < 10) {
        into.serverErrors.push(`${name} ${orderId} ${response.status}: ${text.slice(0, 200)}`)
      }
      return response
    } catch (error) {
      const err = error as Error & { cause?: { code?: string } }
      count(`${name} ${err.name === 'TimeoutError' ? 'timeout' : (err.cause?.code ?? err.name)}`)
      return undefined
    }
  }
  const got = await send('GET', `/api/orders/${orderId}`, {})
  const etag = got?.headers.get('etag')
  if (!etag) return
  const json = { 'content-type': 'application/json' }
  await Promise.all([
    send('PATCH', `/api/orders/${orderId}`, {
      method: 'PATCH',
      headers: { ...json, 'if-match': etag },
      body: JSON.stringify({ items: [{ productId: `product-${n % 7}`, quantity: 2 + (n % 4), price: 11 + (n % 5) }] }),
    }),
    send('cancel', `/api/orders/${orderId}/cancel`, {
      method: 'POST',
      headers: { ...json, 'if-match': etag },
      body: JSON.stringify({ reason: 'fault suite: deadlock storm' }),
    }),
    send('confirm', `/api/orders/${orderId}/confirm`, {
      method: 'POST',
      headers: { ...json, 'if-match': etag },
      // The order's own payment (one per order, its id known in advance): a confirm that races the
      // saga's, not a forged one. A confirm with another payment's id is a different question
      // (who may command an order) and would fail the money check by design.
      body: JSON.stringify({ paymentId: paymentIdFor(orderId) }),
    }),
  ])
}
