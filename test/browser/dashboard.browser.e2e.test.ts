import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { findChromium } from '../../scripts/chromium.ts'
import type { Journey } from '../../src/dashboard/journey.ts'
import { type JourneyApp, seed004Order, startJourneyApp } from '../journey/support.ts'
import { type TestTokens, testTokens } from '../support/app.ts'
import { waitFor } from '../support/index.ts'

/**
 * The dashboard in a real browser (playwright-core driving the system's Chromium) against the app
 * on the embedded default, listening on a port of its own: the overview follows orders as they are
 * posted; one order's journey shows its events through DELIVERED; a failing saga turns an order's
 * event into a dead letter with the key parked, later events of the order wait behind it, and one
 * click on Redrive lets them all through, in their order.
 *
 * No Chromium (CHROMIUM_PATH, or chromium on the PATH): the suite is skipped and says why; under
 * CI=true `npm test` fails before it gets here. DASHBOARD_SCREENSHOTS=<dir> keeps a screenshot of
 * each view there (`node scripts/screenshots.ts` writes docs/screenshots).
 */

const executablePath = findChromium()
const screenshots = process.env.DASHBOARD_SCREENSHOTS ? resolve(process.env.DASHBOARD_SCREENSHOTS) : undefined

/**
 * Fault injection in the database: while `active`, every write of a saga row fails, so the saga's
 * consumer retries, gives up and dead-letters the message.
 */
const SAGA_FAULT = `
  CREATE TABLE dashboard_test_fault (active boolean NOT NULL);
  INSERT INTO dashboard_test_fault VALUES (false);
  CREATE FUNCTION dashboard_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF (SELECT active FROM dashboard_test_fault) THEN
      RAISE EXCEPTION 'injected fault: the saga store refuses writes';
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER dashboard_test_fail BEFORE INSERT OR UPDATE ON sagas
    FOR EACH ROW EXECUTE FUNCTION dashboard_test_fail();`

