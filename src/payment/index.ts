import { hostname } from 'node:os'
import { Counter } from 'prom-client'
import { orderEvents } from '../contracts/order/events.ts'
import { type PaymentCommandMessage, paymentCommands } from '../contracts/payment/commands.ts'
import type { ModuleContext } from '../platform/module.ts'
import { accept, defineService, react } from '../platform/service.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { inChoreography, journeySettings } from '../saga/settings.ts'
import { authorizeWithRetries, seededRandom } from './application/authorize.ts'
import { paymentAggregate, preparePayment } from './application/payment-store.ts'
import { createSimulatedGateway, type PaymentGateway } from './domain/gateway.ts'
import { type PaymentCommand, paymentCommandFor } from './domain/payment.ts'
import { paymentSettings } from './settings.ts'

/**
 * The payment service (seed 004): takes each order's payment at most once, through a gateway
 * (simulated and configured by PAYMENT_GATEWAY_*), and publishes the outcome on `payment-events`.
 * Orchestration: commands from the saga on `payment_commands`; choreography: `order-events`.
 * A payment asks the gateway before its transaction (`prepare`): a consumer's batch asks it for
 * every payment of the batch at once, then writes them all in the batch's one transaction.
 */

/** Orchestration: the Create-Order saga's commands on `payment_commands`. */
export const PAYMENT_COMMANDS_GROUP = 'payment-service-commands'
/** Choreography (seed 004): the payment service reads `order-events` as group `payment-service`. */
export const PAYMENT_ORDER_EVENTS_GROUP = 'payment-service'

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

/** A command off the wire, without its envelope. */
const toCommand = (message: PaymentCommandMessage): PaymentCommand =>
  message.commandType === 'ProcessPayment'
    ? {
        commandType: 'ProcessPayment',
        orderId: message.orderId,
        customerId: message.customerId,
        amount: message.amount,
        currency: message.currency,
      }
    : { commandType: 'RefundPayment', orderId: message.orderId, reason: message.reason }

/** The gateway, its metrics and who this instance is: built from the settings at start. */
function gatewayFor(context: ModuleContext, options: PaymentModuleOptions) {
  const settings = context.settings.get(paymentSettings)
  const instanceId = options.instanceId ?? settings.instanceId ?? `${hostname()}:${process.pid}`
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
  return {
    gateway,
    instanceId,
    decided,
    authorize: (request: Parameters<PaymentGateway['authorize']>[0]) =>
      authorizeWithRetries(gateway, request, settings, {
        onCall: (result) => calls.inc({ result }),
        onRetry: (attempt, error) => {
          retries.inc()
          context.logger.warn(
            { paymentId: request.paymentId, orderId: request.orderId, attempt, err: error },
            `payment gateway call ${attempt} for order ${request.orderId} failed; retrying`,
          )
        },
      }),
  }
}

export function paymentModule(options: PaymentModuleOptions = {}) {
  return defineService({
    name: 'payment',
    migrations: migrationsBeside(import.meta.url),
    settings: [paymentSettings, journeySettings],
    setup: (context) => gatewayFor(context, options),
    aggregate: paymentAggregate,
    intake: [
      accept(paymentCommands, { group: PAYMENT_COMMANDS_GROUP, toCommand }),
      react(orderEvents, {
        group: PAYMENT_ORDER_EVENTS_GROUP,
        when: inChoreography,
        commandFor: paymentCommandFor,
      }),
    ],
    prepare: (command, { authorize, load }) => preparePayment(command, load, authorize),
    observe(result, _command, { decided, instanceId, context }) {
      for (const event of result.events) {
        if (event.eventType !== 'PaymentProcessed' && event.eventType !== 'PaymentFailed') continue
        const outcome = event.eventType === 'PaymentProcessed' ? 'captured' : 'failed'
        decided.inc({ outcome, instance: instanceId })
        context.logger.info(
          { orderId: event.orderId, paymentId: event.paymentId, instance: instanceId, eventType: event.eventType },
          `payment ${event.paymentId} ${outcome} by ${instanceId}`,
        )
      }
    },
  })
}
