import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isLogWriteFailure } from './pglite.ts'

/** A failed write of the write-ahead log stops the embedded process instead of hanging it. */
describe('PGlite log write failures', () => {
  it('recognises PostgreSQL failing to write or sync its log', () => {
    assert.equal(
      isLogWriteFailure(new Error('could not write to log file 000000010000000000000001: No space left on device')),
      true,
    )
    assert.equal(
      isLogWriteFailure(new Error('could not fsync file "pg_wal/000000010000000000000001": I/O error')),
      true,
    )
    assert.equal(isLogWriteFailure(new Error('PANIC: could not write to file "pg_wal/xlogtemp.42"')), true)
  })

  it('leaves ordinary errors and a full disk while extending a table (which PGlite survives) alone', () => {
    assert.equal(isLogWriteFailure(new Error('duplicate key value violates unique constraint')), false)
    assert.equal(isLogWriteFailure(new Error('could not extend file "base/5/16384": No space left on device')), false)
  })
})