describe('dashboard in a real browser', {
  skip: executablePath ? false : 'no Chromium found: apt-get install chromium, or set CHROMIUM_PATH',
}, () => {
  let j: JourneyApp
  let base: string
  let browser: Browser
  let page: Page
  const pageErrors: string[] = []

  before(async () => {
    j = await startJourneyApp({ infra: 'embedded', mode: 'orchestration', env: { DELIVERY_DELAY_MS: '300' } })
    await j.db.db.exec(SAGA_FAULT)
    base = await j.app.http.listen({ host: '127.0.0.1', port: 0 })
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
    page = await browser.newPage({ viewport: { width: 1440, height: 960 } })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    if (screenshots) mkdirSync(screenshots, { recursive: true })
  })
  after(async () => {
    await browser?.close()
    await j?.close()
  })

  const shot = async (name: string) => {
    if (screenshots) await page.screenshot({ path: join(screenshots, `${name}.png`) })
  }
  const post = async (url: string, body: object) => {
    const response = await fetch(`${base}${url}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    const answer = await response.text()
    assert.ok(response.ok, `POST ${url}: ${response.status} ${answer}`)
    return JSON.parse(answer) as { id: string; status: string }
  }
  const journeyOf = async (id: string) =>
    (await j.app.http.inject({ method: 'GET', url: `/api/dashboard/orders/${id}/journey` })).json<Journey>()
  const statusOf = async (id: string) =>
    (await j.app.http.inject({ method: 'GET', url: `/api/orders/${id}` })).json<{ status: string }>().status
  const text = (selector: string) =>
    page
      .locator(selector)
      .textContent()
      .then((value) => value ?? '')

  it('updates the overview live while orders flow', async () => {
    await page.goto(`${base}/dashboard`)
    await page.locator('#ov-at', { hasText: 'updated' }).waitFor()
    assert.equal(await text('#st-total .value'), '0')
    await page.locator('.live.on').waitFor()

    // Orders posted over HTTP show up without a reload: counted, listed, and charted per second.
    // The events rate is the last second's: the page notes whether it ever showed one above zero,
    // since the six journeys may be over, and the rate back at 0, before the count reaches 6.
    // (Strings: this file is compiled without the DOM's types; the code runs in the page.)
    await page.evaluate(`(() => {
      const look = () => {
        if (/[1-9]/.test(document.querySelector('#st-events .value')?.textContent ?? '')) window.sawEventsRate = true
      }
      new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true })
      look()
    })()`)
    const placed: string[] = []
    for (let i = 0; i < 6; i++) placed.push((await post('/api/orders', seed004Order)).id)
    await page.locator('#st-total .value', { hasText: /^6$/ }).waitFor()
    await page.locator('#tb-recent', { hasText: placed.at(-1) ?? '' }).waitFor()
    await page.waitForFunction('window.sawEventsRate === true')
    assert.equal(await page.locator('#ch-rates canvas').count(), 1)
    // They go on to DELIVERED, and the status table follows.
    await page.locator('#tb-status', { hasText: 'DELIVERED' }).waitFor({ timeout: 30_000 })
    await page
      .locator('#tb-status tr', { hasText: 'DELIVERED' })
      .locator('td.num', { hasText: /^6$/ })
      .waitFor({ timeout: 30_000 })
  })

  it('shows one order’s journey through DELIVERED, found by its id', async () => {
    const order = await post('/api/orders', seed004Order)
    await waitFor(async () => (await statusOf(order.id)) === 'DELIVERED', {
      timeoutMs: 30_000,
      message: `order ${order.id} to be delivered`,
    })
    await page.goto(`${base}/dashboard#/overview`)
    await page.fill('#order-search-input', order.id)
    await page.press('#order-search-input', 'Enter')
    await page.waitForURL(`**/dashboard#/orders/${order.id}`)
    await page.locator('.timeline', { hasText: 'OrderDelivered' }).waitFor({ timeout: 30_000 })
    await page.locator('.steps .step.done').nth(4).waitFor()
    const timeline = await text('.timeline')
    for (const step of ['OrderCreated', 'PaymentProcessed', 'OrderConfirmed', 'OrderDispatched', 'OrderDelivered']) {
      assert.ok(timeline.includes(step), `${step} on the timeline`)
    }
    assert.ok(timeline.includes('create-order-saga'), 'which group handled what')
    assert.match(await text('#trace-ids'), /^[0-9a-f]{32}$/)
    await shot('journey')
  })

  it('shows topics with their lag and dead-letter depth', async () => {
    await page.goto(`${base}/dashboard#/topics`)
    await page.locator('#tb-topics', { hasText: 'order-events' }).waitFor()
    await page.locator('#tb-groups', { hasText: 'create-order-saga' }).waitFor()
  })

  it('parks a key behind its dead letter, and one click on Redrive lets its events through in order', async () => {
    // The saga fails every write: the order's first event is dead-lettered after its retries.
    await j.db.db.query('UPDATE dashboard_test_fault SET active = true')
    const order = await post('/api/orders', seed004Order)
    await waitFor(async () => (await journeyOf(order.id)).parked.length === 1, {
      timeoutMs: 30_000,
      message: `order ${order.id}'s key to be parked in the saga's group`,
    })
    // The customer cancels meanwhile: that event of the same key waits behind the dead letter.
    await post(`/api/orders/${order.id}/cancel`, { reason: 'changed my mind' })
    await waitFor(async () => (await journeyOf(order.id)).parked[0]?.messages.length === 1, {
      timeoutMs: 30_000,
      message: 'the cancellation to be parked behind the dead letter',
    })
    // Fixed: the saga's store takes writes again. Nothing moves until an operator redrives.
    await j.db.db.query('UPDATE dashboard_test_fault SET active = false')

    await page.goto(`${base}/dashboard#/overview`)
    await page.locator('#st-dead .value', { hasText: /^1$/ }).waitFor()
    await page.locator('#st-parked .value', { hasText: /^1$/ }).waitFor()
    await page.locator('#tb-recent tr', { hasText: order.id }).locator('.badge', { hasText: 'parked' }).waitFor()
    await shot('overview')
    await page.goto(`${base}/dashboard#/topics`)
    await page.locator('#tb-topics', { hasText: '1 open' }).waitFor()
    await shot('topics')

    await page.goto(`${base}/dashboard#/dead-letters`)
    const row = page.locator('#dl-list tr', { hasText: order.id })
    await row.waitFor()
    assert.match((await row.textContent()) ?? '', /RETRIES_EXHAUSTED/)
    await shot('dead-letters')
    await row.locator('a').first().click()
    await page.locator('h1', { hasText: 'Dead letter' }).waitFor()
    await page.locator('text=injected fault: the saga store refuses writes').first().waitFor()
    assert.match(await text('.card:has(h2:has-text("Parked behind it"))'), /1 message\(s\)/)
    await shot('dead-letter')

    await page.click('button:has-text("Redrive to the consumer")')
    await page.locator('h1 .badge', { hasText: 'redriven' }).waitFor({ timeout: 30_000 })

    // Released in their order: the saga handled the order's creation, then its cancellation.
    const done = await waitFor(
      async () => {
        const view = await journeyOf(order.id)
        return view.parked.length === 0 && view.saga?.status === 'COMPLETED' ? view : null
      },
      { timeoutMs: 30_000, message: 'the parked events to be released and the saga to finish' },
    )
    const handled = (done.saga?.history ?? []).filter((h) => h.direction === 'in').map((h) => h.type)
    assert.deepEqual(handled.slice(0, 2), ['OrderCreated', 'OrderCancelled'])
    assert.equal(await statusOf(order.id), 'CANCELLED')
    assert.equal(done.deadLetters[0]?.state, 'redriven')

    // The journey page says so too.
    await page.goto(`${base}/dashboard#/orders/${order.id}`)
    await page.locator('.timeline', { hasText: 'dead letter' }).waitFor()
    assert.equal(await page.locator('.notice.bad', { hasText: 'parked' }).count(), 0)
    assert.deepEqual(pageErrors, [])
  })
})

