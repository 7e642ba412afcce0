import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { deliveryModule } from '../../src/delivery/index.ts'
import { dispatchModule } from '../../src/dispatch/index.ts'
import { orderModule } from '../../src/order/index.ts'
import { type AuthorizationRequest, createSimulatedGateway } from '../../src/payment/domain/gateway.ts'
import { paymentModule } from '../../src/payment/index.ts'
import type { SqlDatabase } from '../../src/platform/sql/port.ts'
import { sagaModule } from '../../src/saga/index.ts'
import { waitFor } from '../support/index.ts'
import {
  type Infrastructure,
  type JourneyApp,
  orderReaches,
  placeOrder,
  type SagaMode,
  seed004Order,
  startJourneyApp,
} from './support.ts'

/** Whether the database answers a query within `ms`. */
async function answersWithin(db: SqlDatabase, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  try {
    return await Promise.race([db.query('SELECT 1').then(() => true as const), late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The services that call out still take a backlog in one transaction: payment asks its gateway for
 * every payment of a consumer's batch at once (outside the transaction) and then commits them
 * together, and the delivery service delivers the deliveries that fell due together in one
 * transaction. Orders are held at the gateway until all are placed, so each consumer finds a
 * backlog; the events' transaction ids (es_events.transaction_id) show how many transactions wrote
 * them. Every order is still paid exactly once and delivered once.
 */
export function batchedCallsSuite(infra: Infrastructure, mode: SagaMode) {
  describe(`calls out in batches (${infra}, ${mode})`, () => {
    const ORDERS = 24
    let journey: JourneyApp
    const requests: AuthorizationRequest[] = []
    let inGateway = 0
    let mostAtOnce = 0
    /** Gateway calls made while the database could not answer: a transaction held open across the call. */
    let callsInTransaction = 0
    let open!: () => void
    const opened = new Promise<void>((resolve) => {
      open = resolve
    })
    const simulated = createSimulatedGateway()

    before(async () => {
      journey = await startJourneyApp({
        infra,
        mode,
        // The gateway holds its first calls while the orders are placed: no timeout may cut them short
        // on a slow machine, nor the saga's payment step give up on them.
        env: { DELIVERY_DELAY_MS: '300', PAYMENT_GATEWAY_TIMEOUT_MS: '120000', SAGA_PAYMENT_TIMEOUT_MS: '120000' },
        modules: [
          orderModule(),
          sagaModule(),
          paymentModule({
            gateway: {
              async authorize(request) {
                requests.push(request)
                // On PGlite a transaction holds the one connection: a query from outside waits for
                // it. A call made inside the batch's transaction would find the database busy.
                inGateway++
                mostAtOnce = Math.max(mostAtOnce, inGateway)
                try {
                  if (!(await answersWithin(journey.db.db, 5_000))) callsInTransaction++
                  await opened
                  return await simulated.authorize(request)
                } finally {
                  inGateway--
                }
              },
            },
          }),
          dispatchModule(),
          deliveryModule(),
        ],
      })
    })
    after(async () => {
      open()
      await journey?.close()
    })

    const transactionsOf = async (eventType: string) => {
      const { rows } = await journey.db.db.query<{ events: string; transactions: string }>(
        `SELECT count(*)::text AS events, count(DISTINCT transaction_id::text)::text AS transactions
           FROM es_events WHERE event_type = $1`,
        [eventType],
      )
      return { events: Number(rows[0]?.events), transactions: Number(rows[0]?.transactions) }
    }

    it('pays a backlog of orders with the gateway asked at once per batch, and delivers them together', async () => {
      const orders = []
      for (let i = 0; i < ORDERS; i++) orders.push(await placeOrder(journey.app, seed004Order))
      // Every partition's first payment waits at the gateway; the rest queue behind it.
      await waitFor(() => requests.length > 0, { message: 'the first payment reaches the gateway' })
      open()
      for (const order of orders) await orderReaches(journey.app, order.id, 'DELIVERED', 60_000)

      assert.equal(requests.length, ORDERS, 'the gateway is asked once per payment')
      assert.equal(new Set(requests.map((r) => r.paymentId)).size, ORDERS)
      assert.equal(callsInTransaction, 0, 'no transaction is held open while the gateway is asked')
      assert.ok(mostAtOnce > 1, `a batch asks the gateway for its payments at once (at most ${mostAtOnce} at a time)`)

      const paid = await transactionsOf('PaymentProcessed')
      assert.equal(paid.events, ORDERS, 'one capture per order')
      assert.ok(
        paid.transactions <= ORDERS / 2,
        `${ORDERS} payments were written in ${paid.transactions} transactions: a backlog is one per batch`,
      )
      const delivered = await transactionsOf('OrderDelivered')
      assert.equal(delivered.events, ORDERS, 'one delivery per order')
      assert.ok(
        delivered.transactions <= ORDERS / 2,
        `${ORDERS} deliveries were written in ${delivered.transactions} transactions: those due together are one`,
      )
    })
  })
}
