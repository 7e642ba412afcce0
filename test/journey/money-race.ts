import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { AuditReport } from '../../src/audit/audit.ts'
import { paymentIdFor } from '../../src/contracts/payment/events.ts'
import { seededRandom } from '../../src/payment/application/authorize.ts'
import { waitFor } from '../support/index.ts'
import {
  getOrder,
  type Infrastructure,
  type JourneyApp,
  type OrderView,
  orderReaches,
  paymentOf,
  placeOrder,
  type SagaMode,
  startJourneyApp,
} from './support.ts'

/**
 * The money holds whatever the timing (issue 13, case 1): the total an order is delivered with is
 * the total captured, in both saga modes. The payment gateway is slow, so that requests land while a
 * payment is in flight; PATCHes (changing the total or keeping it), cancels and confirmations are
 * fired at random moments of a batch of journeys, and every run ends with each order DELIVERED or
 * CANCELLED and the auditor's money check clean.
 */

const GATEWAY_LATENCY_MS = 300
const ORDERS = 30
/** Orders are placed over this long, and each request lands within this long of its order. */
const PLACE_OVER_MS = 1_500
const ACT_WITHIN_MS = 3_000

const settle = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Asks the auditor (every check, nothing young spared) until it is clean. */
async function auditUntilClean(j: JourneyApp): Promise<AuditReport> {
  let last: AuditReport | undefined
  return waitFor(
    async () => {
      last = (await j.app.http.inject({ method: 'GET', url: '/api/audit?stuckAfterMs=0' })).json<AuditReport>()
      return last.ok ? last : null
    },
    {
      timeoutMs: 20_000,
      intervalMs: 200,
      message: () =>
        `the auditor to be clean: ${JSON.stringify(last?.checks.filter((c) => !c.ok))}; mismatches ${JSON.stringify(last?.money.mismatches)}; stuck ${JSON.stringify(last?.stuck)}`,
    },
  )
}

const terminal = (status: string) => status === 'DELIVERED' || status === 'CANCELLED'

async function allSettled(j: JourneyApp, ids: string[]): Promise<OrderView[]> {
  let open: OrderView[] = []
  return waitFor(
    async () => {
      const orders = await Promise.all(ids.map((id) => getOrder(j.app, id)))
      open = orders.filter((o) => !terminal(o.status))
      return open.length === 0 ? orders : null
    },
    {
      timeoutMs: 40_000,
      intervalMs: 200,
      message: () => `every order to be DELIVERED or CANCELLED; still open: ${JSON.stringify(open)}`,
    },
  )
}

const item = (productId: string, quantity: number, price: number) => ({ productId, quantity, price })

