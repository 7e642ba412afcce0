import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, loadConfig } from '../platform/config.ts'
import { sagaStepsFrom } from './index.ts'

describe('the journey configuration', () => {
  it('defaults to orchestration and takes choreography', () => {
    assert.equal(loadConfig({}).sagaMode, 'orchestration')
    assert.equal(loadConfig({ SAGA_MODE: 'choreography' }).sagaMode, 'choreography')
  })

  it('names a wrong SAGA_MODE and a wrong gateway setting at start-up', () => {
    assert.throws(
      () =>
        loadConfig({
          SAGA_MODE: 'both',
          PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE: '2',
          PAYMENT_GATEWAY_DECLINE_ABOVE: '1.234',
        }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.some((p) => p.includes("SAGA_MODE must be 'orchestration' or 'choreography' (got 'both')")) &&
        error.problems.some((p) =>
          p.startsWith('PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE must be a number from 0 to 1'),
        ) &&
        error.problems.some((p) => p.startsWith('PAYMENT_GATEWAY_DECLINE_ABOVE must be a decimal amount')),
    )
  })

  it('refuses a delivery step timeout shorter than the delivery delay', () => {
    assert.throws(
      () => loadConfig({ DELIVERY_DELAY_MS: '60000', SAGA_DELIVERY_TIMEOUT_MS: '30000' }),
      /SAGA_DELIVERY_TIMEOUT_MS \(30000\) must be longer than DELIVERY_DELAY_MS \(60000\)/,
    )
  })

  it('reads the gateway and the saga timeouts into the step table', () => {
    const config = loadConfig({
      PAYMENT_GATEWAY_DECLINE_ABOVE: '1000.5',
      PAYMENT_GATEWAY_DECLINED_CUSTOMERS: 'a, b,',
      SAGA_PAYMENT_TIMEOUT_MS: '1234',
      SAGA_COMPENSATION_TIMEOUT_MS: '99',
    })
    assert.equal(config.paymentGateway.declineAbove, 100_050)
    assert.deepEqual(config.paymentGateway.declinedCustomers, ['a', 'b'])
    const steps = sagaStepsFrom(config)
    assert.equal(steps.PAYMENT.timeoutMs, 1234)
    assert.equal(steps.PAYMENT.retries, 2)
    assert.equal(steps.REFUND_PAYMENT.timeoutMs, 99)
    assert.equal(steps.REJECT_ORDER.timeoutMs, 99)
  })
})
