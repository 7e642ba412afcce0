import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AppError } from '../../platform/errors.ts'
import { createSimulatedGateway, type PaymentGateway } from '../domain/gateway.ts'
import { authorizeWithRetries, seededRandom } from './authorize.ts'

const request = { paymentId: 'payment-o1', orderId: 'o1', customerId: 'c1', amount: 10_000, currency: 'USD' }
const policy = { timeoutMs: 1_000, attempts: 3, retryBackoffMs: 0 }
const noSleep = async () => {}

describe('asking the gateway', () => {
  it('retries transient failures and returns the approval', async () => {
    const answers = [0.1, 0.1, 0.9] // failure, failure, then through
    const gateway = createSimulatedGateway({ transientFailureRate: 0.5, random: () => answers.shift() ?? 0.9 })
    const retried: number[] = []
    const outcome = await authorizeWithRetries(gateway, request, policy, {
      sleep: noSleep,
      onRetry: (a) => retried.push(a),
    })
    assert.equal(outcome.status, 'APPROVED')
    assert.deepEqual(retried, [1, 2])
  })

  it('records GATEWAY_UNAVAILABLE once the attempts are spent, and a gateway too slow counts as unavailable', async () => {
    const never: PaymentGateway = { authorize: () => new Promise(() => {}) }
    const calls: string[] = []
    const outcome = await authorizeWithRetries(
      never,
      request,
      { ...policy, timeoutMs: 5, attempts: 2 },
      {
        sleep: noSleep,
        onCall: (r) => calls.push(r),
      },
    )
    assert.deepEqual(calls, ['timeout', 'timeout'])
    assert.equal(outcome.status, 'DECLINED')
    assert.equal(outcome.status === 'DECLINED' && outcome.code, 'GATEWAY_UNAVAILABLE')
  })

  it('lets a permanent error through instead of declining', async () => {
    const broken: PaymentGateway = {
      authorize: async () => {
        throw new AppError('VALIDATION_FAILED', 'bad request')
      },
    }
    await assert.rejects(authorizeWithRetries(broken, request, policy, { sleep: noSleep }), /bad request/)
  })

  it('draws the same failures from the same seed', () => {
    const a = seededRandom(7)
    const b = seededRandom(7)
    assert.deepEqual([a(), a(), a()], [b(), b(), b()])
  })
})
