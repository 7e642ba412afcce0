import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, postgresTestDatabase, type TestDatabase, waitFor } from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { enqueue } from '../outbox/outbox.ts'
import { migratePlatform } from '../sql/migrations.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { scheduleTimer, startTimerPoller, type TimerPoller, writeTimerChanges } from './scheduler.ts'

/**
 * Timers whose clock starts when an outbox row is published: unarmed while the row waits, armed
 * from the row's published_at, and armed at once when the row is gone (pruned after publishing).
 */

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'silent' })

const KIND = 'scheduler-test'
const DELAY_MS = 200

function suite(name: string, open: () => Promise<TestDatabase>) {
  describe(`durable timers on ${name}`, () => {
    let database: TestDatabase
    let db: SqlDatabase
    let timers: TimerPoller
    /** Timer id → the database's time it fired at. */
    const fired = new Map<string, Date>()
    const postponed = new Map<string, number>()

    before(async () => {
      database = await open()
      db = database.db
      await migratePlatform(db)
      timers = startTimerPoller<null>({
        db,
        kind: KIND,
        logger,
        pollIntervalMs: 50,
        fire: async (timer) => {
          // A timer named postpone-* is put off twice (as a saga timeout is while the broker is away).
          if (timer.id.startsWith('postpone') && (postponed.get(timer.id) ?? 0) < 2) {
            postponed.set(timer.id, (postponed.get(timer.id) ?? 0) + 1)
            return { postponeMs: DELAY_MS }
          }
          const { rows } = await db.query<{ now: Date }>('SELECT now() AS now')
          fired.set(timer.id, new Date(rows[0]?.now ?? Number.NaN))
          return undefined
        },
      })
    })

    after(async () => {
      await timers?.stop()
      await database?.cleanup()
    })

    const outboxRow = async () => {
      const [id] = await enqueue(db, [{ topic: 'scheduler-test', key: 'k', value: 'v' }])
      assert.ok(id)
      return id
    }

    it('starts a timer’s clock when its outbox row is published, or at once if the row was pruned', async () => {
      const waiting = await outboxRow()
      const published = await outboxRow()
      const pruned = await outboxRow()
      // Scheduled first: were it armed at once, it would be due before the others.
      await scheduleTimer(db, {
        id: 'waiting',
        kind: KIND,
        delayMs: DELAY_MS,
        payload: null,
        startsWhenPublished: waiting,
      })
      await scheduleTimer(db, {
        id: 'published',
        kind: KIND,
        delayMs: DELAY_MS,
        payload: null,
        startsWhenPublished: published,
      })
      await scheduleTimer(db, {
        id: 'pruned',
        kind: KIND,
        delayMs: DELAY_MS,
        payload: null,
        startsWhenPublished: pruned,
      })

      await db.query('UPDATE outbox SET published_at = now() WHERE id = $1', [published])
      await db.query('DELETE FROM outbox WHERE id = $1', [pruned])
      await waitFor(() => fired.has('published') && fired.has('pruned'), {
        message: 'the timers of the published and the pruned rows fire',
      })
      assert.equal(fired.has('waiting'), false, 'the timer of the row still in the outbox does not fire')

      const { rows } = await db.query<{ published_at: Date }>('SELECT published_at FROM outbox WHERE id = $1', [
        published,
      ])
      const publishedAt = rows[0]?.published_at
      assert.ok(publishedAt)
      const firedAt = fired.get('published')
      assert.ok(firedAt && firedAt.getTime() >= new Date(publishedAt).getTime() + DELAY_MS, 'runs from the publish')

      await db.query('UPDATE outbox SET published_at = now() WHERE id = $1', [waiting])
      await waitFor(() => fired.has('waiting'), { message: 'the last timer fires once its row is published' })
      // The poller deletes a timer once its fire returned: a moment after the fire saw it.
      await waitFor(
        async () => (await db.query('SELECT id FROM scheduled_timers WHERE kind = $1', [KIND])).rows.length === 0,
        {
          message: 'fired timers are deleted',
        },
      )
    })

    it('arms the timers no other transaction holds, and the held one once it is let go', async (t) => {
      if (db.dialect === 'pglite') return t.skip('one connection: no second transaction can hold a row meanwhile')
      // The row is published only once the other transaction holds its timer: published first, the
      // poller could arm and fire both timers before the lock was taken.
      const row = await outboxRow()
      for (const id of ['held-by-another', 'free-to-arm']) {
        await scheduleTimer(db, { id, kind: KIND, delayMs: 1, payload: null, startsWhenPublished: row })
      }
      // Another process's transaction holds one timer's row (a service's batch writing it).
      const other = database.reopen()
      let letGo = () => {}
      const holding = new Promise<void>((resolve) => {
        letGo = resolve
      })
      let locked = () => {}
      const isLocked = new Promise<void>((resolve) => {
        locked = resolve
      })
      const held = other.transaction(async (tx) => {
        await tx.query("SELECT id FROM scheduled_timers WHERE id = 'held-by-another' FOR UPDATE")
        locked()
        await holding
      })
      try {
        await isLocked
        await db.query('UPDATE outbox SET published_at = now() WHERE id = $1', [row])
        await waitFor(() => fired.has('free-to-arm'), {
          timeoutMs: 5_000,
          message: 'the free timer armed and fired while the other is held (arming did not wait for the lock)',
        })
        assert.equal(fired.has('held-by-another'), false)
      } finally {
        letGo()
        await held
        await other.close()
      }
      await waitFor(() => fired.has('held-by-another'), { message: 'the held timer fires once let go' })
    })

    it('writes a batch of timer changes in one statement per kind, the last change of a timer holding', async () => {
      const unarmed = await outboxRow()
      await scheduleTimer(db, { id: 'batch-gone', kind: 'batch-test', delayMs: 60_000, payload: null })
      await scheduleTimer(db, { id: 'batch-moved', kind: 'batch-test', delayMs: 60_000, payload: { n: 0 } })
      const statements: string[] = []
      await db.transaction((tx) =>
        writeTimerChanges(
          {
            query: (text, params) => {
              statements.push(text)
              return tx.query(text, params)
            },
            exec: (text) => tx.exec(text),
          },
          [
            { cancel: 'batch-gone' },
            { schedule: { id: 'batch-moved', kind: 'batch-test', delayMs: 1_000, payload: { n: 1 } } },
            { schedule: { id: 'batch-back', kind: 'batch-test', delayMs: 5, payload: null } },
            { cancel: 'batch-back' },
            { schedule: { id: 'batch-back', kind: 'batch-test', delayMs: 2_000, payload: { n: 2 } } },
            { schedule: { id: 'batch-cancelled', kind: 'batch-test', delayMs: 5, payload: null } },
            { cancel: 'batch-cancelled' },
            {
              schedule: {
                id: 'batch-unarmed',
                kind: 'batch-test',
                delayMs: 5,
                payload: null,
                startsWhenPublished: unarmed,
              },
            },
          ],
        ),
      )
      assert.equal(statements.length, 2, statements.join('\n'))
      const { rows } = await db.query<{
        id: string
        payload: unknown
        armed: boolean
        delay_ms: string
        after: string | null
      }>(
        `SELECT id, payload, due_at IS NOT NULL AS armed, delay_ms::text, starts_after_outbox_id::text AS after
           FROM scheduled_timers WHERE kind = 'batch-test' ORDER BY id`,
      )
      assert.deepEqual(
        rows.map((r) => [r.id, r.payload, r.armed, r.delay_ms, r.after]),
        [
          ['batch-back', { n: 2 }, true, '2000', null],
          ['batch-moved', { n: 1 }, true, '1000', null],
          ['batch-unarmed', null, false, '5', unarmed],
        ],
      )
    })

    it('puts a timer off when its fire says so, without counting a failure, and fires it later', async () => {
      const { rows } = await db.query<{ now: Date }>('SELECT now() AS now')
      const scheduledAt = new Date(rows[0]?.now ?? Number.NaN).getTime()
      await scheduleTimer(db, { id: 'postpone-1', kind: KIND, delayMs: DELAY_MS, payload: null })
      await waitFor(() => fired.has('postpone-1'), { message: 'the postponed timer fires in the end' })
      assert.equal(postponed.get('postpone-1'), 2)
      const firedAt = fired.get('postpone-1')?.getTime() ?? 0
      assert.ok(firedAt >= scheduledAt + 3 * DELAY_MS, 'due, then put off twice by DELAY_MS each')
    })

    it('fires the timers one query claimed together, and one at a time when that fails', async () => {
      const together: string[][] = []
      const alone: string[] = []
      let failTogether = false
      const batchKind = `${KIND}-together`
      const poller = startTimerPoller<{ n: number }>({
        db,
        kind: batchKind,
        logger,
        pollIntervalMs: 50,
        fireBatch: async (due) => {
          if (failTogether) throw new Error('one of them cannot be fired together')
          together.push(due.map((timer) => timer.id).sort())
        },
        fire: async (timer) => {
          alone.push(timer.id)
        },
      })
      try {
        const remaining = async () =>
          (await db.query('SELECT id FROM scheduled_timers WHERE kind = $1', [batchKind])).rows.length
        // Written in one transaction with one due time: one claim takes all five.
        await db.transaction((tx) =>
          writeTimerChanges(
            tx,
            [1, 2, 3, 4, 5].map((n) => ({
              schedule: { id: `together-${n}`, kind: batchKind, delayMs: 100, payload: { n } },
            })),
          ),
        )
        await waitFor(async () => together.length === 1 && (await remaining()) === 0, {
          message: 'the five timers fire in one call and are removed',
        })
        assert.deepEqual(together, [['together-1', 'together-2', 'together-3', 'together-4', 'together-5']])
        assert.deepEqual(alone, [])

        failTogether = true
        await db.transaction((tx) =>
          writeTimerChanges(
            tx,
            [6, 7, 8].map((n) => ({ schedule: { id: `alone-${n}`, kind: batchKind, delayMs: 100, payload: { n } } })),
          ),
        )
        await waitFor(async () => alone.length === 3 && (await remaining()) === 0, {
          message: 'a batch that failed fires each timer on its own, and each is removed',
        })
        assert.deepEqual(alone.sort(), ['alone-6', 'alone-7', 'alone-8'])
        assert.equal(together.length, 1)
      } finally {
        await poller.stop()
      }
    })
  })
}

suite('PGlite', pgliteTestDatabase)
suite('PostgreSQL', () => postgresTestDatabase('of_scheduler'))
