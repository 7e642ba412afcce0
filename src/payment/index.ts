import { hostname } from 'node:os'
import { Counter } from 'prom-client'
import { orderEventsTopic } from '../contracts/order/events.ts'
import { paymentCommandsTopic } from '../contracts/payment/commands.ts'
import { paymentEventsTopic } from '../contracts/payment/events.ts'
import type { ModuleContext, ServiceModule } from '../platform/module.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { authorizeWithRetries, seededRandom } from './application/authorize.ts'
import { createPaymentStore, type PaymentStore } from './application/payment-store.ts'
import { consumeOrderEventsForPayment, consumePaymentCommands } from './consumers/payment-consumers.ts'
import { createSimulatedGateway, type PaymentGateway } from './domain/gateway.ts'

/**
 * The payment service (seed 004): takes each order's payment at most once, through a gateway
 * (simulated and configured by PAYMENT_GATEWAY_*), and publishes the outcome on `payment-events`.
 * Orchestration: commands from the saga on `payment_commands`; choreography: `order-events`.
 */
export interface PaymentModule {
  store: PaymentStore
  gateway: PaymentGateway
  instanceId: string
}

export interface PaymentModuleOptions {
  /** Another gateway than the simulated one configured from the environment. */
  gateway?: PaymentGateway
  /** Names this instance in `payments.processed_by` and the captures metric. */
  instanceId?: string
}

function counter(context: ModuleContext, name: string, help: string, labelNames: string[]) {
  const existing = context.metrics.registry.getSingleMetric(name)
  if (existing) return existing as Counter<string>
  return new Counter({ name, help, labelNames, registers: [context.metrics.registry] })
}

export function paymentModule(options: PaymentModuleOptions = {}): ServiceModule<PaymentModule> {
  return {
    name: 'payment',
    migrations: migrationsBeside(import.meta.url),
    topics: [paymentEventsTopic, paymentCommandsTopic, orderEventsTopic],
    async start(context) {
      const settings = context.config.paymentGateway
      const instanceId = options.instanceId ?? process.env.PAYMENT_INSTANCE_ID ?? `${hostname()}:${process.pid}`
      const gateway =
        options.gateway ??
        createSimulatedGateway({
          ...(settings.declineAbove === undefined ? {} : { declineAbove: settings.declineAbove }),
          declinedCustomers: settings.declinedCustomers,
          latencyMs: settings.latencyMs,
          transientFailureRate: settings.transientFailureRate,
          random: seededRandom(settings.seed),
        })
      const calls = counter(context, 'orderflow_payment_gateway_calls_total', 'Payment gateway calls, by result', [
        'result',
      ])
      const retries = counter(
        context,
        'orderflow_payment_gateway_retries_total',
        'Payment gateway calls retried after a transient fault or a timeout',
        [],
      )
      const decided = counter(
        context,
        'orderflow_payments_decided_total',
        'Payments decided by this process, by outcome and instance',
        ['outcome', 'instance'],
      )
      const logger = context.logger
      const store = createPaymentStore({
        db: context.db,
        onCommitted: context.committed,
        clock: context.clock,
        instanceId,
        authorize: (request) =>
          authorizeWithRetries(gateway, request, settings, {
            onCall: (result) => calls.inc({ result }),
            onRetry: (attempt, error) => {
              retries.inc()
              logger.warn(
                { paymentId: request.paymentId, orderId: request.orderId, attempt, err: error },
                `payment gateway call ${attempt} for order ${request.orderId} failed; retrying`,
              )
            },
          }),
      })
      const observed: PaymentStore = {
        ...store,
        async process(command, metadata) {
          const result = await store.process(command, metadata)
          for (const event of result.events) {
            const outcome = event.eventType === 'PaymentProcessed' ? 'captured' : 'failed'
            decided.inc({ outcome, instance: instanceId })
            logger.info(
              { orderId: event.orderId, paymentId: event.paymentId, instance: instanceId, eventType: event.eventType },
              `payment ${event.paymentId} ${outcome} by ${instanceId}`,
            )
          }
          return result
        },
      }
      await consumePaymentCommands(context, observed)
      if (context.config.sagaMode === 'choreography') await consumeOrderEventsForPayment(context, observed)
      return { store: observed, gateway, instanceId }
    },
  }
}