export function moneyRaceSuite(infra: Infrastructure, mode: SagaMode): void {
  describe(`money holds whatever the timing (${mode}, ${infra})`, () => {
    let j: JourneyApp
    before(async () => {
      j = await startJourneyApp({
        infra,
        mode,
        env: {
          PAYMENT_GATEWAY_LATENCY_MS: String(GATEWAY_LATENCY_MS),
          PAYMENT_GATEWAY_TIMEOUT_MS: '10000',
        },
      })
    })
    after(async () => {
      await j?.close()
    })

    it('case 1: an order PATCHed while its payment is in flight is delivered with the amount captured', async () => {
      const order = await placeOrder(j.app, { customerId: 'c10', items: [item('p', 1, 10)] })
      const patch = await j.app.http.inject({
        method: 'PATCH',
        url: `/api/orders/${order.id}`,
        payload: { items: [item('p', 3, 10)] },
      })
      // The PATCH landed mid-payment: nothing was decided yet (the gateway takes 300 ms a call).
      assert.equal((await paymentOf(j.db, order.id))?.status ?? null, null)

      const delivered = await orderReaches(j.app, order.id, 'DELIVERED')
      const payment = await paymentOf(j.db, order.id)
      assert.equal(payment?.status, 'CAPTURED')
      assert.equal(Number(payment?.amount) / 100, delivered.totalAmount, 'the delivered total is the captured total')
      assert.equal(delivered.totalAmount, 10)

      assert.equal(patch.statusCode, 409, patch.body)
      assert.match(String(patch.headers['content-type']), /^application\/problem\+json/)
      const problem = patch.json<{ code: string; detail: string; errors: { field: string }[] }>()
      assert.equal(problem.code, 'ORDER_TOTAL_FIXED')
      assert.deepEqual(
        problem.errors.map((e) => e.field),
        ['items'],
      )
      assert.match(problem.detail, /the total is fixed once payment is requested; cancel and place a new order/)
    })

    it('PATCH, cancel and confirm at random moments of the journey: every order settles and the money adds up', async () => {
      const seed = Number(process.env.MONEY_RACE_SEED ?? Date.now() % 1_000_000)
      const next = seededRandom(seed)
      const answers: { order: string; action: string; status: number; code?: string }[] = []
      const fire = async (
        orderId: string,
        action: string,
        request: () => Promise<{ statusCode: number; body: string }>,
        atOnce = false,
      ) => {
        await settle(atOnce ? 0 : Math.floor(next() * ACT_WITHIN_MS))
        const response = await request()
        const code = response.statusCode >= 400 ? (JSON.parse(response.body) as { code?: string }).code : undefined
        answers.push({ order: orderId, action, status: response.statusCode, ...(code ? { code } : {}) })
      }
      const inject = (method: 'PATCH' | 'POST', url: string, payload: object) =>
        j.app.http.inject({ method, url, payload })

      const journeys = Array.from({ length: ORDERS }, async (_, i) => {
        await settle(Math.floor((i * PLACE_OVER_MS) / ORDERS))
        const order = await placeOrder(j.app, {
          customerId: `race-${i}`,
          items: [item('a', 2, 5), item('b', 1, 7.5)],
        })
        const url = `/api/orders/${order.id}`
        const actions: Promise<void>[] = []
        // Whatever the seed, the race holds one request of each kind that lands at once, while the
        // order is young (a seed whose requests all land late reached only refusals).
        if (i === 0) {
          actions.push(fire(order.id, 'cancel', () => inject('POST', `${url}/cancel`, { reason: 'at once' }), true))
        }
        if (i === 1) {
          const same = { items: [item('a', 1, 5), item('c', 1, 12.5)], notes: 'at once', totalAmount: 17.5 }
          actions.push(fire(order.id, 'patch-same', () => inject('PATCH', url, same), true))
        }
        if (i === 2) {
          actions.push(fire(order.id, 'patch-total', () => inject('PATCH', url, { items: [item('a', 5, 5)] }), true))
        }
        if (next() < 0.6) {
          actions.push(fire(order.id, 'patch-total', () => inject('PATCH', url, { items: [item('a', 5, 5)] })))
        }
        if (next() < 0.6) {
          // Same total (17.50): the items change, the money does not.
          const same = { items: [item('a', 1, 5), item('c', 1, 12.5)], notes: `note ${i}`, totalAmount: 17.5 }
          actions.push(fire(order.id, 'patch-same', () => inject('PATCH', url, same)))
        }
        if (next() < 0.4) {
          actions.push(fire(order.id, 'cancel', () => inject('POST', `${url}/cancel`, { reason: 'changed my mind' })))
        }
        if (next() < 0.4) {
          // What the payment service would confirm it with, at any moment: before the capture too.
          const paymentId = paymentIdFor(order.id)
          actions.push(fire(order.id, 'confirm', () => inject('POST', `${url}/confirm`, { paymentId })))
        }
        await Promise.all(actions)
        return order.id
      })
      const ids = await Promise.all(journeys)

      const context = `seed ${seed} (MONEY_RACE_SEED replays it)`
      const orders = await allSettled(j, ids)
      const report = await auditUntilClean(j).catch(async (error: Error) => {
        // What the saga and the payment say of each order that does not add up, to tell why.
        const last = (await j.app.http.inject({ method: 'GET', url: '/api/audit?stuckAfterMs=0' })).json<AuditReport>()
        const details = await Promise.all(
          last.money.mismatches.map(async (m) => ({
            orderId: m.orderId,
            saga: (await j.app.http.inject({ method: 'GET', url: `/api/orders/${m.orderId}/saga` })).json<unknown>(),
            payment: await paymentOf(j.db, m.orderId),
            answers: answers.filter((a) => a.order === m.orderId),
          })),
        )
        throw new Error(`${context}: ${error.message}; details ${JSON.stringify(details)}`)
      })
      const money = report.checks.find((c) => c.name === 'money')
      assert.ok(money?.ok, `${context}: ${money?.summary}`)
      assert.equal(report.money.mismatchCount, 0)
      assert.equal(report.orders.delivered + report.orders.cancelled, report.orders.total)

      for (const order of orders) {
        assert.equal(order.totalAmount, 17.5, `${context}: ${order.id} kept its placement total`)
        const payment = await paymentOf(j.db, order.id)
        if (order.status === 'DELIVERED') {
          assert.equal(payment?.status, 'CAPTURED', `${context}: ${order.id} is delivered and paid`)
          assert.equal(Number(payment?.amount), 1750, `${context}: ${order.id} captured its total`)
        }
      }
      // Every answer is one the API promises: the total never moves, a late request is a conflict.
      for (const a of answers) {
        const allowed =
          a.status === 200 ||
          (a.status === 409 &&
            (a.code === 'INVALID_TRANSITION' ||
              a.code === 'VERSION_CONFLICT' ||
              (a.action === 'patch-total' && a.code === 'ORDER_TOTAL_FIXED')))
        assert.ok(allowed, `${context}: ${a.action} of ${a.order} answered ${a.status} ${a.code ?? ''}`)
        if (a.action === 'patch-total') assert.notEqual(a.status, 200, `${context}: the total moved for ${a.order}`)
      }
      // The race reached every kind of answer: a refused total, kept totals, cancels, confirmations.
      const seen = (action: string, status: number) => answers.some((a) => a.action === action && a.status === status)
      assert.ok(
        seen('patch-total', 409) && seen('patch-same', 200) && seen('cancel', 200),
        `${context}: ${JSON.stringify(answers.map((a) => [a.action, a.status, a.code ?? '']))}`,
      )
    })
  })
}
