import { AsyncLocalStorage } from 'node:async_hooks'
import type { SqlDatabase, SqlExecutor } from './port.ts'

/**
 * How services share transactions without knowing it. Two ways, one scope:
 *
 * **A consumer's batch.** Inside `scope.run(work)`, every `transaction()` and `query()` of
 * `scope.db` joins the batch's transaction, so a handler written for one message handles each
 * message of a batch in it, and the batch pays one BEGIN and one COMMIT (and one WAL flush) instead
 * of one per message. A `transaction(work)` that throws inside a batch cannot be rolled back on its
 * own (that would take a savepoint, two more round trips per message): the batch is marked failed
 * and `run` rejects, even when the caller caught the error, so the whole batch rolls back and its
 * consumer handles the messages one at a time (see reliable-consumer.ts).
 *
 * **Group commit.** Outside a batch, `transaction(work)` runs at once while fewer than
 * `group.maxInFlight` of the scope's transactions are running: when idle it adds no wait at all.
 * Transactions that arrive while all of them run queue, and the next free slot takes what queued
 * (at most `group.maxSize`) into one transaction, each work after the other in arrival order. Each
 * caller still gets its own answer:
 * - a work that throws having only read (a refusal after loading state, a version conflict found
 *   before writing, an idempotent replay) rejects alone; the others go on in the same transaction;
 * - a work that throws after it wrote, or any failed statement (a unique violation, a deadlock),
 *   rolls the whole group back; that work then runs again alone in its own transaction, the works
 *   before it share one again and the works after it are grouped again, in arrival order;
 * - a failed COMMIT rolls the group back, and each work runs again alone.
 * What a work answers in the end is what it would have answered without the group.
 * So a work must do nothing but database work (it may run twice, the first time rolled back).
 *
 * In both, `afterCommit(callback)` inside a transaction runs the callback once it committed
 * (outside its context), and drops it when it rolled back; outside any transaction it runs at once.
 */
export interface BatchScope {
  /** The database to give services: joins the batch's transaction while one runs in its context. */
  readonly db: SqlDatabase
  /**
   * Runs `work` in one transaction that every use of `db` inside it joins, begun with its first
   * statement: a work that runs none costs nothing.
   */
  run<T>(work: () => Promise<T>): Promise<T>
  /** Runs `callback` once the current transaction committed, or at once outside one. */
  afterCommit(callback: () => void): void
  /** Transactions the group commit has run, and the works they held (tests, metrics). */
  readonly groups: { transactions: number; works: number; fallbacks: number }
}

export interface GroupCommitOptions {
  /** Transactions of the scope that run at once before the next ones wait and group (≥ 1). */
  maxInFlight: number
  /** At most this many works share one transaction (1: no grouping). */
  maxSize: number
}

interface Batch {
  tx: SqlExecutor
  /** False once the batch's transaction has ended: later callbacks that inherited it run alone. */
  open: boolean
  failed: unknown
  committed: (() => void)[]
}

export class BatchFailed extends Error {
  constructor(cause: unknown) {
    super('a transaction inside the batch failed; the batch is rolled back', { cause })
    this.name = 'BatchFailed'
  }
}

/** Thrown inside a group's transaction to roll it back; its works then run alone. */
class GroupFailed extends Error {
  constructor(cause: unknown) {
    super('a work of the group failed after writing; the group is rolled back and run one by one', { cause })
    this.name = 'GroupFailed'
  }
}

interface Queued {
  work: (tx: SqlExecutor) => Promise<unknown>
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown }

const READ_ONLY = /^\s*select\b/i

