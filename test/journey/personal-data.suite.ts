import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { ERASED } from '../../src/contracts/personal.ts'
import { orderReadModel } from '../../src/order/application/read-model.ts'
import { orderReplaySource } from '../../src/order/index.ts'
import { rebuildProjection } from '../../src/platform/es/projections.ts'
import { createReplayJob, runReplayJob } from '../../src/platform/es/replay.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { testDatabaseUrl, uniqueName, waitFor } from '../support/index.ts'
import {
  getOrder,
  type Infrastructure,
  type JourneyApp,
  orderReaches,
  type SagaMode,
  startJourneyApp,
} from './support.ts'

/**
 * Issue 17's proof: an order whose address carries a unique marker goes the whole journey, and the
 * marker is then looked for everywhere a copy could be: a dump of the database (every table, the
 * embedded log included), every topic of the app (its retry and dead-letter topics included) and
 * everything the app logged, at debug level. It is nowhere in clear. After the customer's erasure
 * it cannot be read back through any route, while a replay of the order and a rebuild of the read
 * model still succeed.
 */

const run = promisify(execFile)
const PG_DUMP = ['/usr/lib/postgresql/15/bin/pg_dump', '/usr/lib/postgresql/16/bin/pg_dump', '/usr/bin/pg_dump'].find(
  (path) => existsSync(path),
)

