import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { AuditReport } from '../../src/audit/audit.ts'
import { DELIVERY_EVENTS_TOPIC } from '../../src/contracts/delivery/events.ts'
import { DISPATCH_EVENTS_TOPIC } from '../../src/contracts/dispatch/events.ts'
import { PAYMENT_EVENTS_TOPIC } from '../../src/contracts/payment/events.ts'
import type { IncomingMessage, Subscription } from '../../src/platform/transport/port.ts'
import { follow, waitFor } from '../support/index.ts'
import {
  capturesOf,
  counterTotal,
  getOrder,
  type Infrastructure,
  type JourneyApp,
  orderReaches,
  paymentOf,
  placeOrder,
  type SagaMode,
  seed004Order,
  startJourneyApp,
} from './support.ts'

/**
 * The order journey end to end, through HTTP and the real transport, the same for both modes and
 * both infrastructures (each test file picks one of each): success (seed 004's check), declines,
 * transient gateway failures, a gateway that does not answer in time, cancellation after capture,
 * and every event and command delivered twice.
 */
/**
 * Asks the auditor until it is clean and has read the lag of at least `groups` consumer groups: a
 * group is in the lag report once it committed a position, which the embedded log does once a
 * partition has been idle a moment (or every second while busy), not with every message.
 */
async function auditUntilClean(j: JourneyApp, groups = 0): Promise<AuditReport> {
  let last: AuditReport | undefined
  return waitFor(
    async () => {
      last = (await j.app.http.inject({ method: 'GET', url: '/api/audit?stuckAfterMs=0' })).json<AuditReport>()
      return last.ok && (last.lag ?? []).length >= groups ? last : null
    },
    {
      timeoutMs: 15_000,
      message: () =>
        `the auditor to be clean, with the lag of ${groups} groups read: ${JSON.stringify(last?.checks.filter((c) => !c.ok))}, lag ${JSON.stringify(last?.lag)}`,
    },
  )
}

