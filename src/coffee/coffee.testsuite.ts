import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { startTestApp } from '../../test/support/app.ts'
import { joined, uniqueName, waitFor } from '../../test/support/index.ts'
import type { App } from '../app.ts'
import type { Logger } from '../platform/logger.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import type { Transport } from '../platform/transport/port.ts'
import { type CoffeeModule, type CoffeeOptions, coffeeModule } from './index.ts'

/**
 * Seed 003 end to end on whichever log the caller brings: orders go in over HTTP, come out of the
 * consumer's structured logs. Each test has a topic and group of its own.
 */

export interface CoffeeSetup {
  db: SqlDatabase
  transport: Transport
  cleanup(): Promise<void>
}

interface LogLine {
  msg: string
  customer_name?: string
  coffee_type?: string
  partition?: number
  [field: string]: unknown
}

/** A logger whose JSON lines the test reads back. */
function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) })
  return { logger, lines }
}

export function coffeeSuite(name: string, setup: () => Promise<CoffeeSetup>, timeoutMs = 30_000): void {
  describe(`seed 003's coffee orders on ${name}`, () => {
    let context: CoffeeSetup
    const apps: App[] = []

    before(async () => {
      context = await setup()
    })
    after(async () => {
      for (const app of apps.splice(0)) await app.close()
      await context?.cleanup()
    })

    const start = async (options: CoffeeOptions, logger?: Logger) => {
      const app = await startTestApp({
        db: context.db,
        transport: context.transport,
        modules: [coffeeModule(options)],
        ...(logger ? { logger } : {}),
      })
      apps.push(app)
      return app
    }
    const order = (app: App, body: Record<string, unknown>) =>
      app.http.inject({ method: 'POST', url: '/order', payload: body })
    const brewed = (lines: LogLine[]) => lines.filter((line) => line.msg.startsWith('Brewing '))

    it('consumes, once a consumer starts, an order published while none ran, from the oldest offset', async () => {
      const topic = uniqueName('coffee_orders')
      const producer = await start({ topic, consumer: false })
      const placed = await order(producer, { customer_name: 'John Doe', coffee_type: 'Latte' })
      assert.equal(placed.statusCode, 200, placed.body)
      assert.equal(placed.json().success, true)
      assert.equal(placed.json().msg, 'Order for John Doe placed successfully!')

      const { logger, lines } = capturingLogger()
      await start({ topic, groupId: uniqueName('coffee'), producer: false }, logger)
      const line = await waitFor(() => brewed(lines).find((l) => l.customer_name === 'John Doe'), {
        timeoutMs,
        message: () => `the order was not consumed; logs: ${lines.map((l) => l.msg).join(' | ')}`,
      })
      assert.equal(line.coffee_type, 'Latte')
      assert.equal(line.topic, topic)
    })

    it('keeps consuming after a message that is not an order', async () => {
      const topic = uniqueName('coffee_orders')
      const { logger, lines } = capturingLogger()
      const app = await start({ topic, groupId: uniqueName('coffee') }, logger)
      // One key: the good order is behind the bad message on the same partition.
      await context.transport.publish([
        { topic, key: 'same', value: 'espresso please' },
        { topic, key: 'same', value: JSON.stringify({ customer_name: 'Ada', coffee_type: 'Mocha' }) },
      ])
      const placed = await order(app, { customer_name: 'Grace', coffee_type: 'Flat white' })
      assert.equal(placed.statusCode, 200)
      await waitFor(() => ['Ada', 'Grace'].every((who) => brewed(lines).some((l) => l.customer_name === who)), {
        timeoutMs,
        message: () => `orders after the bad message were not consumed: ${brewed(lines).length}`,
      })
      assert.ok(
        lines.some((l) => l.msg.startsWith('message dead-lettered: NOT_JSON')),
        'the bad message is logged with its reason',
      )
    })

    it('validates the order, naming the field', async () => {
      const app = await start({ topic: uniqueName('coffee_orders'), consumer: false })
      const response = await order(app, { customer_name: 'John Doe' })
      assert.equal(response.statusCode, 400)
      assert.deepEqual(
        response.json().errors.map((e: { field: string }) => e.field),
        ['coffee_type'],
      )
    })

    it('splits the partitions between two consumers of one group', async () => {
      const topic = uniqueName('coffee_orders')
      const groupId = uniqueName('coffee')
      await context.transport.ensureTopics([topic])
      const first = capturingLogger()
      const second = capturingLogger()
      const producer = await start({ topic, consumer: false })
      const members = [
        await start({ topic, groupId, producer: false }, first.logger),
        await start({ topic, groupId, producer: false }, second.logger),
      ]
      // Both members hold their partitions before the first order goes out.
      for (const member of members) {
        const { consumer } = member.module<CoffeeModule>('coffee')
        assert.ok(consumer, 'the member consumes')
        await joined(consumer)
      }

      // A join settles in a rebalance; until then a partition may still move. Warm up until both
      // members brew, then count only what comes after.
      let warmups = 0
      await waitFor(
        async () => {
          await order(producer, { customer_name: `warm-up-${warmups++}`, coffee_type: 'Espresso' })
          return brewed(first.lines).length > 0 && brewed(second.lines).length > 0
        },
        { timeoutMs, intervalMs: 200, message: 'the two members never both brewed' },
      )
      const skip = [brewed(first.lines).length, brewed(second.lines).length]
      const after = (lines: LogLine[], from: number) =>
        brewed(lines)
          .slice(from)
          .filter((l) => !String(l.customer_name).startsWith('warm-up-'))

      const customers = Array.from({ length: 30 }, (_, i) => `customer-${i}`)
      for (const customer of customers) {
        const placed = await order(producer, { customer_name: customer, coffee_type: 'Americano' })
        assert.equal(placed.statusCode, 200)
      }
      const all = () => [...after(first.lines, skip[0] ?? 0), ...after(second.lines, skip[1] ?? 0)]
      await waitFor(() => customers.every((c) => all().some((l) => l.customer_name === c)), {
        timeoutMs,
        message: () => `the two consumers brewed ${all().length} of ${customers.length}`,
      })
      const partitions = (lines: LogLine[]) => new Set(lines.map((l) => l.partition))
      const [a, b] = [partitions(after(first.lines, skip[0] ?? 0)), partitions(after(second.lines, skip[1] ?? 0))]
      assert.ok(a.size > 0 && b.size > 0, `both consumers brewed (${a.size} and ${b.size} partitions)`)
      assert.deepEqual(
        [...a].filter((p) => b.has(p)),
        [],
        `no partition went to both: ${[...a]} vs ${[...b]}`,
      )
      assert.equal(all().length, customers.length, 'every order was brewed once')
    })
  })
}
