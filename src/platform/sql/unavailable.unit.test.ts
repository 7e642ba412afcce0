import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AppError } from '../errors.ts'
import { asAppError, problemFor, retryAfterSeconds } from '../http/problem.ts'
import { isDependencyUnavailable } from '../transport/reliable-consumer.ts'
import {
  classifyDatabaseError,
  findDatabaseUnavailable,
  isDatabaseUnavailable,
  isTransactionConflict,
  type UnavailableReason,
} from './unavailable.ts'

/** An error as `pg` and PGlite raise it: a message and the SQLSTATE in `code`. */
const sqlState = (code: string, message = `error ${code}`) => Object.assign(new Error(message), { code })
/** An error as Node's file system raises it. */
const nodeErrno = (code: string) =>
  Object.assign(new Error(`${code}: failed, write`), { code, errno: -1, syscall: 'write' })
/** PGlite's Emscripten file system error: not an `Error`, only a name and Emscripten's errno. */
const emscriptenErrno = (errno: number) => ({ name: 'ErrnoError', errno })

describe('which database errors are an outage', () => {
  const outages: [string, unknown, UnavailableReason][] = [
    ['53000 insufficient resources', sqlState('53000'), 'insufficient-resources'],
    [
      '53100 disk full',
      sqlState('53100', 'could not extend file "base/5/16385": No space left on device'),
      'disk-full',
    ],
    ['53200 out of memory', sqlState('53200'), 'out-of-memory'],
    ['53300 too many connections', sqlState('53300', 'too many connections for role "app"'), 'too-many-connections'],
    ['53400 configuration limit exceeded', sqlState('53400'), 'insufficient-resources'],
    ['40P01 deadlock', sqlState('40P01', 'deadlock detected'), 'deadlock'],
    ['40001 serialization failure', sqlState('40001'), 'serialization-failure'],
    ['55P03 lock not available', sqlState('55P03'), 'lock-not-available'],
    ['58030 I/O error (PGlite on EIO)', sqlState('58030', 'could not extend file "base/5/1": I/O error'), 'io-error'],
    [
      '42501 on a read-only file system (PGlite on EROFS)',
      sqlState('42501', 'could not extend file "base/5/16385": Read-only file system'),
      'read-only-file-system',
    ],
    ['Node ENOSPC', nodeErrno('ENOSPC'), 'disk-full'],
    ['Node EROFS', nodeErrno('EROFS'), 'read-only-file-system'],
    ['Node EIO', nodeErrno('EIO'), 'io-error'],
    ['Node EMFILE', nodeErrno('EMFILE'), 'insufficient-resources'],
    ['Emscripten ENOSPC (51)', emscriptenErrno(51), 'disk-full'],
    ['Emscripten EIO (29)', emscriptenErrno(29), 'io-error'],
    ['Emscripten EROFS (69)', emscriptenErrno(69), 'read-only-file-system'],
    ['a message naming ENOSPC only', new Error('write failed: ENOSPC'), 'disk-full'],
    ['a message naming a full disk only', new Error('No space left on device'), 'disk-full'],
    // What was recognised before stays recognised.
    ['ECONNREFUSED', nodeErrno('ECONNREFUSED'), 'unreachable'],
    ['08006 connection failure', sqlState('08006'), 'unreachable'],
    ['57P01 admin shutdown', sqlState('57P01'), 'shutting-down'],
    ['57P03 cannot connect now', sqlState('57P03'), 'shutting-down'],
    ['a closed PGlite', new Error('PGlite is closed'), 'unreachable'],
    ['a pool ended', new Error('Cannot use a pool after calling end on the pool'), 'unreachable'],
  ]
  for (const [name, error, reason] of outages) {
    it(`${name} → ${reason}`, () => {
      const found = classifyDatabaseError(error)
      assert.equal(found?.reason, reason)
      assert.equal(found?.unavailable, true)
      assert.ok(isDatabaseUnavailable(error))
      assert.ok(isDependencyUnavailable(error), 'a consumer holds its partition for it')
    })
  }

  const notOutages: [string, unknown][] = [
    ['23505 unique violation', sqlState('23505', 'duplicate key value violates unique constraint')],
    ['22P02 invalid text representation', sqlState('22P02')],
    ['42601 syntax error', sqlState('42601')],
    ['42501 permission denied', sqlState('42501', 'permission denied for table orders')],
    ['58P01 undefined file', sqlState('58P01')],
    ['Node ENOENT', nodeErrno('ENOENT')],
    ['Emscripten ENOENT (44)', emscriptenErrno(44)],
    ['a plain bug', new TypeError("Cannot read properties of undefined (reading 'id')")],
    ['a string', 'deadlock'],
    ['nothing', undefined],
  ]
  for (const [name, error] of notOutages) {
    it(`${name} is not an outage`, () => {
      assert.equal(classifyDatabaseError(error), undefined)
      assert.equal(isDatabaseUnavailable(error), false)
    })
  }

  it('counts only deadlocks and serialization failures as conflicts the command handler runs again', () => {
    assert.ok(isTransactionConflict(sqlState('40P01')))
    assert.ok(isTransactionConflict(sqlState('40001')))
    assert.ok(isTransactionConflict(new Error('command failed', { cause: sqlState('40P01') })))
    for (const code of ['55P03', '53300', '53100', '08006', '23505'])
      assert.equal(isTransactionConflict(sqlState(code)), false)
  })

  it('finds an outage wrapped as the cause of another error, as consumers do', () => {
    const wrapped = new Error('saving the order failed', { cause: sqlState('53300') })
    assert.equal(classifyDatabaseError(wrapped), undefined)
    assert.equal(findDatabaseUnavailable(wrapped)?.reason, 'too-many-connections')
    assert.ok(isDependencyUnavailable(wrapped))
    assert.ok(isDependencyUnavailable(new AppError('DATABASE_UNAVAILABLE', 'down')))
    assert.equal(isDependencyUnavailable(new AppError('INVALID_TRANSITION', 'no')), false)
  })
})

