import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { LogTail } from './embedded-tail.ts'

const rows = (...values: string[]) =>
  values.map((value) => ({ key: 'k', value, headers: '{}', created_at: new Date(0) }))
const values = (read: { value: string }[] | undefined) => read?.map((row) => row.value)

describe('the embedded log’s tail in memory', () => {
  it('answers a run of consecutive offsets from the reader’s position, and nothing it does not hold', () => {
    const tail = new LogTail(100)
    tail.append('t', 0, 10n, rows('a', 'b', 'c'))
    tail.append('t', 0, 13n, rows('d'))
    assert.deepEqual(values(tail.read('t', 0, 10n, 100)), ['a', 'b', 'c', 'd'])
    assert.deepEqual(values(tail.read('t', 0, 12n, 1)), ['c'])
    assert.deepEqual(
      tail.read('t', 0, 11n, 100)?.map((row) => row.offset),
      ['11', '12', '13'],
    )
    assert.equal(tail.read('t', 0, 9n, 100), undefined, 'older than the tail: the database')
    assert.equal(
      tail.read('t', 0, 14n, 100),
      undefined,
      'past the tail: the database (another process may have written)',
    )
    assert.equal(tail.read('t', 1, 10n, 100), undefined, 'another partition')
  })

  it('starts anew where a run does not continue the one it holds, so no offset is skipped', () => {
    const tail = new LogTail(100)
    tail.append('t', 0, 0n, rows('a', 'b'))
    // Offsets 2..4 were written by another process.
    tail.append('t', 0, 5n, rows('f'))
    assert.equal(tail.read('t', 0, 2n, 100), undefined)
    assert.equal(tail.read('t', 0, 0n, 100), undefined, 'what was before the gap is gone too')
    assert.deepEqual(values(tail.read('t', 0, 5n, 100)), ['f'])
  })

  it('keeps at most so many messages per partition, dropping the oldest', () => {
    const tail = new LogTail(3)
    tail.append('t', 0, 0n, rows('a', 'b'))
    tail.append('t', 0, 2n, rows('c', 'd', 'e'))
    assert.equal(tail.read('t', 0, 1n, 100), undefined)
    assert.deepEqual(values(tail.read('t', 0, 2n, 100)), ['c', 'd', 'e'])
    const off = new LogTail(0)
    off.append('t', 0, 0n, rows('a'))
    assert.equal(off.read('t', 0, 0n, 100), undefined, 'a bound of 0 keeps nothing')
  })
})
