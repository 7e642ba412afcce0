import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { paymentSettings } from '../payment/settings.ts'
import { ConfigError, loadSettings } from '../platform/settings.ts'
import { modulesSettingsProblems } from '../settings.ts'
import { sagaStepsFrom } from './index.ts'
import { journeySettings } from './settings.ts'

describe('the journey configuration', () => {
  it('defaults to orchestration and takes choreography', () => {
    assert.equal(loadSettings(journeySettings, {}).mode, 'orchestration')
    assert.equal(loadSettings(journeySettings, { SAGA_MODE: 'choreography' }).mode, 'choreography')
  })

  it('names a wrong SAGA_MODE and a wrong gateway setting at start-up, whichever modules run', () => {
    const problems = modulesSettingsProblems({
      SAGA_MODE: 'both',
      PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE: '2',
      PAYMENT_GATEWAY_DECLINE_ABOVE: '1.234',
    })
    assert.ok(
      problems.includes("SAGA_MODE must be 'orchestration' or 'choreography' (got 'both')"),
      problems.join('\n'),
    )
    assert.ok(problems.some((p) => p.startsWith('PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE must be a number from 0 to 1')))
    assert.ok(problems.some((p) => p.startsWith('PAYMENT_GATEWAY_DECLINE_ABOVE must be a decimal amount')))
    assert.throws(
      () => loadSettings(paymentSettings, { PAYMENT_GATEWAY_ATTEMPTS: '0' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        /PAYMENT_GATEWAY_ATTEMPTS must be a whole number from 1 to 20/.test(error.message),
    )
  })

  it('refuses a delivery step timeout shorter than the delivery delay', () => {
    assert.throws(
      () => loadSettings(journeySettings, { DELIVERY_DELAY_MS: '60000', SAGA_DELIVERY_TIMEOUT_MS: '30000' }),
      /SAGA_DELIVERY_TIMEOUT_MS \(30000\) must be longer than DELIVERY_DELAY_MS \(60000\)/,
    )
  })

  it('reads the gateway and the saga timeouts into the step table', () => {
    const gateway = loadSettings(paymentSettings, {
      PAYMENT_GATEWAY_DECLINE_ABOVE: '1000.5',
      PAYMENT_GATEWAY_DECLINED_CUSTOMERS: 'a, b,',
    })
    assert.equal(gateway.declineAbove, 100_050)
    assert.deepEqual(gateway.declinedCustomers, ['a', 'b'])
    const steps = sagaStepsFrom(
      loadSettings(journeySettings, { SAGA_PAYMENT_TIMEOUT_MS: '1234', SAGA_COMPENSATION_TIMEOUT_MS: '99' }),
    )
    assert.equal(steps.PAYMENT.timeoutMs, 1234)
    assert.equal(steps.PAYMENT.retries, 2)
    assert.equal(steps.REFUND_PAYMENT.timeoutMs, 99)
    assert.equal(steps.REJECT_ORDER.timeoutMs, 99)
  })
})
