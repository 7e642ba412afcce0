import {
  encodePaymentEvent,
  PAYMENT_EVENTS_TOPIC,
  type PaymentEvent,
  paymentStreamId,
} from '../../contracts/payment/events.ts'
import {
  type CommandMetadata,
  createCommandHandler,
  type DomainEvent,
  type StateStore,
} from '../../platform/es/command-handler.ts'
import { eventMessage } from '../../platform/es/messages.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import type { AuthorizationRequest, GatewayOutcome } from '../domain/gateway.ts'
import {
  authorizationRequestFor,
  PAYMENT_STREAM_TYPE,
  type Payment,
  type PaymentState,
  type ProcessPayment,
  paymentDecider,
  type RefundPayment,
} from '../domain/payment.ts'

/**
 * The payment service's write side: one command = one transaction (inbox, events, the `payments`
 * row, the outbox for `payment-events` keyed by the order id).
 *
 * ProcessPayment asks the gateway before the transaction, and only when the payment is not decided
 * yet (`authorizationRequestFor`): a redelivered or re-sent command never reaches the gateway, and
 * a race between two instances leaves one PaymentProcessed (the loser is decided again on the new
 * state, which emits nothing).
 */

export interface PaymentStoreDeps {
  db: SqlDatabase
  onCommitted: () => void
  clock?: () => Date
  /** Who decides payments here (`processed_by`): host and process id by default. */
  instanceId: string
  /** Asks the gateway (with the service's timeouts and retries). */
  authorize(request: AuthorizationRequest): Promise<GatewayOutcome>
}

export interface PaymentResult {
  payment: PaymentState
  events: PaymentEvent[]
  duplicate: boolean
}

export interface PaymentStore {
  process(command: Omit<ProcessPayment, 'outcome'>, metadata?: CommandMetadata): Promise<PaymentResult>
  refund(command: RefundPayment, metadata?: CommandMetadata): Promise<PaymentResult>
  get(orderId: string): Promise<Payment | null>
}

function paymentsTable(instanceId: string): StateStore<PaymentState> {
  return {
    async load(tx, streamId) {
      const { rows } = await tx.query<{ state: Payment }>('SELECT state FROM payments WHERE id = $1', [streamId])
      const payment = rows[0]?.state ?? null
      return { state: payment, version: payment?.version ?? 0 }
    },
    async save(tx, streamId, payment, version) {
      if (!payment) throw new Error('a payment event left no payment state')
      await tx.query(
        `INSERT INTO payments (id, order_id, customer_id, status, amount, currency, version, state, processed_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, amount = coalesce(EXCLUDED.amount, payments.amount),
           currency = coalesce(EXCLUDED.currency, payments.currency), version = EXCLUDED.version,
           state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`,
        [
          streamId,
          payment.orderId,
          payment.customerId,
          payment.status,
          payment.amount,
          payment.currency,
          version,
          JSON.stringify(payment),
          instanceId,
          payment.updatedAt,
        ],
      )
    },
  }
}

export function createPaymentStore(deps: PaymentStoreDeps): PaymentStore {
  const stateStore = paymentsTable(deps.instanceId)
  const handler = createCommandHandler({
    db: deps.db,
    onCommitted: deps.onCommitted,
    streamType: PAYMENT_STREAM_TYPE,
    decider: paymentDecider,
    stateStore,
    toMessages: (event, metadata) => {
      const e = event as DomainEvent<unknown> as PaymentEvent
      return [
        eventMessage({ topic: PAYMENT_EVENTS_TOPIC, key: e.orderId, body: encodePaymentEvent(e), event, metadata }),
      ]
    },
    ...(deps.clock ? { clock: deps.clock } : {}),
  })
  const toResult = (result: { state: PaymentState; events: unknown[]; duplicate: boolean }): PaymentResult => ({
    payment: result.state,
    events: result.events as PaymentEvent[],
    duplicate: result.duplicate,
  })

  return {
    async process(command, metadata = {}) {
      const streamId = paymentStreamId(command.orderId)
      const { state } = await stateStore.load(deps.db, streamId)
      const request = authorizationRequestFor(command, state)
      const outcome = request ? await deps.authorize(request) : undefined
      return toResult(await handler.handle(streamId, { ...command, outcome }, metadata))
    },
    async refund(command, metadata = {}) {
      return toResult(await handler.handle(paymentStreamId(command.orderId), command, metadata))
    },
    get: async (orderId) => (await stateStore.load(deps.db, paymentStreamId(orderId))).state,
  }
}