export function journeySuite(infra: Infrastructure, mode: SagaMode): void {
  describe(`the order journey (${mode}, ${infra})`, () => {
    describe('with every message delivered twice and a flaky gateway', () => {
      let j: JourneyApp
      const followers: { seen: IncomingMessage[]; sub: Subscription }[] = []
      before(async () => {
        j = await startJourneyApp({
          infra,
          mode,
          duplicate: true,
          env: {
            PAYMENT_GATEWAY_DECLINE_ABOVE: '1000.00',
            PAYMENT_GATEWAY_DECLINED_CUSTOMERS: 'customer-declined',
            PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE: '0.3',
            PAYMENT_GATEWAY_ATTEMPTS: '10',
            PAYMENT_GATEWAY_SEED: '7',
          },
        })
        for (const topic of [PAYMENT_EVENTS_TOPIC, DISPATCH_EVENTS_TOPIC, DELIVERY_EVENTS_TOPIC]) {
          followers.push(await follow(j.transport, topic))
        }
      })
      after(async () => {
        for (const f of followers) await f.sub.close().catch(() => {})
        await j?.close()
      })

      it("delivers seed 004's order, with its event on payment-, dispatch- and delivery-events keyed by the order id", async () => {
        const order = await placeOrder(j.app, seed004Order)
        await orderReaches(j.app, order.id, 'DELIVERED')
        const expected: [number, string][] = [
          [0, 'PaymentProcessed'],
          [1, 'OrderDispatched'],
          [2, 'OrderDelivered'],
        ]
        const correlationIds: string[] = []
        for (const [i, eventType] of expected) {
          const seen = followers[i]?.seen ?? []
          const message = await waitFor(
            () => seen.find((m) => m.key === order.id && m.headers['event-type'] === eventType),
            { message: `${eventType} for ${order.id}` },
          )
          const body = JSON.parse(message.value)
          assert.equal(body.eventType, eventType)
          assert.equal(body.orderId, order.id)
          for (const field of ['eventId', 'aggregateId', 'occurredOn', 'version', 'schemaVersion']) {
            assert.ok(body[field] !== undefined, `${eventType} carries the envelope field ${field}`)
          }
          correlationIds.push(body.correlationId)
        }
        // One correlation id for the whole journey, the placing request's, across the delivery's wait.
        assert.equal(new Set(correlationIds).size, 1, `correlation ids: ${correlationIds.join(', ')}`)
        assert.notEqual(correlationIds[0], order.id)
        const payment = await paymentOf(j.db, order.id)
        assert.equal(payment?.status, 'CAPTURED')
        assert.equal(payment?.amount, '10000')
        assert.equal(await capturesOf(j.db, order.id), 1, 'one capture, though every command came twice')
      })

      it('cancels an order whose payment is declined, with the reason, and leaves no capture', async () => {
        const overLimit = await placeOrder(j.app, {
          customerId: 'customer-7',
          items: [{ productId: 'tv', quantity: 1, price: 1500 }],
        })
        const declined = await placeOrder(j.app, { ...seed004Order, customerId: 'customer-declined' })
        const a = await orderReaches(j.app, overLimit.id, 'CANCELLED')
        const b = await orderReaches(j.app, declined.id, 'CANCELLED')
        assert.equal(a.cancellationReason, 'payment failed: amount is over the payment limit')
        assert.equal(b.cancellationReason, 'payment failed: card declined for this customer')
        for (const id of [overLimit.id, declined.id]) {
          assert.equal((await paymentOf(j.db, id))?.status, 'FAILED')
          assert.equal(await capturesOf(j.db, id), 0)
        }
      })

      it('retries transient gateway failures and still delivers every order once', async () => {
        const orders = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            placeOrder(j.app, {
              customerId: `customer-${i}`,
              items: [{ productId: 'p', quantity: i + 1, price: 10.5 }],
            }),
          ),
        )
        for (const order of orders) await orderReaches(j.app, order.id, 'DELIVERED')
        assert.ok(
          (await counterTotal(j.app, 'orderflow_payment_gateway_retries_total')) > 0,
          'the gateway failed and was retried',
        )
        for (const order of orders) assert.equal(await capturesOf(j.db, order.id), 1)
      })

      it('dead-letters nothing, though every event and command was delivered twice', async () => {
        const seen = followers[0]?.seen ?? []
        const ids = seen.map((m) => m.headers['event-id'])
        assert.ok(ids.length > new Set(ids).size, 'the fault injector did duplicate the messages')
        assert.equal(await counterTotal(j.app, 'orderflow_dead_letters_total'), 0)
      })

      it('leaves the auditor nothing to report: all orders settled, one capture each, the money adds up', async () => {
        const report = await auditUntilClean(j, 4)
        assert.ok(
          (report.lag ?? []).length >= 4,
          `lag was read for the journey's groups: ${JSON.stringify(report.lag)}`,
        )
        assert.equal(report.orders.total, 11)
        assert.equal(report.orders.delivered, 9)
        assert.equal(report.orders.cancelled, 2)
        assert.equal(report.money.net, report.money.deliveredTotal)
        assert.ok(report.money.deliveredTotal > 0)
        if (mode === 'orchestration') {
          const orders = await j.db.db.query<{ id: string }>("SELECT id FROM orders WHERE status = 'DELIVERED' LIMIT 1")
          const id = orders.rows[0]?.id
          const saga = (await j.app.http.inject({ method: 'GET', url: `/api/orders/${id}/saga` })).json()
          assert.equal(saga.status, 'COMPLETED')
          assert.equal(saga.outcome, 'DELIVERED')
          assert.deepEqual(saga.deadlines, [])
          const sent = saga.history
            .filter((h: { direction: string }) => h.direction === 'out')
            .map((h: { type: string }) => h.type)
          for (const command of [
            'ProcessPayment',
            'ApproveOrder',
            'DispatchOrder',
            'ScheduleDelivery',
            'ChangeOrderStatus',
          ]) {
            assert.ok(sent.includes(command), `the saga sent ${command}`)
          }
        }
      })
    })

    describe('a gateway that does not answer in time', () => {
      let j: JourneyApp
      before(async () => {
        j = await startJourneyApp({
          infra,
          mode,
          env: { PAYMENT_GATEWAY_LATENCY_MS: '400', PAYMENT_GATEWAY_TIMEOUT_MS: '100', PAYMENT_GATEWAY_ATTEMPTS: '2' },
        })
      })
      after(() => j?.close())

      it('cancels the order as GATEWAY_UNAVAILABLE after the payment service gave up, with no capture', async () => {
        const order = await placeOrder(j.app, seed004Order)
        const cancelled = await orderReaches(j.app, order.id, 'CANCELLED')
        assert.match(
          cancelled.cancellationReason ?? '',
          /^payment failed: payment gateway unavailable after 2 attempts/,
        )
        assert.equal((await paymentOf(j.db, order.id))?.status, 'FAILED')
        assert.equal(await capturesOf(j.db, order.id), 0)
      })
    })

    describe('cancelled after capture (dispatch is not running)', () => {
      let j: JourneyApp
      before(async () => {
        j = await startJourneyApp({ infra, mode, services: ['order', 'payment', 'delivery', 'saga', 'audit'] })
      })
      after(() => j?.close())

      it('refunds the captured payment and ends CANCELLED', async () => {
        const order = await placeOrder(j.app, seed004Order)
        await orderReaches(j.app, order.id, 'CONFIRMED')
        const cancel = await j.app.http.inject({
          method: 'POST',
          url: `/api/orders/${order.id}/cancel`,
          payload: { reason: 'customer changed their mind' },
        })
        assert.equal(cancel.statusCode, 200, cancel.body)
        await waitFor(async () => (await paymentOf(j.db, order.id))?.status === 'REFUNDED', {
          message: `the payment of ${order.id} to be refunded`,
        })
        const final = await getOrder(j.app, order.id)
        assert.equal(final.status, 'CANCELLED')
        assert.equal(final.cancellationReason, 'customer changed their mind')
        if (mode === 'orchestration') {
          await waitFor(
            async () => {
              const saga = (await j.app.http.inject({ method: 'GET', url: `/api/orders/${order.id}/saga` })).json()
              return saga.status === 'COMPLETED' && saga.outcome === 'CANCELLED'
            },
            { message: 'the saga to complete CANCELLED' },
          )
        }
        const report = await auditUntilClean(j)
        assert.equal(report.money.refunded, 100)
        assert.equal(report.money.net, 0)
      })
    })

    if (mode === 'orchestration') {
      describe('the saga when the payment service does not answer (it is not running)', () => {
        let j: JourneyApp
        before(async () => {
          j = await startJourneyApp({
            infra,
            mode,
            services: ['order', 'saga', 'audit'],
            env: {
              SAGA_PAYMENT_TIMEOUT_MS: '300',
              SAGA_COMPENSATION_TIMEOUT_MS: '100',
              SCHEDULER_POLL_INTERVAL_MS: '1000',
            },
          })
        })
        after(() => j?.close())

        it('times the payment out, retries, tries to refund, and parks visibly: saga, metric and auditor', async () => {
          const order = await placeOrder(j.app, seed004Order)
          const sagaOf = async () =>
            (await j.app.http.inject({ method: 'GET', url: `/api/orders/${order.id}/saga` })).json()
          const running = await waitFor(
            async () => {
              const saga = await sagaOf()
              return saga.step === 'PAYMENT' && saga.deadlines?.length === 1 ? saga : null
            },
            { message: 'the saga to wait for the payment, with a deadline' },
          )
          assert.equal(running.status, 'RUNNING')
          const parked = await waitFor(
            async () => {
              const saga = await sagaOf()
              return saga.status === 'PARKED' ? saga : null
            },
            { message: 'the saga to park' },
          )
          assert.equal(parked.step, 'REFUND_PAYMENT')
          assert.match(
            parked.parkedReason,
            /^compensation REFUND_PAYMENT failed: no answer from the payment service \(refund\) after 4 attempts/,
          )
          const sent = parked.history.filter((h: { type: string }) => h.type === 'ProcessPayment').length
          assert.equal(sent, 3, 'the payment was asked for three times (two retries)')
          assert.deepEqual(parked.deadlines, [])

          const list = (await j.app.http.inject({ method: 'GET', url: '/api/sagas?status=PARKED' })).json()
          assert.deepEqual(
            list.sagas.map((s: { orderId: string }) => s.orderId),
            [order.id],
          )

          const metrics = (await j.app.http.inject({ method: 'GET', url: '/metrics' })).body
          assert.match(metrics, /^orderflow_sagas_parked 1$/m)

          const audit = (await j.app.http.inject({ method: 'GET', url: '/api/audit?stuckAfterMs=0' })).json()
          assert.equal(audit.ok, false)
          assert.deepEqual(
            audit.stuck.map((s: { orderId: string; step: string; sagaStatus: string }) => [
              s.orderId,
              s.step,
              s.sagaStatus,
            ]),
            [[order.id, 'REFUND_PAYMENT', 'PARKED']],
          )
          const table = await j.app.http.inject({ method: 'GET', url: '/api/audit?stuckAfterMs=0&format=table' })
          assert.match(table.body, /FAIL {2}terminal-states/)
          assert.match(table.body, new RegExp(`${order.id} +PENDING +REFUND_PAYMENT`))
          assert.equal((await getOrder(j.app, order.id)).status, 'PENDING')

          // Without a status, GET /api/sagas lists every saga, newest first: a running one too.
          const second = await placeOrder(j.app, seed004Order)
          const all = await waitFor(
            async () => {
              const { sagas } = (await j.app.http.inject({ method: 'GET', url: '/api/sagas' })).json()
              return sagas.length === 2 ? (sagas as Array<{ orderId: string; status: string }>) : null
            },
            { message: 'both sagas listed' },
          )
          assert.deepEqual(
            all.map((s) => [s.orderId, s.status]),
            [
              [second.id, 'RUNNING'],
              [order.id, 'PARKED'],
            ],
          )
        })
      })
    }
  })
}
