import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  pgliteTestDatabase,
  postgresTestDatabase,
  type TestDatabase,
  uniqueName,
  waitFor,
} from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { startTimerPoller, type TimerPoller } from './scheduler.ts'
import { complete, ignore, publish, schedule, send, type Workflow } from './workflow.ts'
import {
  createWorkflowProcessor,
  type WorkflowInputMetadata,
  type WorkflowProcessorOptions,
} from './workflow-processor.ts'
import type { MessageRouting } from './workflow-routes.ts'

/**
 * The workflow processor runs any workflow, not only the Create-Order saga: here a cart reminder
 * that knows nothing of topics. An opened cart schedules a reminder; when the reminder's durable
 * timer fires the workflow sends a command (routed by its type to a topic and encoder) and
 * publishes an event of its own; a checkout publishes and completes, which removes the timer; a
 * reminder that comes too late is ignored, with the reason in the log.
 */

const NOTIFICATION_COMMANDS = 'notification_commands'
const CART_EVENTS = 'cart_workflow_events'
const REMINDER_TIMER = 'cart-reminder'
const REMINDER_MS = 150

interface ReminderDue {
  type: 'ReminderDue'
  cartId: string
}
type CartInput =
  | { type: 'CartOpened'; id: string; cartId: string; customerId: string }
  | { type: 'ItemAdded'; id: string; cartId: string; sku: string }
  | { type: 'CartCheckedOut'; id: string; cartId: string }
  | ReminderDue
interface SendReminder {
  commandType: 'SendReminder'
  cartId: string
  customerId: string
  items: number
}
interface CartEvent {
  eventType: 'CartAbandoned' | 'CartConverted'
  cartId: string
  items: number
}
interface CartState {
  status: 'NONE' | 'OPEN' | 'REMINDED' | 'CHECKED_OUT'
  customerId: string | null
  items: string[]
  openedAt: string | null
}

const cartReminder: Workflow<CartInput, CartState, SendReminder, ReminderDue, CartEvent> = {
  initialState: () => ({ status: 'NONE', customerId: null, items: [], openedAt: null }),
  decide(input, state, { now }) {
    switch (input.type) {
      case 'CartOpened':
        return state.status === 'NONE'
          ? [
              schedule(new Date(Date.parse(now) + REMINDER_MS).toISOString(), {
                type: 'ReminderDue',
                cartId: input.cartId,
              }),
            ]
          : []
      case 'ItemAdded':
        return []
      case 'CartCheckedOut':
        return state.status === 'OPEN'
          ? [
              publish({ eventType: 'CartConverted', cartId: input.cartId, items: state.items.length }),
              complete('CHECKED_OUT'),
            ]
          : [ignore(`the cart is ${state.status}`)]
      case 'ReminderDue':
        if (state.status !== 'OPEN') return [ignore(`the cart is ${state.status}`)]
        return [
          send({
            commandType: 'SendReminder',
            cartId: input.cartId,
            customerId: state.customerId ?? '',
            items: state.items.length,
          }),
          publish({ eventType: 'CartAbandoned', cartId: input.cartId, items: state.items.length }),
          complete('REMINDED'),
        ]
    }
  },
  evolve(state, message, { now }) {
    if ('kind' in message) {
      return message.kind === 'Complete' ? { ...state, status: message.outcome as CartState['status'] } : state
    }
    switch (message.type) {
      case 'CartOpened':
        return state.status === 'NONE'
          ? { ...state, status: 'OPEN', customerId: message.customerId, openedAt: now }
          : state
      case 'ItemAdded':
        return state.status === 'OPEN' ? { ...state, items: [...state.items, message.sku] } : state
      default:
        return state
    }
  },
}

/** Commands by their type, events by theirs: the workflow names no topic. */
const sends: MessageRouting<SendReminder> = {
  routeOf: (command) => command.commandType,
  typeOf: (command) => command.commandType,
  keyOf: (command) => command.cartId,
  routes: {
    SendReminder: {
      topic: NOTIFICATION_COMMANDS,
      encode: (command, envelope) => ({ commandId: envelope.id, correlationId: envelope.correlationId, ...command }),
    },
  },
}
const eventRoute = {
  topic: CART_EVENTS,
  encode: (event: CartEvent, envelope: { id: string; at: string }) => ({
    eventId: envelope.id,
    occurredOn: envelope.at,
    ...event,
  }),
}
const publishes: MessageRouting<CartEvent> = {
  routeOf: (event) => event.eventType,
  typeOf: (event) => event.eventType,
  keyOf: (event) => event.cartId,
  routes: { CartAbandoned: eventRoute, CartConverted: eventRoute },
}

const CART_TABLE = `CREATE TABLE cart_reminders (
  id text PRIMARY KEY,
  version integer NOT NULL,
  state jsonb NOT NULL,
  updated_at timestamptz NOT NULL,
  status text NOT NULL,
  customer_id text,
  opened_at timestamptz NOT NULL
)`

