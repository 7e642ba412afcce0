import { type DeliveryCommandMessage, deliveryCommands } from '../contracts/delivery/commands.ts'
import { dispatchEvents } from '../contracts/dispatch/events.ts'
import type { Sealed } from '../contracts/personal.ts'
import { startTimerPoller } from '../platform/es/scheduler.ts'
import { accept, defineService, type IntakeContext, react } from '../platform/service.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { inChoreography, journeySettings } from '../saga/settings.ts'
import { DELIVERY_DUE_TIMER, deliveryAggregate, deliveryTimerFor } from './application/delivery-store.ts'
import { type DeliveryCommand, deliveryCommandFor } from './domain/delivery.ts'
import { deliverySettings } from './settings.ts'

/**
 * The delivery service (seed 004): a dispatched order is scheduled for DELIVERY_DELAY_MS and
 * delivered when due (OrderDelivered on `delivery-events`). The delay is a durable timer, not a
 * sleep: no consumer waits, and a restart finds scheduled deliveries again.
 */

/** Orchestration: the saga's ScheduleDelivery (and anyone's DeliverOrder) on `delivery_commands`. */
export const DELIVERY_COMMANDS_GROUP = 'delivery-service-commands'
/** Choreography (seed 004): `dispatch-events`, OrderDispatched → ScheduleDelivery. */
export const DELIVERY_DISPATCH_EVENTS_GROUP = 'delivery-service'

/** A command off the wire; a schedule gets the configured travel time. */
const toCommand = (
  body: Pick<DeliveryCommandMessage, 'commandType' | 'orderId'> & {
    shipmentId?: string
    deliveryAddress?: Sealed | null | undefined
  },
  { settings }: IntakeContext,
): DeliveryCommand | null =>
  body.commandType === 'ScheduleDelivery'
    ? body.shipmentId === undefined
      ? null
      : {
          commandType: 'ScheduleDelivery',
          orderId: body.orderId,
          shipmentId: body.shipmentId,
          delayMs: settings.get(deliverySettings).delayMs,
          ...(body.deliveryAddress ? { deliveryAddress: body.deliveryAddress } : {}),
        }
    : { commandType: 'DeliverOrder', orderId: body.orderId }

export const deliveryService = defineService({
  name: 'delivery',
  migrations: migrationsBeside(import.meta.url),
  settings: [deliverySettings, journeySettings],
  /** The due-delivery timer, woken once a schedule committed; started with the module. */
  setup: () => ({ timer: { wake: (_inMs: number) => {} } }),
  aggregate: deliveryAggregate,
  intake: [
    accept(deliveryCommands, { group: DELIVERY_COMMANDS_GROUP, toCommand }),
    react(dispatchEvents, {
      group: DELIVERY_DISPATCH_EVENTS_GROUP,
      when: inChoreography,
      commandFor: (event, context) => {
        const body = deliveryCommandFor(event)
        return body && toCommand(body, context)
      },
    }),
  ],
  // A scheduled delivery's timer, in the transaction that scheduled it; woken once that committed.
  within:
    ({ context, timer }) =>
    (result, command, metadata) => {
      const due = deliveryTimerFor(result, command, metadata)
      if (!due) return []
      context.afterCommit(() => timer.wake(due.delayMs))
      return [{ schedule: due }]
    },
  start(context, { execute, executeBatch, timer }) {
    const timers = startTimerPoller<{ orderId: string; correlationId?: string; traceparent?: string }>({
      db: context.db,
      kind: DELIVERY_DUE_TIMER,
      logger: context.logger.child({ component: 'delivery-timer' }),
      pollIntervalMs: context.platform.schedulerPollIntervalMs,
      // DeliverOrder is idempotent (a second one emits nothing), so a timer fired twice is harmless.
      fire: async ({ payload: { orderId, correlationId, traceparent } }) => {
        await execute(
          { commandType: 'DeliverOrder', orderId },
          { ...(correlationId ? { correlationId } : {}), ...(traceparent ? { traceparent } : {}) },
        )
      },
      // Deliveries due together in one transaction; the inbox (one entry per timer's due time) makes
      // a batch fired again after a crash change nothing.
      fireBatch: async (due) => {
        await executeBatch(
          due.map(({ id, dueAt, payload: { orderId, correlationId, traceparent } }) => ({
            command: { commandType: 'DeliverOrder', orderId },
            metadata: {
              inbox: { consumer: DELIVERY_DUE_TIMER, messageId: `${id}@${dueAt}` },
              ...(correlationId ? { correlationId } : {}),
              ...(traceparent ? { traceparent } : {}),
            },
          })),
        )
      },
    })
    timer.wake = (inMs) => timers.wake(inMs)
    return { stop: () => timers.stop() }
  },
})

/** The delivery service as a module (`SERVICES=delivery`). */
export const deliveryModule = () => deliveryService
