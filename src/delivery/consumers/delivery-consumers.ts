import {
  DELIVERY_COMMANDS_TOPIC,
  type DeliveryCommandBody,
  type DeliveryCommandMessage,
  decodeDeliveryCommand,
} from '../../contracts/delivery/commands.ts'
import { DISPATCH_EVENTS_TOPIC, type DispatchEvent, decodeDispatchEvent } from '../../contracts/dispatch/events.ts'
import type { CommandMetadata } from '../../platform/es/command-handler.ts'
import { causedBy, decodeWith } from '../../platform/es/consumed.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { Subscription } from '../../platform/transport/port.ts'
import type { DeliveryStore } from '../application/delivery-store.ts'
import { type DeliveryCommand, deliveryCommandFor } from '../domain/delivery.ts'

/** Orchestration: the saga's ScheduleDelivery (and anyone's DeliverOrder) on `delivery_commands`. */
export const DELIVERY_COMMANDS_GROUP = 'delivery-service-commands'
/** Choreography (seed 004): `dispatch-events`, OrderDispatched → ScheduleDelivery. */
export const DELIVERY_DISPATCH_EVENTS_GROUP = 'delivery-service'

type Context = Pick<ModuleContext, 'consume' | 'logger'>

async function apply(
  store: DeliveryStore,
  body: DeliveryCommandBody,
  delayMs: number,
  metadata: CommandMetadata,
  context: Context,
) {
  const command: DeliveryCommand =
    body.commandType === 'ScheduleDelivery'
      ? { commandType: 'ScheduleDelivery', orderId: body.orderId, shipmentId: body.shipmentId, delayMs }
      : { commandType: 'DeliverOrder', orderId: body.orderId }
  const result = await store.execute(command, metadata)
  context.logger.debug(
    {
      orderId: body.orderId,
      commandType: body.commandType,
      duplicate: result.duplicate,
      events: result.events.map((e) => e.eventType),
    },
    `applied ${body.commandType} to the delivery of order ${body.orderId}`,
  )
}

export function consumeDeliveryCommands(
  context: Context,
  store: DeliveryStore,
  delayMs: number,
  groupId = DELIVERY_COMMANDS_GROUP,
): Promise<Subscription> {
  return context.consume<DeliveryCommandMessage>({
    groupId,
    batch: true,
    topics: [DELIVERY_COMMANDS_TOPIC],
    decode: decodeWith(decodeDeliveryCommand),
    handle: (message, raw) => apply(store, message, delayMs, causedBy(raw, groupId, message), context),
  })
}

export function consumeDispatchEventsForDelivery(
  context: Context,
  store: DeliveryStore,
  delayMs: number,
  groupId = DELIVERY_DISPATCH_EVENTS_GROUP,
): Promise<Subscription> {
  return context.consume<DispatchEvent>({
    groupId,
    batch: true,
    topics: [DISPATCH_EVENTS_TOPIC],
    decode: decodeWith(decodeDispatchEvent),
    handle: async (event, raw) => {
      const body = deliveryCommandFor(event)
      if (!body) return
      await apply(store, body, delayMs, causedBy(raw, groupId, event), context)
    },
  })
}
