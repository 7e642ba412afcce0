import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { AuditReport } from '../../src/audit/audit.ts'
import { DISPATCH_COMMANDS_GROUP, DISPATCH_ORDER_EVENTS_GROUP } from '../../src/dispatch/index.ts'
import type { Role } from '../../src/platform/http/auth.ts'
import { testTokens } from '../support/app.ts'
import { waitFor } from '../support/index.ts'
import {
  counterTotal,
  gatedGroup,
  type Infrastructure,
  type JourneyApp,
  orderReaches,
  paymentOf,
  placeOrder,
  seed004Order,
  startJourneyApp,
} from './support.ts'

/**
 * Sagas converge (issue 13, case 3): a saga that parked on DISPATCH because the dispatch service
 * did not answer in time follows the dispatch through when it happens late, and an operator resumes
 * or compensates a parked saga through HTTP. Short DISPATCH timeouts make the saga park in about a
 * second; the fault is the dispatch service's consumer held, or losing the saga's commands.
 */

interface SagaView {
  status: string
  step: string | null
  outcome: string | null
  parkedReason: string | null
  history: { type: string; by?: string; detail?: string }[]
}

export function lateAnswersSuite(infra: Infrastructure): void {
  describe(`late answers and operators (orchestration, ${infra})`, () => {
    let j: JourneyApp
    const dispatch = gatedGroup(DISPATCH_COMMANDS_GROUP)
    let headers: (subject: string, roles?: readonly Role[]) => Promise<{ authorization: string }>
    const operator = () => headers('ops-alice', ['operator'])

    before(async () => {
      const tokens = await testTokens()
      headers = tokens.headers
      j = await startJourneyApp({
        infra,
        mode: 'orchestration',
        wrapTransport: dispatch.wrap,
        app: { authenticate: tokens.authenticate },
        // Three DISPATCH attempts of 300 ms: a held dispatch parks the saga in about a second.
        env: { SAGA_DISPATCH_TIMEOUT_MS: '300', SCHEDULER_POLL_INTERVAL_MS: '50' },
      })
    })
    after(async () => {
      dispatch.pass()
      await j?.close()
    })

    const request = async (method: 'GET' | 'POST', url: string, payload?: object, as = operator()) => {
      const response = await j.app.http.inject({
        method,
        url,
        headers: await as,
        ...(payload ? { payload } : {}),
      })
      return response
    }
    const placeOrderAs = async (): Promise<string> => {
      const response = await request('POST', '/api/orders', seed004Order, headers('customer123'))
      assert.equal(response.statusCode, 201, response.body)
      return response.json<{ id: string }>().id
    }
    const orderStatus = async (id: string) =>
      (await request('GET', `/api/orders/${id}`)).json<{ status: string }>().status
    const sagaOf = async (id: string) => (await request('GET', `/api/orders/${id}/saga`)).json<SagaView>()
    const sagaReaches = (id: string, status: string, outcome?: string) => {
      let last: SagaView | undefined
      return waitFor(
        async () => {
          last = await sagaOf(id)
          return last.status === status && (outcome === undefined || last.outcome === outcome) ? last : null
        },
        { message: () => `the saga of ${id} to be ${status} ${outcome ?? ''} (it is ${JSON.stringify(last)})` },
      )
    }
    const orderIs = (id: string, status: string) => {
      let last: string | undefined
      return waitFor(
        async () => {
          last = await orderStatus(id)
          return last === status
        },
        { message: () => `order ${id} to be ${status} (it is ${last})` },
      )
    }

    it('follows through a dispatch that happened after the saga parked on DISPATCH', async () => {
      dispatch.hold()
      const orderId = await placeOrderAs()
      const parked = await sagaReaches(orderId, 'PARKED')
      assert.equal(parked.step, 'DISPATCH')
      assert.match(parked.parkedReason ?? '', /DISPATCH stuck/)
      assert.equal(await orderStatus(orderId), 'CONFIRMED')

      dispatch.pass()
      await orderIs(orderId, 'DELIVERED')
      const saga = await sagaReaches(orderId, 'COMPLETED', 'DELIVERED')
      assert.ok(
        saga.history.some((h) => h.type === 'Park'),
        'the history shows the park before the late dispatch',
      )
    })

    it('ends DELIVERED when an operator resumes a saga whose dispatch commands were lost', async () => {
      dispatch.drop()
      const orderId = await placeOrderAs()
      await sagaReaches(orderId, 'PARKED')
      dispatch.pass()

      const resumed = await request('POST', `/api/orders/${orderId}/saga/resume`, { step: 'DISPATCH' })
      assert.equal(resumed.statusCode, 200, resumed.body)
      assert.equal(resumed.json<SagaView>().status, 'RUNNING')
      await orderIs(orderId, 'DELIVERED')
      const saga = await sagaReaches(orderId, 'COMPLETED', 'DELIVERED')
      const entry = saga.history.find((h) => h.type === 'OperatorResumed')
      assert.equal(entry?.by, 'ops-alice')
      assert.equal(entry?.detail, 'resume DISPATCH')

      const again = await request('POST', `/api/orders/${orderId}/saga/resume`, {})
      assert.equal(again.statusCode, 409, again.body)
      assert.match(again.json<{ detail: string }>().detail, /COMPLETED \(DELIVERED\)/)
    })

    it('ends CANCELLED with the payment refunded when an operator compensates a parked saga', async () => {
      dispatch.drop()
      const orderId = await placeOrderAs()
      await sagaReaches(orderId, 'PARKED')
      dispatch.pass()

      const compensated = await request('POST', `/api/orders/${orderId}/saga/compensate`)
      assert.equal(compensated.statusCode, 200, compensated.body)
      await orderIs(orderId, 'CANCELLED')
      const saga = await sagaReaches(orderId, 'COMPLETED', 'CANCELLED')
      assert.equal(saga.history.find((h) => h.type === 'OperatorCompensated')?.by, 'ops-alice')
      assert.equal((await paymentOf(j.db, orderId))?.status, 'REFUNDED')
      const order = (await request('GET', `/api/orders/${orderId}`)).json<{ cancellationReason: string }>()
      assert.equal(order.cancellationReason, 'compensated by operator ops-alice')
    })

    it('guards the operator routes: operators only, strict bodies, 404 and 409', async () => {
      const orderId = await placeOrderAs()
      await orderIs(orderId, 'DELIVERED')
      const url = `/api/orders/${orderId}/saga`
      assert.equal((await j.app.http.inject({ method: 'POST', url: `${url}/resume` })).statusCode, 401)
      assert.equal((await request('POST', `${url}/resume`, {}, headers('customer123'))).statusCode, 403)
      assert.equal((await request('POST', `${url}/compensate`, {}, headers('svc', ['service']))).statusCode, 403)
      const unknown = await request('POST', `${url}/resume`, { step: 'DISPATCH', force: true })
      assert.equal(unknown.statusCode, 400, unknown.body)
      assert.equal((await request('POST', `${url}/resume`, { step: 'TELEPORT' })).statusCode, 400)
      assert.equal((await request('POST', `${url}/compensate`, { reason: '' })).statusCode, 400)
      assert.equal((await request('POST', '/api/orders/order-missing/saga/resume', {})).statusCode, 404)
      assert.equal((await request('POST', '/api/orders/order-missing/saga/compensate')).statusCode, 404)
      const conflict = await request('POST', `${url}/compensate`, { reason: 'too late' })
      assert.equal(conflict.statusCode, 409, conflict.body)
      assert.equal(conflict.json<{ code: string }>().code, 'INVALID_TRANSITION')
      assert.equal((await sagaOf(orderId)).outcome, 'DELIVERED')
    })

    it('leaves the auditor clean', async () => {
      let last: AuditReport | undefined
      await waitFor(
        async () => {
          last = (await request('GET', '/api/audit?stuckAfterMs=0')).json<AuditReport>()
          return last.ok
        },
        { timeoutMs: 20_000, message: () => `the auditor to be clean: ${JSON.stringify(last?.checks)}` },
      )
      assert.equal(last?.sagasParked, 0)
    })
  })
}

