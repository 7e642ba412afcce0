import { Counter, Gauge } from 'prom-client'
import { deliveryCommandsTopic } from '../contracts/delivery/commands.ts'
import { dispatchCommandsTopic } from '../contracts/dispatch/commands.ts'
import { orderCommandsTopic } from '../contracts/order/commands.ts'
import { paymentCommandsTopic } from '../contracts/payment/commands.ts'
import { startTimerPoller } from '../platform/es/scheduler.ts'
import type { ModuleContext, ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { tableGauge } from '../platform/table-metrics.ts'
import { trackBrokerHealth } from '../platform/transport/broker-health.ts'
import { createSagaProcessor, SAGA_TIMEOUT_TIMER, type SagaProcessor } from './application/saga-processor.ts'
import { consumeSagaInputs, SAGA_GROUP } from './consumers/saga-inputs.ts'
import {
  createOrderSagaSteps,
  defineCreateOrderSaga,
  type SagaStepPolicies,
  type SagaStepTimedOut,
} from './domain/create-order-saga.ts'
import { sagaRoutes } from './http/routes.ts'
import { type JourneySettings, journeySettings } from './settings.ts'

/**
 * The Create-Order saga orchestrator (seed 000), run when SAGA_MODE=orchestration: it follows the
 * journey's events, sends each service its commands through the outbox, keeps its state per order,
 * and fires its step timeouts from durable timers. In choreography it runs nothing but answers its
 * routes with "no saga".
 */
export interface SagaModule {
  processor: SagaProcessor
  steps: SagaStepPolicies
}

/** The step table with the timeouts from the configuration (retries and what to do stay as declared). */
export function sagaStepsFrom(journey: JourneySettings): SagaStepPolicies {
  const t = journey.timeoutsMs
  const s = createOrderSagaSteps
  return {
    PAYMENT: { ...s.PAYMENT, timeoutMs: t.payment },
    CONFIRM_ORDER: { ...s.CONFIRM_ORDER, timeoutMs: t.confirm },
    DISPATCH: { ...s.DISPATCH, timeoutMs: t.dispatch },
    DELIVERY: { ...s.DELIVERY, timeoutMs: t.delivery },
    REFUND_PAYMENT: { ...s.REFUND_PAYMENT, timeoutMs: t.compensation },
    REJECT_ORDER: { ...s.REJECT_ORDER, timeoutMs: t.compensation },
  }
}

function sagaMetrics(context: ModuleContext) {
  const registry = context.metrics.registry
  const ended =
    (registry.getSingleMetric('orderflow_sagas_ended_total') as Counter<'status' | 'outcome'> | undefined) ??
    new Counter({
      name: 'orderflow_sagas_ended_total',
      help: 'Create-Order sagas that completed (outcome DELIVERED or CANCELLED) or parked, in this process',
      labelNames: ['status', 'outcome'],
      registers: [registry],
    })
  if (!registry.getSingleMetric('orderflow_sagas_parked')) {
    const db = context.db
    new Gauge({
      name: 'orderflow_sagas_parked',
      help: 'Create-Order sagas parked and waiting for an operator (all processes: read from the database)',
      registers: [registry],
      async collect() {
        try {
          const { rows } = await db.query<{ n: string }>(
            "SELECT count(*)::text AS n FROM sagas WHERE status = 'PARKED'",
          )
          this.set(Number(rows[0]?.n ?? 0))
        } catch {
          // The database is away: /metrics still answers; /health reports the database.
        }
      },
    })
  }
  // What every saga in flight waits for: where sagas pile up (a step whose service is down).
  tableGauge(registry, context.db, {
    name: 'orderflow_sagas_in_progress',
    help: 'Create-Order sagas not completed, by status (RUNNING, COMPENSATING, PARKED) and step (all processes: read from the database)',
    labelNames: ['status', 'step'],
    sql: `SELECT status, coalesce(step, '') AS step, count(*)::float8 AS value FROM sagas
           WHERE status IN ('NOT_STARTED', 'RUNNING', 'COMPENSATING', 'PARKED') GROUP BY status, step`,
  })
  return { ended }
}

export function sagaModule(options: { steps?: SagaStepPolicies } = {}): ServiceModule<SagaModule> {
  return {
    name: 'saga',
    migrations: migrationsBeside(import.meta.url),
    settings: [journeySettings],
    topics: [paymentCommandsTopic, orderCommandsTopic, dispatchCommandsTopic, deliveryCommandsTopic],
    async start(context) {
      const journey = context.settings.get(journeySettings)
      const steps = options.steps ?? sagaStepsFrom(journey)
      const { ended } = sagaMetrics(context)
      const logger = context.logger
      let wake: (inMs: number) => void = () => {}
      const processor = createSagaProcessor({
        db: context.db,
        workflow: defineCreateOrderSaga(steps),
        onCommitted: context.committed,
        onScheduled: (delayMs) => context.afterCommit(() => wake(delayMs)),
        clock: context.clock,
        logger,
        // Counted and said once the saga's transaction committed (a consumer's batch may roll back).
        onEnded: (state) =>
          context.afterCommit(() => {
            ended.inc({ status: state.status, outcome: state.outcome ?? '' })
            if (state.status === 'PARKED') {
              logger.error(
                { orderId: state.orderId, step: state.step, reason: state.parkedReason },
                `saga of order ${state.orderId} parked at ${state.step}: ${state.parkedReason}`,
              )
            }
          }),
      })
      const routes = sagaRoutes({ processor, db: context.db, mode: journey.mode, group: SAGA_GROUP })
      if (journey.mode !== 'orchestration') return { processor, steps, routes }

      const broker = trackBrokerHealth(context.transport)
      const timers = startTimerPoller<SagaStepTimedOut>({
        db: context.db,
        kind: SAGA_TIMEOUT_TIMER,
        logger: logger.child({ component: 'saga-timer' }),
        pollIntervalMs: context.platform.schedulerPollIntervalMs,
        // A timeout that is not the current step's current attempt is stale: the saga ignores it.
        fire: async (timer) => {
          const timeout = timer.payload
          // No answer could come while the broker was away: the step gets its whole timeout from
          // the moment the broker was last seen in trouble.
          const stepTimeoutMs = steps[timeout.step]?.timeoutMs ?? 0
          const calmMs = broker.troubleFreeForMs()
          if (calmMs < stepTimeoutMs) return { postponeMs: stepTimeoutMs - calmMs }
          await processor.handle(timeout, {
            consumer: SAGA_TIMEOUT_TIMER,
            messageId: `${timer.id}:${timeout.step}:${timeout.attempt}`,
          })
          return undefined
        },
      })
      wake = (inMs) => timers.wake(inMs)
      const stopTimers = async () => {
        broker.stop()
        await timers.stop()
      }
      try {
        await consumeSagaInputs(context, processor)
      } catch (error) {
        await stopTimers()
        throw error
      }
      return { processor, steps, routes, stop: stopTimers }
    },
  }
}
