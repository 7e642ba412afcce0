import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { openPglite } from './pglite.ts'
import type { SqlDatabase } from './port.ts'

/**
 * PGlite runs in this thread and answers on the microtask queue: a chain of statements that always
 * finds it ready would never let the event loop turn, and the HTTP server, timers and sockets would
 * wait for the chain to end. The adapter lets the loop turn before each unit of work, so a timer
 * due during a long chain fires within a few statements, not after the last one.
 */
describe('PGlite lets the event loop turn between units of work', () => {
  let db: SqlDatabase
  before(async () => {
    db = await openPglite()
    await db.exec('CREATE TABLE fairness (n int)')
  })
  after(async () => {
    await db?.close()
  })

  const chain = async (units: number, unit: () => Promise<unknown>) => {
    let done = 0
    let doneWhenTimerFired = -1
    const timer = new Promise<void>((resolve) =>
      setTimeout(() => {
        doneWhenTimerFired = done
        resolve()
      }, 0),
    )
    for (let i = 0; i < units; i++) {
      await unit()
      done++
    }
    await timer
    return doneWhenTimerFired
  }

  it('between queries', async () => {
    const firedAfter = await chain(300, () => db.query('SELECT 1'))
    assert.ok(firedAfter < 10, `a timer due at once fired after ${firedAfter} of 300 queries`)
  })

  it('in short turns of the loop while many chains run at once, not one turn for all of them', async () => {
    // A busy process has many chains waiting (requests, consumers, the relay). Each turn of the
    // loop must run a few of them, not every one: the loop accepts one new connection per turn.
    const chains = 40
    let progressed = new Set<number>()
    let mostPerTurn = 0
    let running = true
    // Counted once every chain is under way: the chains' first units may all start within the
    // window in which no unit waits (`TURN_EVERY_MS` after the last turn).
    let underWay = 0
    const tick = () => {
      if (underWay === chains) mostPerTurn = Math.max(mostPerTurn, progressed.size)
      progressed = new Set()
      if (running) setTimeout(tick, 0)
    }
    setTimeout(tick, 0)
    await Promise.all(
      Array.from({ length: chains }, async (_, chain) => {
        for (let i = 0; i < 60; i++) {
          await db.query('SELECT 1')
          progressed.add(chain)
          if (i === 4) underWay++
        }
      }),
    )
    running = false
    assert.ok(mostPerTurn < chains / 4, `${mostPerTurn} of ${chains} chains ran in one turn of the loop`)
  })

  it('between transactions', async () => {
    const firedAfter = await chain(300, () =>
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO fairness (n) VALUES (1)')
        await tx.query('SELECT count(*) FROM fairness')
      }),
    )
    assert.ok(firedAfter < 10, `a timer due at once fired after ${firedAfter} of 300 transactions`)
  })
})
