import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase, waitFor } from '../../test/support/index.ts'
import { startTimerPoller, type TimerPoller } from '../platform/es/scheduler.ts'
import { createLogger } from '../platform/logger.ts'
import { migratePlatform, migrationsBeside, runMigrations } from '../platform/sql/migrations.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'
import { createDeliveryStore, DELIVERY_DUE_TIMER, type DeliveryStore } from './application/delivery-store.ts'

/**
 * Due deliveries are durable timers on the database's clock: the app's clock stepped back an hour
 * does not hold a delivery back for that hour, and stepped forward it does not deliver early.
 *
 * Two faults. The app's clock (the `clock` the services are built with) stepping, on both
 * databases. And the process's wall clock stepping (NTP, a resumed VM) while the database runs
 * elsewhere: `Date` is replaced, for the duration of the step, by one that is off; timers
 * (`setTimeout`) and PostgreSQL's clock are not affected, as they are not when the app's host's
 * clock is stepped. Not on PGlite: it runs in the process, and its now() is the process's clock,
 * so there the database's clock steps with it (see platform/es/scheduler.ts).
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

const DELAY_MS = 500
const HOUR_MS = 3_600_000

const RealDate = Date

/** Steps the process's wall clock by `offsetMs` until the returned function is called. */
function stepWallClock(offsetMs: number): () => void {
  class SteppedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + offsetMs)
      else super(...(args as [string | number]))
    }
    static override now(): number {
      return RealDate.now() + offsetMs
    }
  }
  globalThis.Date = SteppedDate as DateConstructor
  return () => {
    globalThis.Date = RealDate
  }
}

function suite(name: string, open: () => Promise<TestDatabase>, databaseInProcess: boolean) {
  describe(`due deliveries on ${name}`, () => {
    let database: TestDatabase
    let db: SqlDatabase
    let store: DeliveryStore
    let timers: TimerPoller
    /** The app's clock (the store's `clock`) is this far off the real one; a test steps it. */
    let appClockOffsetMs = 0
    /** The database's time each order's timer fired at. */
    const firedAt = new Map<string, Date>()

    const databaseNow = async (): Promise<Date> => {
      const { rows } = await db.query<{ now: Date }>('SELECT now() AS now')
      return new Date(rows[0]?.now ?? Number.NaN)
    }

    before(async () => {
      database = await open()
      db = database.db
      await migratePlatform(db)
      await runMigrations(db, [
        { module: 'delivery', directory: migrationsBeside(new URL('./index.ts', import.meta.url).href) },
      ])
      store = createDeliveryStore({
        db,
        onCommitted: () => {},
        onScheduled: (inMs) => timers.wake(inMs),
        clock: () => new Date(Date.now() + appClockOffsetMs),
      })
      timers = startTimerPoller<{ orderId: string }>({
        db,
        kind: DELIVERY_DUE_TIMER,
        logger,
        pollIntervalMs: 50,
        fire: async (timer) => {
          if (!firedAt.has(timer.payload.orderId)) firedAt.set(timer.payload.orderId, await databaseNow())
          await store.execute({ commandType: 'DeliverOrder', orderId: timer.payload.orderId })
        },
      })
    })

    after(async () => {
      await timers?.stop()
      await database?.cleanup()
    })

    const stepAppClock = (offsetMs: number) => {
      appClockOffsetMs = offsetMs
      return () => {
        appClockOffsetMs = 0
      }
    }
    const clocks = [
      { which: 'app clock', step: stepAppClock, skip: false as const },
      {
        which: "process's wall clock",
        step: stepWallClock,
        skip: databaseInProcess && 'the database runs in the process: its clock is the wall clock',
      },
    ]
    for (const [direction, stepMs] of [
      ['back', -HOUR_MS],
      ['forward', HOUR_MS],
    ] as const)
      for (const clock of clocks)
        it(`delivers at the database's deadline when the ${clock.which} steps ${direction} an hour`, {
          skip: clock.skip,
        }, async () => {
          const orderId = `order-${direction}-${clock.which.replaceAll(/\W/g, '-')}-${name}`
          const scheduledNotBefore = await databaseNow()
          await store.execute({
            commandType: 'ScheduleDelivery',
            orderId,
            shipmentId: `shipment-${orderId}`,
            delayMs: DELAY_MS,
          })
          // The jump comes after the delivery was scheduled and before it is due.
          const restore = clock.step(stepMs)
          try {
            await waitFor(async () => (await store.get(orderId))?.status === 'DELIVERED', {
              message: `order ${orderId} is delivered although the app's clock stepped ${direction}`,
            })
          } finally {
            restore()
          }
          const fired = firedAt.get(orderId)
          assert.ok(fired, 'the due-delivery timer fired')
          assert.ok(
            fired.getTime() >= scheduledNotBefore.getTime() + DELAY_MS,
            `not early: scheduled after ${scheduledNotBefore.toISOString()} for ${DELAY_MS} ms, fired at ${fired.toISOString()}`,
          )
        })
  })
}

suite('PGlite', pgliteTestDatabase, true)
suite('PostgreSQL', () => postgresTestDatabase('of_delivery_timers'), false)