export function batchScope(db: SqlDatabase, options: { group?: GroupCommitOptions } = {}): BatchScope {
  const current = new AsyncLocalStorage<Batch>()
  const maxInFlight = Math.max(1, options.group?.maxInFlight ?? Number.POSITIVE_INFINITY)
  const maxSize = Math.max(1, options.group?.maxSize ?? 1)
  const groups = { transactions: 0, works: 0, fallbacks: 0 }
  const open = () => {
    const batch = current.getStore()
    return batch?.open ? batch : undefined
  }

  /** Runs `work` in a transaction of its own, as a context that nested use and afterCommit join. */
  const alone = async <T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> => {
    const batch: Batch = { tx: db, open: true, failed: undefined, committed: [] }
    let result: T
    try {
      result = await db.transaction(async (tx) => {
        batch.tx = tx
        const value = await current.run(batch, () => work(tx))
        if (batch.failed !== undefined) throw new BatchFailed(batch.failed)
        return value
      })
    } finally {
      batch.open = false
    }
    current.exit(() => {
      for (const callback of batch.committed) callback()
    })
    return result
  }

  /**
   * Runs `work` as a consumer's batch: its transaction begins with its first statement, so a batch
   * that reads and writes nothing (every message of it ignored) costs no BEGIN, no COMMIT and no
   * connection.
   */
  const lazily = async <T>(work: () => Promise<T>): Promise<T> => {
    let opened: { tx: Promise<SqlExecutor>; done: Promise<unknown>; finish(outcome: Outcome): void } | undefined
    const begin = () => {
      if (opened) return opened.tx
      let finish!: (outcome: Outcome) => void
      const finished = new Promise<Outcome>((resolve) => {
        finish = resolve
      })
      let ready!: (tx: SqlExecutor) => void
      let notOpened!: (error: unknown) => void
      const tx = new Promise<SqlExecutor>((resolve, reject) => {
        ready = resolve
        notOpened = reject
      })
      const done = db.transaction(async (real) => {
        ready(real)
        const outcome = await finished
        if (!outcome.ok) throw outcome.error
        if (batch.failed !== undefined) throw new BatchFailed(batch.failed)
        return outcome.value
      })
      // A transaction that could not begin (no connection, BEGIN failed) fails the statement waiting for it.
      done.catch(notOpened)
      opened = { tx, done, finish }
      return tx
    }
    const lazyTx: SqlExecutor = {
      query: async (text, params) => (await begin()).query(text, params),
      exec: async (text) => (await begin()).exec(text),
    }
    const batch: Batch = { tx: lazyTx, open: true, failed: undefined, committed: [] }
    try {
      let value: T
      try {
        value = await current.run(batch, work)
      } catch (error) {
        if (opened) {
          opened.finish({ ok: false, error })
          await opened.done.catch(() => {})
        }
        throw error
      }
      if (opened) {
        opened.finish({ ok: true, value })
        await opened.done
      } else if (batch.failed !== undefined) {
        throw new BatchFailed(batch.failed)
      }
      current.exit(() => {
        for (const callback of batch.committed) callback()
      })
      return value
    } finally {
      batch.open = false
    }
  }

  /**
   * The works of `group` in one transaction: their outcomes once it committed, or, rolled back,
   * the index of the work that failed it (none when the COMMIT itself failed).
   */
  const together = async (group: Queued[]): Promise<{ outcomes: Outcome[] } | { failedAt: number | undefined }> => {
    const contexts: Batch[] = []
    let failedAt: number | undefined
    let outcomes: Outcome[]
    try {
      outcomes = await db.transaction(async (tx) => {
        const results: Outcome[] = []
        for (const [index, queued] of group.entries()) {
          let wrote = false
          let statementFailed: unknown
          const tracked: SqlExecutor = {
            query<Row>(text: string, params?: unknown[]) {
              if (!READ_ONLY.test(text)) wrote = true
              return tx.query<Row>(text, params).catch((error: unknown) => {
                statementFailed ??= error
                throw error
              })
            },
            exec(text) {
              wrote = true
              return tx.exec(text).catch((error: unknown) => {
                statementFailed ??= error
                throw error
              })
            },
          }
          const context: Batch = { tx: tracked, open: true, failed: undefined, committed: [] }
          contexts.push(context)
          try {
            const value = await current.run(context, () => queued.work(tracked))
            if (statementFailed !== undefined || context.failed !== undefined) {
              throw new GroupFailed(statementFailed ?? context.failed)
            }
            results.push({ ok: true, value })
          } catch (error) {
            if (
              error instanceof GroupFailed ||
              wrote ||
              statementFailed !== undefined ||
              context.failed !== undefined
            ) {
              failedAt = index
              throw error instanceof GroupFailed ? error : new GroupFailed(error)
            }
            results.push({ ok: false, error })
          } finally {
            context.open = false
          }
        }
        return results
      })
    } catch {
      for (const context of contexts) context.open = false
      return { failedAt }
    }
    // Committed: nothing of the group runs again. Each work's callbacks run now; one that throws
    // is that work's answer, as for a work alone.
    current.exit(() => {
      for (const [index, context] of contexts.entries()) {
        if (!outcomes[index]?.ok) continue
        try {
          for (const callback of context.committed) callback()
        } catch (error) {
          outcomes[index] = { ok: false, error }
        }
      }
    })
    return { outcomes }
  }

  const settle = (queued: Queued, outcome: Outcome) =>
    outcome.ok ? queued.resolve(outcome.value) : queued.reject(outcome.error)

  /**
   * Runs `group` in one transaction. Rolled back by one work: the works before it (which went
   * through) share a transaction again, the failed one runs alone, and the ones after it are grouped
   * again; rolled back at COMMIT: every work runs alone. Either way, in arrival order.
   */
  const runGroup = async (group: Queued[]): Promise<void> => {
    groups.transactions++
    groups.works += group.length
    if (group.length > 1) {
      const result = await together(group)
      if ('outcomes' in result) {
        for (const [i, queued] of group.entries()) settle(queued, result.outcomes[i] as Outcome)
        return
      }
      groups.fallbacks++
      const { failedAt } = result
      if (failedAt !== undefined) {
        if (failedAt > 0) await runGroup(group.slice(0, failedAt))
        const failed = group[failedAt] as Queued
        await alone(failed.work).then(failed.resolve, failed.reject)
        if (failedAt + 1 < group.length) await runGroup(group.slice(failedAt + 1))
        return
      }
    }
    for (const queued of group) {
      await alone(queued.work).then(queued.resolve, queued.reject)
    }
  }

  const queue: Queued[] = []
  let inFlight = 0
  const pump = () => {
    while (inFlight < maxInFlight && queue.length > 0) {
      const group = queue.splice(0, maxSize)
      inFlight++
      void runGroup(group).finally(() => {
        inFlight--
        pump()
      })
    }
  }

  const joined: SqlDatabase = {
    dialect: db.dialect,
    ...(options.group ? { grouping: { maxInFlight, maxSize } } : {}),
    close: () => db.close(),
    query(text, params) {
      const batch = open()
      return batch ? batch.tx.query(text, params) : db.query(text, params)
    },
    exec(text) {
      const batch = open()
      return batch ? batch.tx.exec(text) : db.exec(text)
    },
    async transaction(work) {
      const batch = open()
      if (!batch) {
        if (!options.group) return alone(work)
        return new Promise((resolve, reject) => {
          queue.push({ work, resolve: resolve as (value: unknown) => void, reject })
          pump()
        })
      }
      if (batch.failed !== undefined) throw new BatchFailed(batch.failed)
      try {
        return await work(batch.tx)
      } catch (error) {
        batch.failed = error
        throw error
      }
    },
  }
  return {
    db: joined,
    groups,
    async run(work) {
      if (open()) return work()
      return lazily(work)
    },
    afterCommit(callback) {
      const batch = open()
      if (batch) batch.committed.push(callback)
      else callback()
    },
  }
}
