import { Histogram } from 'prom-client'
import type { OrderEventData } from '../../contracts/order/events.ts'
import type { CommandResult } from '../../platform/es/command-handler.ts'
import type { ModuleContext } from '../../platform/module.ts'
import type { OrderState } from '../domain/order.ts'

const TERMINAL = new Set(['DELIVERED', 'CANCELLED'])

/**
 * `orderflow_journey_duration_seconds`: from an order's creation (its POST, or the checkout that
 * made it) to its terminal state, DELIVERED or CANCELLED, observed once per order by the process
 * whose command ended it, after that command committed (a rolled-back batch observes nothing). The
 * same in both saga modes: every order ends through an order command.
 */
export function journeyDurations(
  context: Pick<ModuleContext, 'metrics' | 'clock' | 'afterCommit'>,
): (result: CommandResult<OrderEventData, OrderState>) => void {
  const registry = context.metrics.registry
  const histogram =
    (registry.getSingleMetric('orderflow_journey_duration_seconds') as Histogram<'outcome'> | undefined) ??
    new Histogram({
      name: 'orderflow_journey_duration_seconds',
      help: 'Time from an order’s creation to its terminal state, by outcome (DELIVERED or CANCELLED)',
      labelNames: ['outcome'],
      buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600],
      registers: [registry],
    })
  return (result) => {
    const order = result.state
    if (!order || !TERMINAL.has(order.status)) return
    // Only the command whose events ended the journey: a terminal order stays terminal.
    const ended = result.events.some(
      (event) =>
        event.eventType === 'OrderCancelled' || (event.eventType === 'OrderStatusChanged' && TERMINAL.has(event.to)),
    )
    if (!ended) return
    const outcome = order.status
    const createdAt = Date.parse(order.createdAt)
    context.afterCommit(() => {
      histogram.observe({ outcome }, Math.max(0, (context.clock().getTime() - createdAt) / 1000))
    })
  }
}
