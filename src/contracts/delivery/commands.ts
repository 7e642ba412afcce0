import { z } from 'zod'
import { defineCommandTopic, type TopicMessage, type TopicWire } from '../define.ts'
import { commandEnvelopeSchema } from '../envelope.ts'
import { id } from '../order/events.ts'
import { sealedField } from '../personal.ts'
import type { TopicContract } from '../registry.ts'
import { deliveryEventsTopic } from './events.ts'

/**
 * The delivery service's commands, on `delivery_commands`: ScheduleDelivery from the Create-Order
 * saga (orchestration) or made by the delivery service from OrderDispatched (choreography, see
 * `deliveryCommandFor` in delivery/domain/delivery.ts); DeliverOrder from the delivery service's
 * own timer when a delivery is due (or an operator who wants it now).
 */

export const DELIVERY_COMMANDS_TOPIC = 'delivery_commands'

const deliveryCommandEnvelope = commandEnvelopeSchema.extend({ orderId: id('orderId') })

/** Start delivering a dispatched order; the delay is the delivery service's configuration. */
export const scheduleDeliveryBodyV1 = z.object({
  commandType: z.literal('ScheduleDelivery'),
  orderId: id('orderId'),
  shipmentId: id('shipmentId'),
})

/** Version 2: where to deliver, sealed as the order service sealed it (or null). */
export const scheduleDeliveryBody = scheduleDeliveryBodyV1.extend({ deliveryAddress: sealedField })

/** Hand a scheduled delivery to the customer. */
export const deliverOrderBody = z.object({
  commandType: z.literal('DeliverOrder'),
  orderId: id('orderId'),
})

export const scheduleDeliveryCommand = deliveryCommandEnvelope.extend(scheduleDeliveryBody.shape)
export const scheduleDeliveryCommandV1 = deliveryCommandEnvelope.extend(scheduleDeliveryBodyV1.shape)
export const deliverOrderCommand = deliveryCommandEnvelope.extend(deliverOrderBody.shape)

/** `delivery_commands`: what the delivery service is asked to do, per order. */
export const deliveryCommands = defineCommandTopic({
  topic: DELIVERY_COMMANDS_TOPIC,
  description:
    'Commands to the delivery service: from the Create-Order saga orchestrator (seed 000) and the delivery service’s own timer. The envelope (commandId, orderId, issuedOn, correlationId, causationId) and the command’s fields share one JSON object. An order is delivered at most once.',
  key: {
    description: 'the order id: all commands to one order’s delivery are on one partition, in the order they were sent',
    of: (command) => command.orderId,
  },
  envelope: deliveryCommandEnvelope,
  messages: {
    ScheduleDelivery: {
      schema: scheduleDeliveryCommand,
      version: 2,
      earlier: {
        1: {
          schema: scheduleDeliveryCommandV1,
          upcast: (v1: Record<string, unknown>) => ({ ...v1, deliveryAddress: null }),
        },
      },
      description:
        'Start delivering a dispatched order (DeliveryScheduled, once): it is due after the configured delay.',
    },
    DeliverOrder: {
      schema: deliverOrderCommand,
      description: 'Deliver an order whose delivery was scheduled (OrderDelivered, once).',
    },
  },
})

export type DeliveryCommandMessage = TopicMessage<typeof deliveryCommands>
export type DeliveryCommandWire = TopicWire<typeof deliveryCommands>
export type DeliveryCommandType = DeliveryCommandMessage['commandType']

/** A delivery command without its envelope: what the senders make. */
export type DeliveryCommandBody = z.output<typeof scheduleDeliveryBody> | z.output<typeof deliverOrderBody>

export const deliveryCommandsTopic: TopicContract<'commandType'> = deliveryCommands.contract

/** Every topic of the delivery service, for the AsyncAPI document. */
export const deliveryTopics: readonly TopicContract[] = [deliveryEventsTopic, deliveryCommandsTopic]

/** Decodes a `delivery_commands` message; anything that fails is a poison message with a reason. */
export const decodeDeliveryCommand = deliveryCommands.decode

/** The wire form of a delivery command, ready for `JSON.stringify`. */
export const encodeDeliveryCommand = deliveryCommands.encode