function suite(name: string, open: () => Promise<TestDatabase>) {
  describe(`the workflow processor running a cart reminder on ${name}`, () => {
    let database: TestDatabase
    let db: SqlDatabase
    let timers: TimerPoller
    const logLines: string[] = []
    const ended: { cartId: string; status: string }[] = []
    let committed = 0
    const scheduled: number[] = []

    const options = (): WorkflowProcessorOptions<CartInput, CartState, SendReminder, ReminderDue, CartEvent> => ({
      name: 'cart-reminder',
      db,
      workflow: cartReminder,
      instanceOf: (input) => input.cartId,
      starts: (input) => input.type === 'CartOpened',
      table: {
        table: 'cart_reminders',
        columns: {
          status: { type: 'text', of: (state) => state.status },
          customer_id: { type: 'text', of: (state) => state.customerId, onUpdate: 'keep' },
          opened_at: { type: 'timestamptz', of: (state) => state.openedAt, onUpdate: 'keep' },
        },
      },
      sends,
      publishes,
      messageIds: { namespace: '0f3d4a52-6a0e-4f7b-9a7e-4d2f8a1c9b10' },
      timerKind: REMINDER_TIMER,
      onCommitted: () => committed++,
      onScheduled: (delayMs) => {
        scheduled.push(delayMs)
        timers?.wake(delayMs)
      },
      onEnded: (state, cartId) => ended.push({ cartId, status: state.status }),
      logger: createLogger({
        level: 'debug',
        destination: {
          write: (line: string) => {
            logLines.push(line)
          },
        },
      }),
    })
    let processor: ReturnType<
      typeof createWorkflowProcessor<CartInput, CartState, SendReminder, ReminderDue, CartEvent>
    >

    before(async () => {
      database = await open()
      db = database.db
      await migratePlatform(db)
      await db.exec(CART_TABLE)
      processor = createWorkflowProcessor(options())
      timers = startTimerPoller<ReminderDue>({
        db,
        kind: REMINDER_TIMER,
        logger: createLogger({ level: 'silent' }),
        pollIntervalMs: 50,
        fire: async (timer) => {
          await processor.handle(timer.payload, { consumer: REMINDER_TIMER, messageId: `${timer.id}@${timer.dueAt}` })
        },
      })
    })
    after(async () => {
      await timers?.stop()
      await database?.cleanup()
    })

    const inbox = (id: string): WorkflowInputMetadata => ({ consumer: 'carts', messageId: id })
    const opened = (cartId: string) =>
      ({ type: 'CartOpened', id: `${cartId}-opened`, cartId, customerId: `customer-of-${cartId}` }) as const
    const added = (cartId: string, sku: string) => ({ type: 'ItemAdded', id: `${cartId}-${sku}`, cartId, sku }) as const
    const outbox = async (cartId: string) =>
      (
        await db.query<{ topic: string; value: string; headers: Record<string, string> }>(
          'SELECT topic, value, headers FROM outbox WHERE message_key = $1 ORDER BY id',
          [cartId],
        )
      ).rows.map((row) => ({
        topic: row.topic,
        type: row.headers['event-type'],
        id: row.headers['event-id'],
        value: JSON.parse(row.value),
      }))
    const timerOf = async (cartId: string) =>
      (
        await db.query<{ kind: string; delay_ms: string; armed: boolean; payload: ReminderDue }>(
          'SELECT kind, delay_ms::text, due_at IS NOT NULL AS armed, payload FROM scheduled_timers WHERE id = $1',
          [processor.timerId(cartId)],
        )
      ).rows[0]
    const row = async (cartId: string) =>
      (
        await db.query<{ version: number; status: string; customer_id: string }>(
          'SELECT version, status, customer_id FROM cart_reminders WHERE id = $1',
          [cartId],
        )
      ).rows[0]

    it('fires the durable timer it scheduled, sends through its routing table and publishes its own event', async () => {
      const cartId = uniqueName('cart')
      const committedBefore = committed
      // In one transaction with its timer, so the item is in before the reminder can fire.
      await processor.handleBatch([
        { input: opened(cartId), metadata: inbox(`${cartId}-opened`) },
        { input: added(cartId, 'sku-1'), metadata: inbox(`${cartId}-sku-1`) },
      ])
      // Nothing was sent, so the reminder's clock runs from the commit.
      assert.deepEqual(await timerOf(cartId), {
        kind: REMINDER_TIMER,
        delay_ms: String(REMINDER_MS),
        armed: true,
        payload: { type: 'ReminderDue', cartId },
      })
      assert.equal(committed, committedBefore, 'nothing went to the outbox')
      assert.ok(scheduled.includes(REMINDER_MS))

      await waitFor(async () => (await processor.get(cartId))?.status === 'REMINDED', {
        message: 'the reminder fires and the cart is reminded',
      })
      const sent = await outbox(cartId)
      assert.deepEqual(
        sent.map(({ topic, type, value }) => ({
          topic,
          type,
          value: { ...value, commandId: undefined, eventId: undefined, occurredOn: undefined },
        })),
        [
          {
            topic: NOTIFICATION_COMMANDS,
            type: 'SendReminder',
            value: {
              commandId: undefined,
              eventId: undefined,
              occurredOn: undefined,
              correlationId: cartId,
              commandType: 'SendReminder',
              cartId,
              customerId: `customer-of-${cartId}`,
              items: 1,
            },
          },
          {
            topic: CART_EVENTS,
            type: 'CartAbandoned',
            value: {
              commandId: undefined,
              eventId: undefined,
              occurredOn: undefined,
              eventType: 'CartAbandoned',
              cartId,
              items: 1,
            },
          },
        ],
      )
      assert.equal(sent[0]?.id, sent[0]?.value.commandId, 'the command id is its message id')
      assert.equal(sent[1]?.id, sent[1]?.value.eventId)
      assert.notEqual(sent[0]?.id, sent[1]?.id)
      assert.ok(committed > committedBefore, 'the relay was told')
      assert.equal(await timerOf(cartId), undefined, 'the fired timer is gone')
      assert.deepEqual(await row(cartId), { version: 3, status: 'REMINDED', customer_id: `customer-of-${cartId}` })
      assert.deepEqual(
        ended.filter((e) => e.cartId === cartId),
        [{ cartId, status: 'REMINDED' }],
      )
    })

    it('a checkout in the same batch publishes and completes, so the timer goes; a late reminder is ignored, with its reason in the log', async () => {
      const cartId = uniqueName('cart')
      const checkout = { type: 'CartCheckedOut', id: `${cartId}-checkout`, cartId } as const
      const inputs = [opened(cartId), added(cartId, 'sku-1'), added(cartId, 'sku-2'), checkout]
      const results = await processor.handleBatch(inputs.map((input) => ({ input, metadata: inbox(input.id) })))
      assert.deepEqual(
        results.map((r) => [r.duplicate, r.state?.status, r.state?.items.length]),
        [
          [false, 'OPEN', 0],
          [false, 'OPEN', 1],
          [false, 'OPEN', 2],
          [false, 'CHECKED_OUT', 2],
        ],
      )
      assert.equal(await timerOf(cartId), undefined, 'set and removed in one batch: no timer')
      assert.deepEqual(
        (await outbox(cartId)).map(({ topic, type, value }) => [topic, type, value.items]),
        [[CART_EVENTS, 'CartConverted', 2]],
      )
      assert.deepEqual(await row(cartId), { version: 4, status: 'CHECKED_OUT', customer_id: `customer-of-${cartId}` })

      const late = await processor.handle({ type: 'ReminderDue', cartId }, inbox(`${cartId}-late-reminder`))
      assert.deepEqual(late.outputs, [])
      assert.equal(late.state?.status, 'CHECKED_OUT')
      assert.equal((await row(cartId))?.version, 4, 'nothing written')
      const line = logLines.map((l) => JSON.parse(l)).find((l) => l.instanceId === cartId)
      assert.equal(line?.reason, 'the cart is CHECKED_OUT', logLines.join('\n'))
    })

    it('only an opening starts a cart, and an input seen before (or twice in a batch) changes nothing', async () => {
      const cartId = uniqueName('cart')
      const stray = await processor.handle(added(cartId, 'sku-0'), inbox(`${cartId}-stray`))
      assert.deepEqual(stray, { outputs: [], state: null, duplicate: false })
      assert.equal(await row(cartId), undefined)

      const [first, copy] = await processor.handleBatch([
        { input: opened(cartId), metadata: inbox(`${cartId}-opened`) },
        { input: opened(cartId), metadata: inbox(`${cartId}-opened`) },
      ])
      assert.deepEqual([first?.duplicate, copy?.duplicate], [false, true])
      const again = await processor.handle(opened(cartId), inbox(`${cartId}-opened`))
      assert.equal(again.duplicate, true)
      const stray2 = await processor.handle(added(cartId, 'sku-0'), inbox(`${cartId}-stray`))
      assert.equal(stray2.duplicate, true, 'the stray input was recorded though it changed nothing')
      assert.deepEqual(await row(cartId), { version: 1, status: 'OPEN', customer_id: `customer-of-${cartId}` })
    })

    it('a message without a route fails its input, which leaves nothing behind', async () => {
      // Timers of a kind no poller fires: the cart stays as this test leaves it.
      const unrouted = createWorkflowProcessor({
        ...options(),
        sends: { ...sends, routes: {} },
        timerKind: 'unfired-reminder',
      })
      const cartId = uniqueName('cart')
      await unrouted.handle(opened(cartId), inbox(`${cartId}-opened`))
      await assert.rejects(
        unrouted.handle({ type: 'ReminderDue', cartId }, inbox(`${cartId}-reminder`)),
        /no route for SendReminder/,
      )
      assert.deepEqual(await row(cartId), { version: 1, status: 'OPEN', customer_id: `customer-of-${cartId}` })
      assert.deepEqual(await outbox(cartId), [])
      const { rows } = await db.query('SELECT 1 FROM inbox WHERE message_id = $1', [`${cartId}-reminder`])
      assert.equal(rows.length, 0, 'not in the inbox: it is tried again')
    })
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_workflow_processor'))
