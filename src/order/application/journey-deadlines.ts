import { v5 as uuidv5 } from 'uuid'
import { deliveryCommands } from '../../contracts/delivery/commands.ts'
import { dispatchCommands } from '../../contracts/dispatch/commands.ts'
import { shipmentIdFor } from '../../contracts/dispatch/events.ts'
import type { OrderEventData } from '../../contracts/order/events.ts'
import { paymentCommands } from '../../contracts/payment/commands.ts'
import { isAppError } from '../../platform/errors.ts'
import type { CommandMetadata, CommandResult } from '../../platform/es/command-handler.ts'
import { commandMessage } from '../../platform/es/messages.ts'
import { scheduleTimer, startTimerPoller, type TimerChange, type TimerPoller } from '../../platform/es/scheduler.ts'
import type { Logger } from '../../platform/logger.ts'
import { enqueue } from '../../platform/outbox/outbox.ts'
import type { SqlDatabase, SqlExecutor } from '../../platform/sql/port.ts'
import type { OutgoingMessage } from '../../platform/transport/port.ts'
import type { JourneySettings } from '../../saga/settings.ts'
import {
  awaitedStep,
  JOURNEY_RETRIES,
  type JourneyDeadline,
  type JourneyStep,
  onDeadline,
} from '../domain/journey-deadlines.ts'
import type { Order, OrderCommand, OrderState } from '../domain/order.ts'

/**
 * Choreography's step timeouts at work (the rules: domain/journey-deadlines.ts). The deadline is a
 * durable timer (platform/es/scheduler.ts) per order, written in the transaction that moved the
 * order and started when that transaction's event is published; the poller below acts on it.
 */

export const JOURNEY_DEADLINE_TIMER = 'order-journey-deadline'

/**
 * The parked journeys that still hold: the order has not moved since (a late answer moves it on,
 * and the park is over without anyone writing it down).
 */
export const PARKED_JOURNEYS = `SELECT p.order_id, p.step, p.reason, p.parked_at
   FROM order_journey_parked p JOIN orders o ON o.id = p.order_id
  WHERE (p.step = 'DISPATCH' AND o.status = 'CONFIRMED') OR (p.step = 'DELIVERY' AND o.status = 'DISPATCHED')`

const timerId = (orderId: string) => `${JOURNEY_DEADLINE_TIMER}:${orderId}`

/** Fixed namespace of the re-sent commands' ids (uuid v5 of order, step and attempt). */
const COMMAND_ID_NAMESPACE = '0f7d5c8e-5c2a-4f0b-9b3e-2d6a1f4c7e90'

export function stepTimeoutsFrom(journey: JourneySettings): Record<JourneyStep, number> {
  const t = journey.timeoutsMs
  return { PAYMENT: t.payment, DISPATCH: t.dispatch, DELIVERY: t.delivery }
}

/**
 * In every command's transaction: an order that moved gets the deadline of what it now waits for
 * (attempt 1), or none when it reached its end. (A parked journey that moved on needs no write: a
 * park counts only while the order is still at the step it names, see `PARKED_JOURNEYS`.)
 */
export function journeyDeadlines(timeoutsMs: Record<JourneyStep, number>) {
  return (
    result: CommandResult<OrderEventData, OrderState>,
    command: OrderCommand,
    metadata: CommandMetadata,
  ): TimerChange[] => {
    const order = result.state
    if (!order || !result.events.some((e) => e.eventType !== 'OrderUpdated')) return []
    const step = awaitedStep(order.status)
    if (!step) return [{ cancel: timerId(command.orderId) }]
    const deadline: JourneyDeadline & { correlationId?: string } = {
      orderId: command.orderId,
      step,
      attempt: 1,
      ...(metadata.correlationId ? { correlationId: metadata.correlationId } : {}),
    }
    return [
      {
        schedule: {
          id: timerId(command.orderId),
          kind: JOURNEY_DEADLINE_TIMER,
          delayMs: timeoutsMs[step],
          payload: deadline,
          ...(result.outboxIds?.length ? { startsWhenPublished: result.outboxIds.at(-1) } : {}),
        },
      },
    ]
  }
}

