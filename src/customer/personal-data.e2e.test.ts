import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestApp } from '../../test/support/app.ts'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import { ERASED } from '../contracts/personal.ts'
import { orderReadModel } from '../order/application/read-model.ts'
import { orderModule } from '../order/index.ts'
import { rebuildProjection } from '../platform/es/projections.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import type { Transport } from '../platform/transport/port.ts'
import { customerModule } from './index.ts'

/**
 * An order's delivery address and contact through HTTP: the caller sees them, every table holds
 * them sealed only, and once the customer's personal data is erased they read as "[erased]"
 * everywhere (the order, the list, after a rebuild of the read model), while the rest of the order
 * stays as it was.
 */

const marker = `Zq${Date.now().toString(36)}Marker`
const address = {
  name: `Ada ${marker}`,
  street: '12 Engine Street',
  city: 'London',
  postalCode: 'N1 9GU',
  country: 'GB',
}
const contact = { email: `ada.${marker.toLowerCase()}@example.com`, phone: '+44 20 7946 0000' }

/** Every row of every table of the database, as text: what a dump of it would hold. */
async function everyRowAsText(db: SqlDatabase): Promise<string> {
  const { rows: tables } = await db.query<{ name: string }>(
    `SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name FROM information_schema.tables
      WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
  )
  let text = ''
  for (const { name } of tables) {
    const { rows } = await db.query<{ row: string }>(`SELECT to_jsonb(t)::text AS row FROM ${name} t`)
    text += rows.map((r) => r.row).join('\n')
  }
  return text
}

for (const kind of ['postgres', 'pglite'] as const) {
  describe(`personal data of orders (${kind})`, () => {
    let database: TestDatabase
    let transport: Transport
    let app: App
    before(async () => {
      database = kind === 'postgres' ? await postgresTestDatabase('of_pii') : await pgliteTestDatabase()
      transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 50 })
      app = await startTestApp({ db: database.db, transport, modules: [orderModule(), customerModule()] })
    })
    after(async () => {
      await app?.close()
      await transport?.close()
      await database?.cleanup()
    })

    const place = async (customerId: string, extra: object = { deliveryAddress: address, contact }) => {
      const response = await app.http.inject({
        method: 'POST',
        url: '/api/orders',
        headers: { 'idempotency-key': `key-${customerId}-${Math.random()}` },
        payload: { customerId, items: [{ productId: 'p-1', quantity: 1, price: 10 }], ...extra },
      })
      assert.equal(response.statusCode, 201, response.body)
      return response.json<{ id: string; deliveryAddress: unknown; contact: unknown }>()
    }
    const get = async (id: string) =>
      (await app.http.inject({ method: 'GET', url: `/api/orders/${id}` })).json<{
        deliveryAddress: unknown
        contact: unknown
        status: string
        totalAmount: number
      }>()
    const listOf = async (customerId: string) =>
      (await app.http.inject({ method: 'GET', url: `/api/orders?customerId=${customerId}` })).json<{
        orders: { id: string; deliveryAddress: unknown; contact: unknown }[]
      }>().orders

    it('shows the caller what they gave, and keeps none of it in clear in any table', async () => {
      const order = await place('ada')
      assert.deepEqual(order.deliveryAddress, address)
      assert.deepEqual(order.contact, contact)
      assert.deepEqual((await get(order.id)).deliveryAddress, address)
      await app.projections.catchUp()
      const listed = await listOf('ada')
      assert.deepEqual(listed[0]?.deliveryAddress, address)
      const text = await everyRowAsText(database.db)
      assert.ok(text.includes(order.id), 'the scan reads the tables the order is in')
      assert.ok(text.includes('"$enc": 1'), 'the fields are there, sealed')
      assert.ok(!text.includes(marker), 'the marker is nowhere in clear')
      assert.ok(!text.toLowerCase().includes(marker.toLowerCase()), 'the email is nowhere in clear')
      assert.ok(!text.includes('Engine Street'), 'the street is nowhere in clear')
    })

    it('leaves an order without them as before (the seeds’ bodies)', async () => {
      const order = await place('plain', {})
      assert.equal(order.deliveryAddress, null)
      assert.equal(order.contact, null)
    })

    it('refuses a bad address with the field that is wrong', async () => {
      const response = await app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: {
          customerId: 'ada',
          items: [{ productId: 'p-1', quantity: 1, price: 10 }],
          deliveryAddress: { ...address, country: 'Britain' },
          contact: {},
        },
      })
      assert.equal(response.statusCode, 400)
      const fields = response.json<{ errors: { field: string }[] }>().errors.map((e) => e.field)
      assert.ok(fields.includes('deliveryAddress.country'), JSON.stringify(fields))
      assert.ok(fields.includes('contact.email'), JSON.stringify(fields))
    })

    it('erases a customer: their orders read "[erased]" everywhere, other customers keep theirs', async () => {
      const mine = await place('grace')
      const theirs = await place('linus')
      await app.projections.catchUp()
      const response = await app.http.inject({ method: 'DELETE', url: '/api/customers/grace/personal-data' })
      assert.equal(response.statusCode, 200, response.body)
      const answer = response.json<{
        keysErased: number
        placeholder: string
        erased: string[]
        copiesRemain: string[]
        requestedBy: string
      }>()
      assert.equal(answer.keysErased, 1)
      assert.equal(answer.placeholder, ERASED)
      assert.ok(answer.erased.length > 0 && answer.copiesRemain.some((c) => /ciphertext/.test(c)))

      const erased = await get(mine.id)
      assert.equal(erased.deliveryAddress, ERASED)
      assert.equal(erased.contact, ERASED)
      assert.equal(erased.totalAmount, 10, 'the rest of the order stands')
      assert.deepEqual((await get(theirs.id)).deliveryAddress, address)

      assert.equal((await listOf('grace'))[0]?.deliveryAddress, ERASED, 'the list reads it erased at once')
      await app.projections.catchUp()
      const { rows } = await database.db.query<{ doc: { deliveryAddress: unknown } }>(
        "SELECT doc FROM order_read_model WHERE customer_id = 'grace'",
      )
      assert.equal(rows[0]?.doc.deliveryAddress, ERASED, 'the read model keeps no sealed copy either')

      // A rebuild of the read model still succeeds, and reads the same.
      await rebuildProjection(database.db, orderReadModel)
      assert.equal((await listOf('grace'))[0]?.deliveryAddress, ERASED)
      assert.deepEqual((await listOf('linus'))[0]?.deliveryAddress, address)

      const events = await app.http.inject({ method: 'GET', url: `/api/orders/${mine.id}/events` })
      assert.equal(events.statusCode, 200, events.body)
      const [createdEvent] = events.json<{ events: { deliveryAddress?: unknown; contact?: unknown }[] }>().events
      assert.equal(createdEvent?.deliveryAddress, ERASED, 'the history reads it erased too')
      assert.equal(createdEvent?.contact, ERASED)
      const theirEvents = await app.http.inject({ method: 'GET', url: `/api/orders/${theirs.id}/events` })
      assert.deepEqual(
        theirEvents.json<{ events: { deliveryAddress?: unknown }[] }>().events[0]?.deliveryAddress,
        address,
        'the history opens it for its reader, as GET does',
      )
    })

    it('lets a customer come back: a new order is sealed with a new key and reads in clear', async () => {
      const again = await place('grace')
      assert.deepEqual((await get(again.id)).deliveryAddress, address)
    })

    it('refuses a tampered field rather than show garbage', async () => {
      const order = await place('mallory')
      await database.db.query(
        `UPDATE orders SET state = jsonb_set(state, '{deliveryAddress,eid}', to_jsonb('0193a0b0-0000-7000-8000-000000000000'::text))
          WHERE id = $1`,
        [order.id],
      )
      const response = await app.http.inject({ method: 'GET', url: `/api/orders/${order.id}` })
      assert.equal(response.statusCode, 500)
      assert.equal(response.json<{ code: string }>().code, 'PERSONAL_DATA_UNREADABLE')
    })
  })
}
