/**
 * The newest messages of each partition that this process published, kept in memory so that a
 * reader at the head of its partition takes them without a query. On the embedded default (PGlite,
 * one connection in this thread) a read of the log is the costliest statement a hop pays for, and
 * at the head, where readers spend their time, the messages it would return are the ones just
 * published here.
 *
 * What it answers is exactly what the log holds: a run of consecutive offsets of a partition, each
 * message as committed. Messages are added only after their transaction committed, with the
 * offsets it reserved. A run that does not continue the one kept (another process published in
 * between, or two publishes of this process finished out of order) starts the partition's tail
 * anew, so a reader never skips an offset: whatever the tail does not hold from the reader's
 * position on is read from the database, as before. Bounded: the oldest messages of a partition
 * go past `maxPerPartition`.
 */

export interface TailRow {
  offset: string
  key: string
  value: string
  /** As stored: the headers' JSON text. */
  headers: string
  created_at: Date
}

export class LogTail {
  readonly #maxPerPartition: number
  readonly #partitions = new Map<string, { first: bigint; rows: TailRow[] }>()

  constructor(maxPerPartition: number) {
    this.#maxPerPartition = maxPerPartition
  }

  /** Committed messages of one partition, at consecutive offsets from `first`. */
  append(topic: string, partition: number, first: bigint, rows: readonly Omit<TailRow, 'offset'>[]): void {
    if (this.#maxPerPartition === 0 || rows.length === 0) return
    const key = `${topic}\u0000${partition}`
    let tail = this.#partitions.get(key)
    if (!tail || tail.first + BigInt(tail.rows.length) !== first) {
      tail = { first, rows: [] }
      this.#partitions.set(key, tail)
    }
    rows.forEach((row, i) => {
      tail.rows.push({ ...row, offset: (first + BigInt(i)).toString() })
    })
    const over = tail.rows.length - this.#maxPerPartition
    if (over > 0) {
      tail.rows.splice(0, over)
      tail.first += BigInt(over)
    }
  }

  /**
   * Up to `limit` messages from `position` on, when the tail holds the message at `position`;
   * undefined when it does not (older, or not published by this process), and the log must be read.
   */
  read(topic: string, partition: number, position: bigint, limit: number): TailRow[] | undefined {
    const tail = this.#partitions.get(`${topic}\u0000${partition}`)
    if (!tail || position < tail.first) return undefined
    const start = Number(position - tail.first)
    if (start >= tail.rows.length) return undefined
    return tail.rows.slice(start, start + limit)
  }
}