/** The command a step's service is sent again. */
function resend(step: JourneyStep, order: Order, attempt: number, correlationId: string): OutgoingMessage {
  const envelope = {
    commandId: uuidv5(`${order.id}/journey/${step}/${attempt}`, COMMAND_ID_NAMESPACE),
    issuedOn: new Date().toISOString(),
    correlationId,
    causationId: timerId(order.id),
  }
  switch (step) {
    case 'PAYMENT':
      return commandMessage(paymentCommands, {
        ...envelope,
        commandType: 'ProcessPayment',
        orderId: order.id,
        customerId: order.customerId,
        amount: order.totalAmount,
        currency: order.currency,
      })
    case 'DISPATCH':
      return commandMessage(dispatchCommands, {
        ...envelope,
        commandType: 'DispatchOrder',
        orderId: order.id,
        orderAmount: order.totalAmount,
        currency: order.currency,
      })
    case 'DELIVERY':
      return commandMessage(deliveryCommands, {
        ...envelope,
        commandType: 'ScheduleDelivery',
        orderId: order.id,
        shipmentId: shipmentIdFor(order.id),
      })
  }
}

export interface JourneyDeadlineDeps {
  db: SqlDatabase
  logger: Logger
  pollIntervalMs: number
  timeoutsMs: Record<JourneyStep, number>
  /** Reads the order under its row lock, so a deadline and the order's next move never cross. */
  lockOrder(tx: SqlExecutor, orderId: string): Promise<OrderState>
  /**
   * Cancels the order as any command does (its own transaction: events, outbox, deadline gone),
   * unless it moved past `expectedVersion` meanwhile (VERSION_CONFLICT).
   */
  cancel(orderId: string, reason: string, metadata: { correlationId: string; expectedVersion: number }): Promise<void>
  /** How long the broker has been free of trouble: no answer could come while it was away. */
  troubleFreeForMs(): number
  /** A re-sent command is in the outbox: wake the relay. */
  committed(): void
  onParked(step: JourneyStep): void
}

export function startJourneyDeadlines(deps: JourneyDeadlineDeps): TimerPoller {
  const { db, logger } = deps
  return startTimerPoller<JourneyDeadline & { correlationId?: string }>({
    db,
    kind: JOURNEY_DEADLINE_TIMER,
    logger: logger.child({ component: 'journey-deadline' }),
    pollIntervalMs: deps.pollIntervalMs,
    fire: async (timer) => {
      const deadline = timer.payload
      const timeoutMs = deps.timeoutsMs[deadline.step]
      // As the saga's timeouts: the step gets its whole timeout from when the broker was last in trouble.
      const calmMs = deps.troubleFreeForMs()
      if (calmMs < timeoutMs) return { postponeMs: timeoutMs - calmMs }
      const correlationId = deadline.correlationId ?? deadline.orderId
      const action = await db.transaction(async (tx) => {
        const order = await deps.lockOrder(tx, deadline.orderId)
        const action = onDeadline(deadline, order, { retries: JOURNEY_RETRIES, timeoutMs })
        if (action.kind === 'resend') {
          const [outboxId] = await enqueue(tx, [resend(action.step, action.order, action.attempt, correlationId)])
          await scheduleTimer(tx, {
            id: timer.id,
            kind: JOURNEY_DEADLINE_TIMER,
            delayMs: timeoutMs,
            payload: { ...deadline, attempt: action.attempt },
            ...(outboxId ? { startsWhenPublished: outboxId } : {}),
          })
        } else if (action.kind === 'park') {
          await tx.query(
            `INSERT INTO order_journey_parked (order_id, step, reason) VALUES ($1, $2, $3)
             ON CONFLICT (order_id) DO UPDATE SET step = EXCLUDED.step, reason = EXCLUDED.reason, parked_at = now()`,
            [deadline.orderId, action.step, action.reason],
          )
        }
        return action
      })
      const fields = { orderId: deadline.orderId, step: deadline.step, attempt: deadline.attempt }
      switch (action.kind) {
        case 'stale':
          return undefined
        case 'resend':
          deps.committed()
          logger.warn(
            { ...fields, next: action.attempt },
            `order ${deadline.orderId} waited ${timeoutMs} ms for ${deadline.step}: sent its command again (attempt ${action.attempt})`,
          )
          return undefined
        case 'cancel':
          logger.warn(fields, `order ${deadline.orderId}: ${action.reason}; cancelling it`)
          try {
            await deps.cancel(deadline.orderId, action.reason, { correlationId, expectedVersion: action.version })
          } catch (error) {
            // The payment's outcome came between the look and the cancel: the order went on.
            if (!isAppError(error, 'VERSION_CONFLICT')) throw error
            logger.info(fields, `order ${deadline.orderId} moved on before its cancel; left as it is`)
          }
          return undefined
        case 'park':
          deps.onParked(action.step)
          logger.error(fields, `order ${deadline.orderId} parked at ${action.step}: ${action.reason}`)
          return undefined
      }
    },
  })
}
