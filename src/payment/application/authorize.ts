import { PaymentFailureCodes } from '../../contracts/payment/events.ts'
import { AppError, ErrorCodes, isRetryable, toError } from '../../platform/errors.ts'
import type { AuthorizationRequest, GatewayOutcome, PaymentGateway } from '../domain/gateway.ts'

/**
 * How the payment service asks the gateway: each call bounded by a timeout, a transient fault
 * (a retryable error, a timeout) retried with backoff, and after `attempts` calls the payment is
 * recorded as DECLINED with GATEWAY_UNAVAILABLE, so the order is cancelled instead of left pending
 * (the domain's rule, payment.ts). The retries live here rather than in the consumer's retry loop
 * because only here is the last attempt known, and giving up must become an outcome, not a dead
 * letter.
 *
 * A call given up on may still have captured at the gateway; the gateway sees the payment id as
 * its idempotency key, so the next call for the payment answers the same capture. A real adapter
 * would void the key when the payment is recorded as failed.
 */
export interface GatewayPolicy {
  timeoutMs: number
  attempts: number
  retryBackoffMs: number
}

export interface AuthorizeHooks {
  /** Each call's result: approved, declined, unavailable (a transient fault) or timeout. */
  onCall?(result: 'approved' | 'declined' | 'unavailable' | 'timeout'): void
  onRetry?(attempt: number, error: Error): void
  sleep?(ms: number): Promise<void>
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export async function authorizeWithRetries(
  gateway: PaymentGateway,
  request: AuthorizationRequest,
  policy: GatewayPolicy,
  hooks: AuthorizeHooks = {},
): Promise<GatewayOutcome> {
  const sleep = hooks.sleep ?? defaultSleep
  let last: Error | undefined
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    try {
      const outcome = await withTimeout(gateway.authorize(request), policy.timeoutMs, request.paymentId)
      hooks.onCall?.(outcome.status === 'APPROVED' ? 'approved' : 'declined')
      return outcome
    } catch (thrown) {
      const error = toError(thrown)
      // A bug or a permanent gateway error is not a reason to decline: let the consumer handle it.
      if (!isRetryable(error)) throw error
      hooks.onCall?.(error instanceof GatewayTimeout ? 'timeout' : 'unavailable')
      last = error
      if (attempt < policy.attempts) {
        hooks.onRetry?.(attempt, error)
        await sleep(policy.retryBackoffMs * 2 ** (attempt - 1))
      }
    }
  }
  return {
    status: 'DECLINED',
    code: PaymentFailureCodes.GATEWAY_UNAVAILABLE,
    reason: `payment gateway unavailable after ${policy.attempts} attempt${policy.attempts === 1 ? '' : 's'} (${last?.message ?? 'no answer'})`,
  }
}

class GatewayTimeout extends AppError {
  constructor(paymentId: string, timeoutMs: number) {
    super(ErrorCodes.GATEWAY_UNAVAILABLE, `payment gateway did not answer within ${timeoutMs} ms`, {
      retryable: true,
      details: { dependency: 'payment-gateway', paymentId },
    })
  }
}

async function withTimeout<T>(work: Promise<T>, timeoutMs: number, paymentId: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GatewayTimeout(paymentId, timeoutMs)), timeoutMs)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
    // The call given up on may still settle; its result is no longer wanted.
    work.catch(() => {})
  }
}

/** A small seeded pseudo-random source (mulberry32): the same seed gives the same sequence. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
