import {
  DISPATCH_COMMANDS_TOPIC,
  type DispatchCommandBody,
  type DispatchCommandMessage,
  decodeDispatchCommand,
} from '../../contracts/dispatch/commands.ts'
import { decodeOrderEvent, ORDER_EVENTS_TOPIC, type OrderEvent } from '../../contracts/order/events.ts'
import type { CommandMetadata } from '../../platform/es/command-handler.ts'
import { causedBy, decodeWith } from '../../platform/es/consumed.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { Subscription } from '../../platform/transport/port.ts'
import type { DispatchStore } from '../application/dispatch-store.ts'
import { type DispatchCommand, dispatchCommandFor } from '../domain/dispatch.ts'

/** Orchestration: the saga's DispatchOrder on `dispatch_commands`. */
export const DISPATCH_COMMANDS_GROUP = 'dispatch-service-commands'
/** Choreography: `order-events` (OrderCreated/OrderUpdated quote, OrderConfirmed dispatches). */
export const DISPATCH_ORDER_EVENTS_GROUP = 'dispatch-service'

type Context = Pick<ModuleContext, 'consume' | 'logger'>

const toCommand = (body: DispatchCommandBody): DispatchCommand =>
  body.commandType === 'QuoteShipment'
    ? { commandType: 'QuoteShipment', orderId: body.orderId, orderAmount: body.orderAmount, currency: body.currency }
    : { commandType: 'DispatchOrder', orderId: body.orderId, orderAmount: body.orderAmount, currency: body.currency }

async function apply(store: DispatchStore, body: DispatchCommandBody, metadata: CommandMetadata, context: Context) {
  const result = await store.execute(toCommand(body), metadata)
  context.logger.debug(
    {
      orderId: body.orderId,
      commandType: body.commandType,
      duplicate: result.duplicate,
      events: result.events.map((e) => e.eventType),
    },
    `applied ${body.commandType} to the shipment of order ${body.orderId}`,
  )
}

export function consumeDispatchCommands(
  context: Context,
  store: DispatchStore,
  groupId = DISPATCH_COMMANDS_GROUP,
): Promise<Subscription> {
  return context.consume<DispatchCommandMessage>({
    groupId,
    batch: true,
    topics: [DISPATCH_COMMANDS_TOPIC],
    decode: decodeWith(decodeDispatchCommand),
    handle: (message, raw) => apply(store, message, causedBy(raw, groupId, message), context),
  })
}

export function consumeOrderEventsForDispatch(
  context: Context,
  store: DispatchStore,
  groupId = DISPATCH_ORDER_EVENTS_GROUP,
): Promise<Subscription> {
  return context.consume<OrderEvent>({
    groupId,
    batch: true,
    topics: [ORDER_EVENTS_TOPIC],
    decode: decodeWith(decodeOrderEvent),
    handle: async (event, raw) => {
      const command = dispatchCommandFor(event)
      if (!command) return
      await apply(store, command, causedBy(raw, groupId, event), context)
    },
  })
}