describe('a database outage over HTTP', () => {
  it('is 503 DATABASE_UNAVAILABLE with a Retry-After of 1 s for a conflict and 5 s for an outage', () => {
    for (const [error, detail, seconds] of [
      [sqlState('40P01', 'deadlock detected'), 'the database is busy; retry later', 1],
      [sqlState('40001'), 'the database is busy; retry later', 1],
      [sqlState('55P03'), 'the database is busy; retry later', 1],
      [sqlState('53300'), 'the database is unavailable; retry later', 5],
      [sqlState('53100'), 'the database is unavailable; retry later', 5],
      [emscriptenErrno(51), 'the database is unavailable; retry later', 5],
      [nodeErrno('ECONNREFUSED'), 'the database is unavailable; retry later', 5],
    ] as const) {
      const mapped = asAppError(error)
      const problem = problemFor(mapped)
      assert.equal(problem.status, 503)
      assert.equal(problem.code, 'DATABASE_UNAVAILABLE')
      assert.equal(problem.detail, detail)
      assert.doesNotMatch(JSON.stringify(problem), /40P01|53300|53100|deadlock detected/, 'no SQLSTATE is shown')
      assert.equal(retryAfterSeconds(mapped), seconds)
    }
  })

  it('leaves other errors as they are: a bug stays 500, a refusal keeps its code', () => {
    const bug = new TypeError('x is undefined')
    assert.equal(asAppError(bug), bug)
    assert.equal(problemFor(asAppError(bug)).status, 500)
    const conflict = new AppError('VERSION_CONFLICT', 'changed', { cause: sqlState('23505') })
    assert.equal(asAppError(conflict), conflict)
    assert.equal(problemFor(asAppError(sqlState('22P02'))).status, 400)
  })
})
