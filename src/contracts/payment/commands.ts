import { z } from 'zod'
import { defineCommandTopic, type TopicMessage, type TopicWire } from '../define.ts'
import { commandEnvelopeSchema } from '../envelope.ts'
import { currencyCode, decimalAmount } from '../money.ts'
import { id, reason } from '../order/events.ts'
import type { TopicContract } from '../registry.ts'
import { paymentEventsTopic } from './events.ts'

/**
 * The payment service's commands, on `payment_commands`: sent by the Create-Order saga
 * (orchestration), or made by the payment service itself from `order-events` (choreography, see
 * `paymentCommandFor` in payment/domain/payment.ts). Amounts are decimals on the wire and minor
 * units once decoded (see money.ts).
 */

export const PAYMENT_COMMANDS_TOPIC = 'payment_commands'

/** The platform's command envelope, with the order id that every payment command addresses. */
const paymentCommandEnvelope = commandEnvelopeSchema.extend({ orderId: id('orderId') })

// Each command is its body (what a sender decides) plus the envelope (what sending adds).

/** Charge the order's total. The payment id is derived from the order id (one payment per order). */
export const processPaymentBody = z.object({
  commandType: z.literal('ProcessPayment'),
  orderId: id('orderId'),
  customerId: id('customerId'),
  amount: decimalAmount,
  currency: currencyCode,
})

/** Give a captured payment back in full; before any capture it voids the payment instead. */
export const refundPaymentBody = z.object({
  commandType: z.literal('RefundPayment'),
  orderId: id('orderId'),
  reason,
})

export const processPaymentCommand = paymentCommandEnvelope.extend(processPaymentBody.shape)
export const refundPaymentCommand = paymentCommandEnvelope.extend(refundPaymentBody.shape)

/** `payment_commands`: what the payment service is asked to do, per order. */
export const paymentCommands = defineCommandTopic({
  topic: PAYMENT_COMMANDS_TOPIC,
  description:
    'Commands to the payment service: from the Create-Order saga orchestrator (seed 000). The envelope (commandId, orderId, issuedOn, correlationId, causationId) and the command’s fields share one JSON object. Each command is applied once; a payment is captured at most once per order.',
  key: {
    description: 'the order id: all commands to one order’s payment are on one partition, in the order they were sent',
    of: (command) => command.orderId,
  },
  envelope: paymentCommandEnvelope,
  messages: {
    ProcessPayment: {
      schema: processPaymentCommand,
      aliases: ['AuthorizePayment'],
      description:
        'Charge an order’s total: PaymentProcessed or PaymentFailed follows. Sent again for an order already charged, it changes nothing. AuthorizePayment means the same.',
    },
    RefundPayment: {
      schema: refundPaymentCommand,
      description:
        'Give an order’s captured payment back (PaymentRefunded), or close a payment never captured (PaymentVoided). A declined or already refunded payment is left as it is.',
    },
  },
})

/** A decoded `payment_commands` message (amounts in minor units). */
export type PaymentCommandMessage = TopicMessage<typeof paymentCommands>
export type PaymentCommandWire = TopicWire<typeof paymentCommands>
export type PaymentCommandType = PaymentCommandMessage['commandType']

/**
 * A payment command without its envelope, amounts in minor units: what the saga sends and the
 * choreography mapping makes; the sender adds commandId, issuedOn, correlationId and causationId.
 */
export type PaymentCommandBody = z.output<typeof processPaymentBody> | z.output<typeof refundPaymentBody>

export const paymentCommandsTopic: TopicContract<'commandType'> = paymentCommands.contract

/** Every topic of the payment service, for the AsyncAPI document. */
export const paymentTopics: readonly TopicContract[] = [paymentEventsTopic, paymentCommandsTopic]

/** Decodes a `payment_commands` message; anything that fails is a poison message with a reason. */
export const decodePaymentCommand = paymentCommands.decode

/** The wire form of a payment command: decimal amounts, ready for `JSON.stringify`. */
export const encodePaymentCommand = paymentCommands.encode
