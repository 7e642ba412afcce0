import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { AuditReport } from '../../src/audit/audit.ts'
import { DISPATCH_COMMANDS_GROUP, DISPATCH_ORDER_EVENTS_GROUP } from '../../src/dispatch/index.ts'
import { PAYMENT_COMMANDS_GROUP, PAYMENT_ORDER_EVENTS_GROUP } from '../../src/payment/index.ts'
import type { Transport } from '../../src/platform/transport/port.ts'
import { waitFor } from '../support/index.ts'
import {
  counterTotal,
  gatedGroup,
  getOrder,
  type Infrastructure,
  type JourneyApp,
  orderReaches,
  placeOrder,
  seed004Order,
  startJourneyApp,
} from './support.ts'

/**
 * In choreography every step has the saga's timeout (order/domain/journey-deadlines.ts): nothing
 * waits forever. Timeouts of 300 ms for payment and dispatch; the faults are the services' consumers
 * losing or holding their messages (gated consumer groups), one order at a time.
 */
export function journeyDeadlinesSuite(infra: Infrastructure): void {
  describe(`step timeouts in choreography (${infra})`, () => {
    let j: JourneyApp
    const gates = {
      paymentEvents: gatedGroup(PAYMENT_ORDER_EVENTS_GROUP),
      paymentCommands: gatedGroup(PAYMENT_COMMANDS_GROUP),
      dispatchEvents: gatedGroup(DISPATCH_ORDER_EVENTS_GROUP),
      dispatchCommands: gatedGroup(DISPATCH_COMMANDS_GROUP),
    }
    const passAll = () => {
      for (const gate of Object.values(gates)) gate.pass()
    }

    before(async () => {
      j = await startJourneyApp({
        infra,
        mode: 'choreography',
        wrapTransport: (transport) =>
          Object.values(gates).reduce<Transport>((wrapped, gate) => gate.wrap(wrapped), transport),
        env: {
          SAGA_PAYMENT_TIMEOUT_MS: '300',
          SAGA_DISPATCH_TIMEOUT_MS: '300',
          SAGA_DELIVERY_TIMEOUT_MS: '2000',
          SCHEDULER_POLL_INTERVAL_MS: '50',
        },
      })
    })
    after(async () => {
      passAll()
      await j?.close()
    })

    const audit = async () =>
      (await j.app.http.inject({ method: 'GET', url: '/api/audit?stuckAfterMs=0' })).json<AuditReport>()
    const auditIsClean = async () => {
      let last: AuditReport | undefined
      await waitFor(
        async () => {
          last = await audit()
          return last.ok
        },
        { timeoutMs: 20_000, message: () => `the auditor to be clean: ${JSON.stringify(last?.checks)}` },
      )
    }

    it('cancels an order whose payment never answers, after the saga’s tries, and refunds a late capture', async () => {
      // The payment service is down (its order-events wait) and loses the commands sent again.
      gates.paymentEvents.hold()
      gates.paymentCommands.drop()
      const sentBefore = gates.paymentCommands.seen()
      const order = await placeOrder(j.app, seed004Order)
      const cancelled = await orderReaches(j.app, order.id, 'CANCELLED')
      assert.match(String(cancelled.cancellationReason), /no payment outcome after 3 tries of 300 ms/)
      // Attempts 2 and 3 were ProcessPayment sent again on payment_commands.
      assert.equal(gates.paymentCommands.seen() - sentBefore, 2)
      // The payment service comes back: it captures from OrderCreated and refunds from OrderCancelled.
      passAll()
      await auditIsClean()
      assert.equal((await getOrder(j.app, order.id)).status, 'CANCELLED')
    })

    it('sends a lost dispatch again, and the order is delivered', async () => {
      // The dispatch service lost OrderConfirmed; the command sent again on the deadline ships it.
      gates.dispatchEvents.drop()
      const order = await placeOrder(j.app, seed004Order)
      await orderReaches(j.app, order.id, 'DELIVERED')
      gates.dispatchEvents.pass()
      await auditIsClean()
    })

    it('parks a journey whose dispatch never answers, for an operator, and a late dispatch moves it on', async () => {
      gates.dispatchEvents.drop()
      gates.dispatchCommands.hold()
      const order = await placeOrder(j.app, seed004Order)
      await orderReaches(j.app, order.id, 'CONFIRMED')
      let last: AuditReport | undefined
      const stuck = await waitFor(
        async () => {
          last = await audit()
          return last.stuck.find((s) => s.orderId === order.id && s.parkedReason !== null)
        },
        { message: () => `the order to be parked: ${JSON.stringify(last?.stuck)}` },
      )
      assert.equal(stuck.step, 'DISPATCH')
      assert.match(String(stuck.parkedReason), /no dispatch after 3 tries of 300 ms/)
      assert.equal(await counterTotal(j.app, 'orderflow_journeys_parked'), 1)
      assert.equal(await counterTotal(j.app, 'orderflow_journeys_parked_total', { step: 'DISPATCH' }), 1)
      assert.equal((await getOrder(j.app, order.id)).status, 'CONFIRMED', 'a parked order is not cancelled')
      // The dispatch service answers at last: the commands it held ship the order once.
      passAll()
      await orderReaches(j.app, order.id, 'DELIVERED')
      assert.equal(await counterTotal(j.app, 'orderflow_journeys_parked'), 0)
      await auditIsClean()
      assert.equal(await counterTotal(j.app, 'orderflow_dead_letters_total'), 0)
    })
  })
}
