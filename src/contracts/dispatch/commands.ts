import { z } from 'zod'
import { defineCommandTopic, type TopicMessage, type TopicWire } from '../define.ts'
import { commandEnvelopeSchema } from '../envelope.ts'
import { currencyCode, decimalAmount } from '../money.ts'
import { id } from '../order/events.ts'
import { sealedField } from '../personal.ts'
import type { TopicContract } from '../registry.ts'
import { dispatchEventsTopic } from './events.ts'

/**
 * The dispatch service's commands, on `dispatch_commands`: sent by the Create-Order saga
 * (orchestration), or made by the dispatch service itself from `order-events` (choreography, see
 * `dispatchCommandFor` in dispatch/domain/dispatch.ts).
 */

export const DISPATCH_COMMANDS_TOPIC = 'dispatch_commands'

const dispatchCommandEnvelope = commandEnvelopeSchema.extend({ orderId: id('orderId') })

/** Price an order's shipping from its total (choreography: from OrderCreated and OrderUpdated). */
export const quoteShipmentBodyV1 = z.object({
  commandType: z.literal('QuoteShipment'),
  orderId: id('orderId'),
  orderAmount: decimalAmount,
  /** OrderUpdated does not repeat the currency; the quote keeps the one it has. */
  currency: currencyCode.optional(),
})

/**
 * Dispatch a paid and confirmed order. The saga gives the order's total and currency; without
 * them (choreography, from OrderConfirmed) the shipment's earlier quote is used.
 */
export const dispatchOrderBodyV1 = z.object({
  commandType: z.literal('DispatchOrder'),
  orderId: id('orderId'),
  orderAmount: decimalAmount.optional(),
  currency: currencyCode.optional(),
})

/** Version 2 of both: the order's delivery address, sealed (or null), for the carrier. */
export const quoteShipmentBody = quoteShipmentBodyV1.extend({ deliveryAddress: sealedField })
export const dispatchOrderBody = dispatchOrderBodyV1.extend({ deliveryAddress: sealedField })

export const quoteShipmentCommandV1 = dispatchCommandEnvelope.extend(quoteShipmentBodyV1.shape)
export const dispatchOrderCommandV1 = dispatchCommandEnvelope.extend(dispatchOrderBodyV1.shape)
export const quoteShipmentCommand = dispatchCommandEnvelope.extend(quoteShipmentBody.shape)
export const dispatchOrderCommand = dispatchCommandEnvelope.extend(dispatchOrderBody.shape)

export const dispatchCommands = defineCommandTopic({
  topic: DISPATCH_COMMANDS_TOPIC,
  description:
    'Commands to the dispatch service: from the Create-Order saga orchestrator (seed 000). The envelope (commandId, orderId, issuedOn, correlationId, causationId) and the command’s fields share one JSON object. An order is dispatched at most once.',
  key: {
    description: 'the order id: all commands to one order’s shipment are on one partition, in the order they were sent',
    of: (command) => command.orderId,
  },
  envelope: dispatchCommandEnvelope,
  messages: {
    QuoteShipment: {
      schema: quoteShipmentCommand,
      version: 2,
      earlier: {
        1: {
          schema: quoteShipmentCommandV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null }),
        },
      },
      description: 'Work out an order’s shipping cost from its total (ShipmentQuoted when it changes).',
    },
    DispatchOrder: {
      schema: dispatchOrderCommand,
      version: 2,
      earlier: {
        1: {
          schema: dispatchOrderCommandV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null }),
        },
      },
      description:
        'Dispatch a paid and confirmed order (OrderDispatched, once). The amount may be left out when the shipment was quoted.',
    },
  },
})

export type DispatchCommandMessage = TopicMessage<typeof dispatchCommands>
export type DispatchCommandWire = TopicWire<typeof dispatchCommands>
export type DispatchCommandType = DispatchCommandMessage['commandType']

/** A dispatch command without its envelope (amounts in minor units): what the senders make. */
export type DispatchCommandBody = z.output<typeof quoteShipmentBody> | z.output<typeof dispatchOrderBody>

export const dispatchCommandsTopic: TopicContract<'commandType'> = dispatchCommands.contract

/** Every topic of the dispatch service, for the AsyncAPI document. */
export const dispatchTopics: readonly TopicContract[] = [dispatchEventsTopic, dispatchCommandsTopic]

/** Decodes a `dispatch_commands` message; anything that fails is a poison message with a reason. */
export const decodeDispatchCommand = dispatchCommands.decode

/** The wire form of a dispatch command: decimal amounts, ready for `JSON.stringify`. */
export const encodeDispatchCommand = dispatchCommands.encode
