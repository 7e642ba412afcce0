import { type PaymentFailureCode, PaymentFailureCodes } from '../../contracts/payment/events.ts'
import { AppError, type ErrorCode, ErrorCodes } from '../../platform/errors.ts'

/**
 * The payment gateway port and its simulated adapter.
 *
 * The application asks the gateway first and hands the outcome to the decider (a ProcessPayment
 * carrying `outcome`), so the decider stays pure. A gateway answers an approval or a decline;
 * a transient fault (the gateway is away) is thrown as a retryable `AppError`, so the consumer
 * retries with backoff instead of recording a decline.
 *
 * Requests carry the payment id as an idempotency key, as real gateways take one: two instances
 * that race on the same order (or a redelivery after a crash between the gateway call and the
 * commit) capture once at the gateway, and the payment stream's optimistic concurrency keeps one
 * PaymentProcessed.
 */

export interface AuthorizationRequest {
  /** The idempotency key: the same payment id never captures twice. */
  paymentId: string
  orderId: string
  customerId: string
  /** Minor units. */
  amount: number
  currency: string
}

export type GatewayOutcome =
  | { status: 'APPROVED'; authorizationId: string }
  | { status: 'DECLINED'; code: PaymentFailureCode; reason: string }

export interface PaymentGateway {
  /** Authorizes and captures; throws a retryable AppError when the gateway cannot answer now. */
  authorize(request: AuthorizationRequest): Promise<GatewayOutcome>
}

/** The code a transient gateway fault is thrown with: retryable by default (platform/errors.ts). */
export const GATEWAY_UNAVAILABLE_CODE: ErrorCode = ErrorCodes.GATEWAY_UNAVAILABLE

export interface SimulatedGatewayOptions {
  /** Amounts above this (minor units) are declined with AMOUNT_OVER_LIMIT. Default: no limit. */
  declineAbove?: number
  /** Customers whose payments are declined with CUSTOMER_DECLINED. */
  declinedCustomers?: readonly string[]
  /** How long each call takes, in milliseconds. Default 0. */
  latencyMs?: number
  /** The share of calls (0–1) that fail as if the gateway were away. Default 0. */
  transientFailureRate?: number
  /** The random source for transient failures, in [0, 1); inject a fixed sequence in tests. */
  random?: () => number
  /** How the latency is waited for; injectable so tests need not wait. */
  sleep?: (ms: number) => Promise<void>
}

/** One capture the simulated gateway made: what an integration test counts. */
export interface SimulatedCapture {
  paymentId: string
  orderId: string
  amount: number
  currency: string
  authorizationId: string
}

export interface SimulatedGateway extends PaymentGateway {
  /** Every capture made, once per payment id. */
  captures(): readonly SimulatedCapture[]
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * A deterministic gateway: the decline rules are plain data, the transient failures come from the
 * injected random source, and the authorization id is derived from the payment id. Rules are applied
 * in this order: transient failure, an earlier capture of the same payment (answered again), the
 * amount limit, the declined customers.
 */
export function createSimulatedGateway(options: SimulatedGatewayOptions = {}): SimulatedGateway {
  const rate = options.transientFailureRate ?? 0
  if (!(rate >= 0 && rate <= 1)) {
    throw new RangeError(`transientFailureRate must be between 0 and 1, got ${rate}`)
  }
  const latencyMs = options.latencyMs ?? 0
  const random = options.random ?? Math.random
  const sleep = options.sleep ?? defaultSleep
  const declined = new Set(options.declinedCustomers ?? [])
  const captured = new Map<string, SimulatedCapture>()

  return {
    captures: () => [...captured.values()],
    async authorize(request) {
      if (latencyMs > 0) await sleep(latencyMs)
      if (rate > 0 && random() < rate) {
        throw new AppError(GATEWAY_UNAVAILABLE_CODE, `payment gateway unavailable for payment ${request.paymentId}`, {
          retryable: true,
          details: { dependency: 'payment-gateway', paymentId: request.paymentId },
        })
      }
      const earlier = captured.get(request.paymentId)
      if (earlier) return { status: 'APPROVED', authorizationId: earlier.authorizationId }
      if (options.declineAbove !== undefined && request.amount > options.declineAbove) {
        return {
          status: 'DECLINED',
          code: PaymentFailureCodes.AMOUNT_OVER_LIMIT,
          reason: 'amount is over the payment limit',
        }
      }
      if (declined.has(request.customerId)) {
        return {
          status: 'DECLINED',
          code: PaymentFailureCodes.CUSTOMER_DECLINED,
          reason: 'card declined for this customer',
        }
      }
      const capture: SimulatedCapture = {
        paymentId: request.paymentId,
        orderId: request.orderId,
        amount: request.amount,
        currency: request.currency,
        authorizationId: `sim-auth-${request.paymentId}`,
      }
      captured.set(request.paymentId, capture)
      return { status: 'APPROVED', authorizationId: capture.authorizationId }
    },
  }
}
