import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { ORDER_EVENTS_TOPIC } from '../../src/contracts/order/events.ts'
import type { Role } from '../../src/platform/http/auth.ts'
import { SAGA_GROUP } from '../../src/saga/consumers/saga-inputs.ts'
import { testTokens } from '../support/app.ts'
import { waitFor } from '../support/index.ts'
import { gatedGroup, type Infrastructure, type JourneyApp, seed004Order, startJourneyApp } from './support.ts'

const run = promisify(execFile)
/** `npm run orderflow -- dlq …` as an operator runs it: through the orderflow entry point. */
const orderflow = new URL('../../src/cli.ts', import.meta.url).pathname

interface DeadLetterSummary {
  id: string
  topic: string
  group: string
  key: string
  reason: string
  state: string
  parkedMessages: number
}

/**
 * The dead-letter console through the whole journey (issue 16): a poisoned event on an order's key
 * becomes a dead letter, the saga's later events of that order wait parked behind it (the saga
 * says so), a redrive that fails again moves the key behind the new dead letter, and a discard from
 * `npm run orderflow -- dlq` releases the parked events in order, so the order is delivered. Every
 * action is in the log with who did it. Operators only.
 */
export function deadLettersSuite(infra: Infrastructure): void {
  describe(`dead letters, parking and redrive through the journey (${infra})`, () => {
    let j: JourneyApp
    const saga = gatedGroup(SAGA_GROUP)
    let headers: (subject: string, roles?: readonly Role[]) => Promise<{ authorization: string }>
    let operatorToken: string
    let base: string

    before(async () => {
      const tokens = await testTokens()
      headers = tokens.headers
      operatorToken = (await headers('ops-alice', ['operator'])).authorization.slice('Bearer '.length)
      j = await startJourneyApp({
        infra,
        mode: 'orchestration',
        wrapTransport: saga.wrap,
        app: { authenticate: tokens.authenticate },
      })
      base = await j.app.http.listen({ host: '127.0.0.1', port: 0 })
    })
    after(async () => j?.close())

    const api = async <T>(method: 'GET' | 'POST', url: string, payload?: object, subject = 'ops-alice') => {
      const response = await j.app.http.inject({
        method,
        url,
        headers: await headers(subject, ['operator']),
        ...(payload ? { payload } : {}),
      })
      return { status: response.statusCode, body: response.json<T>() }
    }
    const dlq = (...args: string[]) =>
      run(process.execPath, [orderflow, 'dlq', ...args, '--url', base], {
        env: { ...process.env, ORDERFLOW_TOKEN: operatorToken },
      })

    it('parks the order behind a poisoned event, shows it on the saga, and a discard from the CLI lets the order through in order', async () => {
      // The saga holds its input while the order is placed, so that the poison reaches its
      // partition right behind the order's first event and before the payment's answer.
      saga.hold()
      const placed = await j.app.http.inject({
        method: 'POST',
        url: '/api/orders',
        payload: seed004Order,
        headers: await headers('customer123'),
      })
      assert.equal(placed.statusCode, 201, placed.body)
      const order = placed.json<{ id: string }>()
      await waitFor(() => saga.seen() >= 1, { message: 'the saga has the order placed' })
      await j.transport.publish([{ topic: ORDER_EVENTS_TOPIC, key: order.id, value: '{"eventType": "OrderCre' }])
      saga.pass()

      const parked = await waitFor(
        async () => {
          const { body } = await api<{ items: DeadLetterSummary[] }>(
            'GET',
            `/api/dead-letters?key=${order.id}&group=${SAGA_GROUP}`,
          )
          const [first] = body.items
          return first && first.parkedMessages >= 1 ? first : null
        },
        { timeoutMs: 30_000, message: "the poison is a dead letter and the order's next event is parked behind it" },
      )
      assert.equal(parked.topic, ORDER_EVENTS_TOPIC)
      assert.equal(parked.state, 'open')

      const sagaView = await api<{ step: string; inputParked: { deadLetterId: string; messages: number } | null }>(
        'GET',
        `/api/orders/${order.id}/saga`,
      )
      assert.equal(sagaView.body.inputParked?.deadLetterId, parked.id, 'the saga says what it waits for')
      const list = await api<{ sagas: { orderId: string; inputParked: unknown }[] }>('GET', '/api/sagas')
      assert.ok(list.body.sagas.find((s) => s.orderId === order.id)?.inputParked)
      assert.notEqual(
        (await j.app.http.inject({ method: 'GET', url: `/api/orders/${order.id}` })).json().status,
        'DELIVERED',
      )

      // Only operators.
      const customer = await j.app.http.inject({
        method: 'GET',
        url: '/api/dead-letters',
        headers: await headers('customer-1', ['customer']),
      })
      assert.equal(customer.statusCode, 403)
      const bad = await api<{ errors: { field: string }[] }>('GET', '/api/dead-letters?limit=0')
      assert.equal(bad.status, 400)
      assert.equal(bad.body.errors[0]?.field, 'limit')

      // The CLI lists and shows it.
      const listed = await dlq('list', '--key', order.id)
      assert.match(listed.stdout, new RegExp(`${parked.id} +open`))
      const shown = await dlq('show', parked.id)
      assert.match(shown.stdout, /message\(s\) of its key wait behind it/)
      assert.match(shown.stdout, /OrderCre/)

      // A bulk redrive by reason: a dry run counts, the redrive sends it, the saga fails it again,
      // and the key now waits for the new dead letter.
      const dry = await dlq('redrive', '--reason', parked.reason, '--key', order.id, '--dry-run')
      assert.match(dry.stdout, /dry run: 1 open dead letter\(s\) match/)
      const redriven = await dlq('redrive', '--reason', parked.reason, '--key', order.id, '--rate', '20')
      assert.match(redriven.stdout, /redrove 1 of 1 to the consumer/)
      assert.match(redriven.stderr, /1\/1/, 'the progress is shown')
      const again = await waitFor(
        async () => {
          const { body } = await api<{ items: DeadLetterSummary[] }>('GET', `/api/dead-letters?key=${order.id}`)
          const [first] = body.items
          return first && first.id !== parked.id && first.parkedMessages >= 1 ? first : null
        },
        { timeoutMs: 30_000, message: 'the redriven poison failed again and holds the key' },
      )

      // A discard, with the reason, releases the parked events in order: the order is delivered.
      const refused = await dlq('discard', again.id).catch((error: { code: number; stderr: string }) => error)
      assert.equal((refused as { code: number }).code, 2)
      await dlq('discard', again.id, '--comment', 'a malformed copy of OrderCreated from a test')
      await waitFor(
        async () => (await api<{ status: string }>('GET', `/api/orders/${order.id}`)).body.status === 'DELIVERED',
        {
          timeoutMs: 30_000,
          message: 'the order is delivered once its events are released',
        },
      )
      const after = await api<{ inputParked: unknown }>('GET', `/api/orders/${order.id}/saga`)
      assert.equal(after.body.inputParked, null)

      const actions = await api<{
        items: {
          actor: string
          action: string
          matched: number
          done: number
          dryRun: boolean
          comment: string | null
        }[]
      }>('GET', '/api/dead-letters/actions?limit=3')
      assert.deepEqual(
        actions.body.items.map((a) => [a.actor, a.action, a.dryRun, a.matched, a.done]),
        [
          ['ops-alice', 'discard', false, 1, 1],
          ['ops-alice', 'redrive', false, 1, 1],
          ['ops-alice', 'redrive', true, 1, 0],
        ],
      )
      assert.equal(actions.body.items[0]?.comment, 'a malformed copy of OrderCreated from a test')
      // The audit's dead-letter check counts what is still open: nothing of this order.
      const open = await api<{ items: DeadLetterSummary[] }>('GET', `/api/dead-letters?key=${order.id}`)
      assert.deepEqual(open.body.items, [])
    })

    it('a bulk redrive from the CLI shows its progress and stops cleanly on Ctrl-C, recorded as stopped', async () => {
      const keys = ['a', 'b', 'c'].map((k) => `poison-${k}-${Date.now()}`)
      await j.transport.publish(keys.map((key) => ({ topic: ORDER_EVENTS_TOPIC, key, value: 'not json at all' })))
      const poisoned = await waitFor(
        async () => {
          const found = await Promise.all(
            keys.map(
              async (key) =>
                (await api<{ items: DeadLetterSummary[] }>('GET', `/api/dead-letters?key=${key}&group=${SAGA_GROUP}`))
                  .body.items[0],
            ),
          )
          return found.every(Boolean) ? (found as DeadLetterSummary[]) : null
        },
        { timeoutMs: 30_000, message: 'three poisoned events are dead letters' },
      )
      const reason = poisoned[0]?.reason as string
      // One every two seconds: the first goes at once, Ctrl-C comes before the second.
      const child = spawn(
        process.execPath,
        [
          orderflow,
          'dlq',
          'redrive',
          '--reason',
          reason,
          '--group',
          SAGA_GROUP,
          '--topic',
          ORDER_EVENTS_TOPIC,
          '--rate',
          '0.5',
          '--url',
          base,
        ],
        // A process group of its own, for Ctrl-C below.
        { env: { ...process.env, ORDERFLOW_TOKEN: operatorToken }, detached: true },
      )
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (chunk) => {
        stdout += chunk
      })
      child.stderr.on('data', (chunk) => {
        stderr += chunk
      })
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
      await waitFor(() => /^1\/3$/m.test(stderr), {
        timeoutMs: 15_000,
        message: () => `progress 1/3 (stderr: ${stderr})`,
      })
      // As a terminal sends Ctrl-C: to the process group, where the orderflow entry point lets it
      // pass and the console stops its redrive.
      process.kill(-(child.pid as number), 'SIGINT')
      assert.equal(await exited, 1)
      assert.match(stdout, /stopped after 1 of 3/)
      const action = await waitFor(
        async () => {
          const { body } = await api<{ items: { status: string; done: number; matched: number; actor: string }[] }>(
            'GET',
            '/api/dead-letters/actions?limit=1',
          )
          return body.items[0]?.status === 'stopped' ? body.items[0] : null
        },
        { message: 'the action is recorded as stopped' },
      )
      assert.deepEqual([action.done, action.matched, action.actor], [1, 3, 'ops-alice'])
      const stillOpen = await api<{ items: DeadLetterSummary[] }>(
        'GET',
        `/api/dead-letters?reason=${reason}&group=${SAGA_GROUP}&topic=${ORDER_EVENTS_TOPIC}`,
      )
      assert.ok(stillOpen.body.items.length >= 2, 'the two not sent stay open')
    })
  })
}
