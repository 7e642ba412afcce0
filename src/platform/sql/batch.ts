import { AsyncLocalStorage } from 'node:async_hooks'
import type { SqlDatabase, SqlExecutor } from './port.ts'

/**
 * One transaction for a batch of consumed messages, without the services knowing: inside
 * `scope.run(work)`, every `transaction()` and `query()` of `scope.db` joins the batch's transaction,
 * so a handler written for one message handles each message of a batch in it, and the batch pays
 * one BEGIN and one COMMIT (and one WAL flush) instead of one per message.
 *
 * A `transaction(work)` that throws inside a batch cannot be rolled back on its own (that would take
 * a savepoint, two more round trips per message): the batch is marked failed and `run` rejects, even
 * when the caller caught the error, so the whole batch rolls back and its consumer handles the
 * messages one at a time (see reliable-consumer.ts). Callbacks given to `afterCommit` inside a batch
 * run once it committed (outside its context), and are dropped when it rolled back; outside a batch
 * they run at once.
 */
export interface BatchScope {
  /** The database to give services: joins the batch's transaction while one runs in its context. */
  readonly db: SqlDatabase
  /** Runs `work` in one transaction that every use of `db` inside it joins. */
  run<T>(work: () => Promise<T>): Promise<T>
  /** Runs `callback` once the current batch committed, or at once outside a batch. */
  afterCommit(callback: () => void): void
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

export function batchScope(db: SqlDatabase): BatchScope {
  const current = new AsyncLocalStorage<Batch>()
  const open = () => {
    const batch = current.getStore()
    return batch?.open ? batch : undefined
  }
  const joined: SqlDatabase = {
    dialect: db.dialect,
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
      if (!batch) return db.transaction(work)
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
    async run(work) {
      const outer = open()
      if (outer) return work()
      const batch: Batch = { tx: db, open: true, failed: undefined, committed: [] }
      let result: Awaited<ReturnType<typeof work>>
      try {
        result = await db.transaction(async (tx) => {
          batch.tx = tx
          const value = await current.run(batch, work)
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
    },
    afterCommit(callback) {
      const batch = open()
      if (batch) batch.committed.push(callback)
      else callback()
    },
  }
}
