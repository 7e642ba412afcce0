import { type PaymentEventData, paymentEvents, paymentStreamId } from '../../contracts/payment/events.ts'
import type { StateStore } from '../../platform/es/command-handler.ts'
import { stateTable } from '../../platform/es/state-table.ts'
import type { AggregateDefinition } from '../../platform/service.ts'
import type { AuthorizationRequest, GatewayOutcome } from '../domain/gateway.ts'
import {
  authorizationRequestFor,
  PAYMENT_STREAM_TYPE,
  type PaymentCommand,
  type PaymentState,
  paymentDecider,
} from '../domain/payment.ts'

/**
 * The payment service's write side: one command, or a consumer's batch of them, in one transaction
 * (inbox, events, the `payments` row, the outbox for `payment-events` keyed by the order id).
 *
 * ProcessPayment asks the gateway before the transaction, and only when the payment is not decided
 * yet (`authorizationRequestFor`): a redelivered or re-sent command never reaches the gateway, and
 * a race between two instances leaves one PaymentProcessed (the loser is decided again on the new
 * state, which emits nothing).
 */

/** One row per order's payment in `payments`; `processed_by` names the instance that decided it. */
export function paymentsTable(instanceId: string): StateStore<PaymentState> {
  return stateTable<PaymentState>({
    table: 'payments',
    initialState: () => null,
    locks: false,
    columns: {
      order_id: { type: 'text', of: (payment) => payment.orderId },
      customer_id: { type: 'text', of: (payment) => payment.customerId },
      status: { type: 'text', of: (payment) => payment.status },
      amount: { type: 'bigint', of: (payment) => payment.amount, onUpdate: 'coalesce' },
      currency: { type: 'text', of: (payment) => payment.currency, onUpdate: 'coalesce' },
      processed_by: { type: 'text', of: () => instanceId, onUpdate: 'keep' },
      updated_at: { type: 'timestamptz', of: (payment) => payment.updatedAt },
    },
  })
}

/**
 * An order's payment: stream `payment-<orderId>`, row in `payments` (which names the instance that
 * decided it), events on `payment-events`.
 */
export const paymentAggregate = {
  streamType: PAYMENT_STREAM_TYPE,
  streamOf: (command: PaymentCommand) => paymentStreamId(command.orderId),
  decider: paymentDecider,
  state: ({ instanceId }: { instanceId: string }) => paymentsTable(instanceId),
  publishes: paymentEvents,
} satisfies Omit<AggregateDefinition<PaymentCommand, PaymentEventData, PaymentState>, 'state'> & { state: unknown }

/**
 * A payment command as its transaction carries it out: a ProcessPayment not decided yet asks the
 * gateway first, and carries its outcome; anything else goes as it is.
 */
export async function preparePayment(
  command: PaymentCommand,
  load: (streamId: string) => Promise<PaymentState>,
  authorize: (request: AuthorizationRequest) => Promise<GatewayOutcome>,
): Promise<PaymentCommand> {
  if (command.commandType !== 'ProcessPayment' || command.outcome) return command
  const request = authorizationRequestFor(command, await load(paymentStreamId(command.orderId)))
  const outcome = request ? await authorize(request) : undefined
  return { ...command, outcome }
}
