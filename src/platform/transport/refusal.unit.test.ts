import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MultipleErrors, NetworkError, ProtocolError, ResponseError, TimeoutError } from '@platformatic/kafka'
import { AppError, ErrorCodes } from '../errors.ts'
import { findRefusal, refusalOf } from './refusal.ts'

/** The Produce API's key: what a produce response's errors are reported under. */
const PRODUCE = 0

/**
 * A produce that failed on one partition, as @platformatic/kafka reports it: the partition's
 * `ProtocolError` in the response's `ResponseError`, in the `MultipleErrors` of the send (one
 * entry per broker written to).
 */
const produceFailure = (...perBroker: Error[]) => new MultipleErrors('Producing messages failed.', perBroker)
const partitionError = (code: number) =>
  new ResponseError(PRODUCE, 9, { '/responses/0/partition_responses/0': [code, null] }, {})

describe('refusalOf', () => {
  it('finds a refused partition of a produce, however it is wrapped', () => {
    assert.equal(refusalOf(produceFailure(partitionError(10))), 'MESSAGE_TOO_LARGE')
    assert.equal(refusalOf(produceFailure(partitionError(18))), 'RECORD_LIST_TOO_LARGE')
    assert.equal(refusalOf(produceFailure(partitionError(87))), 'INVALID_RECORD')
    assert.equal(refusalOf(produceFailure(partitionError(17))), 'INVALID_TOPIC_EXCEPTION')
    assert.equal(refusalOf(produceFailure(partitionError(29))), 'TOPIC_AUTHORIZATION_FAILED')
    // The producer's retries wrap every attempt once more; a caller's error keeps it as its cause.
    const retried = new MultipleErrors('produce failed 2 times.', [produceFailure(partitionError(10))])
    assert.equal(refusalOf(retried), 'MESSAGE_TOO_LARGE')
    const wrapped = new AppError(ErrorCodes.TRANSPORT_UNAVAILABLE, 'publish failed', { cause: retried })
    assert.equal(refusalOf(wrapped), 'MESSAGE_TOO_LARGE')
    assert.equal(refusalOf(new ProtocolError('TOPIC_AUTHORIZATION_FAILED')), 'TOPIC_AUTHORIZATION_FAILED')
  })

  it('finds the refusal among other failures of the same send', () => {
    const otherBroker = new NetworkError('Connection closed')
    assert.equal(refusalOf(produceFailure(otherBroker, partitionError(10))), 'MESSAGE_TOO_LARGE')
  })

  it('says nothing of failures a retry can get past, nor of refusals of the whole producer', () => {
    for (const code of [
      3, // UNKNOWN_TOPIC_OR_PARTITION: a topic being created
      6, // NOT_LEADER_OR_FOLLOWER
      19, // NOT_ENOUGH_REPLICAS
      2, // CORRUPT_MESSAGE: retryable by Kafka's account
      31, // CLUSTER_AUTHORIZATION_FAILED: every message, not this one
      32, // INVALID_TIMESTAMP: this process's clock
      21, // INVALID_REQUIRED_ACKS: the producer's setup
    ]) {
      assert.equal(refusalOf(produceFailure(partitionError(code))), undefined, `protocol error ${code}`)
    }
    assert.equal(refusalOf(produceFailure(new NetworkError('Connection closed'))), undefined)
    assert.equal(refusalOf(new TimeoutError('Request timed out')), undefined)
    assert.equal(refusalOf(new AppError(ErrorCodes.TRANSPORT_UNAVAILABLE, 'the publish timed out')), undefined)
    assert.equal(refusalOf(new Error('MESSAGE_TOO_LARGE')), undefined, 'words in a message are not a code')
  })

  it("gives the broker's words for the refusal, else Kafka's text for its code", () => {
    const worded = new ResponseError(
      PRODUCE,
      9,
      { '/responses/0/partition_responses/0': [10, 'The record batch is 4134 bytes, over the limit of 1024'] },
      {},
    )
    assert.deepEqual(findRefusal(produceFailure(worded)), {
      reason: 'MESSAGE_TOO_LARGE',
      message: 'The record batch is 4134 bytes, over the limit of 1024',
    })
    assert.deepEqual(findRefusal(produceFailure(partitionError(29))), {
      reason: 'TOPIC_AUTHORIZATION_FAILED',
      message: 'Topic authorization failed.',
    })
  })

  it('trusts a client that says a retry can help', () => {
    const flagged = Object.assign(new Error('too large, for now'), { apiId: 'MESSAGE_TOO_LARGE', canRetry: true })
    assert.equal(refusalOf(flagged), undefined)
  })

  it('takes anything as an error, and a cycle in the tree ends', () => {
    for (const value of [undefined, null, 'MESSAGE_TOO_LARGE', 10, {}, { errors: 'none' }]) {
      assert.equal(refusalOf(value), undefined)
    }
    const cyclic: { cause?: unknown } = {}
    cyclic.cause = { errors: [cyclic] }
    assert.equal(refusalOf(cyclic), undefined)
  })
})