/**
 * Choreography's side of the same rule: dispatch ships on OrderConfirmed before it reads the
 * OrderCancelled behind it. The order stays CANCELLED, the capture is refunded, nothing is
 * dead-lettered, and the auditor is clean.
 */
export function lateDispatchChoreographySuite(infra: Infrastructure): void {
  describe(`a dispatch of a cancelled order (choreography, ${infra})`, () => {
    let j: JourneyApp
    const dispatch = gatedGroup(DISPATCH_ORDER_EVENTS_GROUP)
    before(async () => {
      j = await startJourneyApp({ infra, mode: 'choreography', wrapTransport: dispatch.wrap })
    })
    after(async () => {
      dispatch.pass()
      await j?.close()
    })

    it('keeps the order cancelled and refunded when its goods went out after the cancellation', async () => {
      dispatch.hold()
      const order = await placeOrder(j.app, seed004Order)
      await orderReaches(j.app, order.id, 'CONFIRMED')
      const cancel = await j.app.http.inject({
        method: 'POST',
        url: `/api/orders/${order.id}/cancel`,
        payload: { reason: 'changed my mind' },
      })
      assert.equal(cancel.statusCode, 200, cancel.body)
      await waitFor(async () => (await paymentOf(j.db, order.id))?.status === 'REFUNDED', {
        message: 'the payment to be refunded',
      })
      dispatch.pass()
      await waitFor(
        async () => {
          const { rows } = await j.db.db.query<{ n: string }>(
            `SELECT count(*)::text AS n FROM es_events WHERE stream_id = $1 AND event_type = 'OrderDelivered'`,
            [`delivery-${order.id}`],
          )
          return rows[0]?.n === '1'
        },
        { message: 'the late dispatch to be delivered' },
      )
      let last: AuditReport | undefined
      await waitFor(
        async () => {
          last = (await j.app.http.inject({ method: 'GET', url: '/api/audit?stuckAfterMs=0' })).json<AuditReport>()
          return last.ok
        },
        { timeoutMs: 20_000, message: () => `the auditor to be clean: ${JSON.stringify(last?.checks)}` },
      )
      const now = (await j.app.http.inject({ method: 'GET', url: `/api/orders/${order.id}` })).json<{
        status: string
      }>()
      assert.equal(now.status, 'CANCELLED')
      assert.equal(await counterTotal(j.app, 'orderflow_dead_letters_total'), 0)
    })
  })
}