export function personalDataSuite(infra: Infrastructure, mode: SagaMode): void {
  describe(`personal data is never in clear (${mode}, ${infra})`, () => {
    const marker = uniqueName('PIImark').replaceAll('_', '')
    const address = {
      name: `Erin ${marker}`,
      street: `${marker} Lane 5`,
      city: 'Oslo',
      postalCode: '0150',
      country: 'NO',
    }
    const contact = { email: `erin@${marker.toLowerCase()}.example.com`, phone: '+47 22 00 00 00' }
    const customerId = uniqueName('erin')
    let j: JourneyApp
    let logged = ''
    let orderId = ''

    before(async () => {
      const sink = new Writable({
        write(chunk, _encoding, done) {
          logged += chunk.toString()
          done()
        },
      })
      j = await startJourneyApp({
        infra,
        mode,
        logger: createLogger({ level: 'debug', destination: sink }),
      })
      const response = await j.app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: {
          customerId,
          items: [{ productId: 'book', quantity: 1, price: 20 }],
          deliveryAddress: address,
          contact,
        },
      })
      assert.equal(response.statusCode, 201, response.body)
      orderId = response.json<{ id: string }>().id
      await orderReaches(j.app, orderId, 'DELIVERED')
    })
    after(async () => {
      await j?.close()
    })

    const inClear = (text: string) =>
      [marker, marker.toLowerCase(), 'Lane 5'].filter((needle) => text.includes(needle)).length > 0

    /** The database as text: pg_dump of the test's schema on PostgreSQL, every row of every table on PGlite. */
    async function dump(): Promise<string> {
      if (infra === 'kafka' && PG_DUMP) {
        const { rows } = await j.db.db.query<{ schema: string }>('SELECT current_schema() AS schema')
        const { stdout } = await run(
          PG_DUMP,
          ['--data-only', '--schema', String(rows[0]?.schema), '--dbname', testDatabaseUrl],
          { maxBuffer: 512 * 1024 * 1024 },
        )
        return stdout
      }
      const { rows: tables } = await j.db.db.query<{ name: string }>(
        `SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name FROM information_schema.tables
          WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
      )
      let text = ''
      for (const { name } of tables) {
        const { rows } = await j.db.db.query<{ row: string }>(`SELECT to_jsonb(t)::text AS row FROM ${name} t`)
        text += `${rows.map((r) => r.row).join('\n')}\n`
      }
      return text
    }

    /** Every message of every topic the app has (retry and dead-letter topics too), as text. */
    async function everyTopic(): Promise<{ topics: string[]; text: string }> {
      // The app's transport shows the topics under its prefix, by the names the services give them.
      const names = (await j.transport.describeLog()).topics.map((topic) => topic.name)
      let text = ''
      for (const topic of names) {
        const read = await j.transport.readTopic(
          topic,
          (message) => {
            text += `${message.key ?? ''} ${message.value ?? ''} ${JSON.stringify(message.headers)}\n`
          },
          { timeoutMs: 30_000 },
        )
        assert.ok(read?.complete !== false, `${topic} was read to its end`)
      }
      return { topics: names, text }
    }

    it('is nowhere in clear: not in the database, not on any topic, not in the logs', async () => {
      const database = await dump()
      assert.ok(database.includes(orderId), 'the dump holds the order')
      assert.ok(!inClear(database), 'the database holds the address and contact sealed only')
      const { topics, text } = await everyTopic()
      assert.ok(
        topics.some((t) => t === 'order-events'),
        JSON.stringify(topics),
      )
      assert.ok(text.includes(orderId) && text.includes('"$enc":1'), 'the topics carry the order, its fields sealed')
      assert.ok(!inClear(text), `no topic carries them in clear (${topics.join(', ')})`)
      // Dispatch and delivery got the address (sealed) and the carrier was handed it in clear.
      const shipmentOf = (prefix: string) =>
        text.split('\n').filter((line) => line.includes(`"${prefix}`) && line.includes(orderId))
      assert.ok(
        shipmentOf('eventType":"OrderDispatched').some((line) => line.includes('"deliveryAddress":{"$enc":1')),
        'OrderDispatched carries the address, sealed',
      )
      assert.ok(
        shipmentOf('eventType":"DeliveryScheduled').some((line) => line.includes('"deliveryAddress":{"$enc":1')),
        'DeliveryScheduled carries the address, sealed',
      )
      const carrier = j.app.module<{ carrier: { labels: ReadonlyMap<string, { address: unknown }> } }>(
        'dispatch',
      ).carrier
      assert.deepEqual(carrier.labels.get(`shipment-${orderId}`)?.address, address, 'the carrier got the label')
      assert.ok(logged.includes(orderId), 'the logs speak of the order')
      assert.ok(!inClear(logged), 'the logs never print them')
      // The one who placed it sees them.
      const view = (await getOrder(j.app, orderId)) as unknown as { deliveryAddress: unknown; contact: unknown }
      assert.deepEqual(view.deliveryAddress, address)
      assert.deepEqual(view.contact, contact)
    })

    it('after erasure, cannot be read back through any route; replay and rebuild still succeed', async () => {
      const erased = await j.app.http.inject({ method: 'DELETE', url: `/api/customers/${customerId}/personal-data` })
      assert.equal(erased.statusCode, 200, erased.body)
      assert.equal(erased.json<{ keysErased: number }>().keysErased, 1)

      const order = (await getOrder(j.app, orderId)) as unknown as { deliveryAddress: unknown; contact: unknown }
      assert.equal(order.deliveryAddress, ERASED)
      assert.equal(order.contact, ERASED)
      const listed = await waitFor(
        async () => {
          const page = (await j.app.http.inject({ method: 'GET', url: `/api/orders?customerId=${customerId}` })).json<{
            orders: { deliveryAddress: unknown }[]
          }>()
          return page.orders[0]?.deliveryAddress === ERASED ? page : null
        },
        { timeoutMs: 20_000, message: () => 'the list to show the order erased' },
      )
      assert.equal(listed.orders.length, 1)

      const job = await createReplayJob(j.db.db, orderReplaySource, { kind: 'stream', streamId: orderId })
      const replayed = await runReplayJob({ db: j.db.db, transport: j.transport, source: orderReplaySource }, job.id)
      assert.equal(replayed.status, 'completed')
      assert.equal(replayed.done, replayed.total)
      // The app's own projection runner is stopped first: running, it could apply the events as soon
      // as the rebuild emptied the model, and the rebuild would find nothing left to do.
      await j.app.projections.stop()
      const rebuilt = await rebuildProjection(j.db.db, orderReadModel)
      assert.ok(rebuilt.done >= 1, `the rebuild applied the order's events (${JSON.stringify(rebuilt)})`)
      const again = (await j.app.http.inject({ method: 'GET', url: `/api/orders?customerId=${customerId}` })).json<{
        orders: { deliveryAddress: unknown; contact: unknown }[]
      }>()
      assert.equal(again.orders[0]?.deliveryAddress, ERASED, 'the rebuilt model reads the same')

      const journey = await j.app.http.inject({ method: 'GET', url: `/api/dashboard/orders/${orderId}/journey` })
      assert.equal(journey.statusCode, 200, journey.body)
      assert.ok(!inClear(journey.body), 'the dashboard shows no plaintext')
      assert.ok(journey.body.includes('"deliveryAddress":"[erased]"'), 'the dashboard shows the placeholder')
      assert.ok(!journey.body.includes('"$enc"'), 'the dashboard shows no ciphertext either')
      const { rows } = await j.db.db.query<{ live: number }>(
        'SELECT count(*)::int AS live FROM personal_data_keys WHERE subject = $1 AND wrapped IS NOT NULL',
        [customerId],
      )
      assert.equal(rows[0]?.live, 0, 'no key is left that could open a copy')
      assert.ok(!inClear(await dump()) && !inClear((await everyTopic()).text) && !inClear(logged))
    })
  })
}