describe('dashboard sign-in in a real browser', {
  skip: executablePath ? false : 'no Chromium found: apt-get install chromium, or set CHROMIUM_PATH',
}, () => {
  let j: JourneyApp
  let base: string
  let browser: Browser
  let tokens: TestTokens

  before(async () => {
    tokens = await testTokens()
    j = await startJourneyApp({
      infra: 'embedded',
      mode: 'orchestration',
      services: ['order', 'dashboard'],
      app: { authenticate: tokens.authenticate },
    })
    base = await j.app.http.listen({ host: '127.0.0.1', port: 0 })
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
  })
  after(async () => {
    await browser?.close()
    await j?.close()
  })

  it('asks for a token, and AUTH=dev’s link signs in without leaving the token in the address', async () => {
    const page = await browser.newPage()
    await page.goto(`${base}/dashboard`)
    await page.locator('#sign-in', { hasText: 'Sign in with a token' }).waitFor()
    assert.equal(await page.locator('#st-total .value').textContent(), '–')

    // A customer's token is refused with a reason; an operator's link signs in.
    await page.fill('#token-input', await tokens.issue('customer-1', ['customer']))
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#sign-in-error', { hasText: 'operator role' }).waitFor()

    const operator = await tokens.issue('operator-1', ['operator'])
    await page.goto(`${base}/dashboard#token=${operator}`)
    await page.reload()
    await page.locator('#ov-at', { hasText: 'updated' }).waitFor()
    assert.equal(await page.locator('#st-total .value').textContent(), '0')
    assert.ok(!page.url().includes(operator), 'the token left the address')
    assert.equal(await page.locator('#sign-in-button').textContent(), 'Token ✓')
    await page.close()
  })
})
