import { amountLimit, defineSettings, nameList, optionalText, rate, wholeNumber } from '../platform/settings.ts'

/** The simulated payment gateway, and how the payment service treats its faults (`PAYMENT_*`). */
export const paymentSettings = defineSettings({
  owner: 'payment',
  variables: {
    PAYMENT_GATEWAY_DECLINE_ABOVE: amountLimit('PAYMENT_GATEWAY_DECLINE_ABOVE'),
    PAYMENT_GATEWAY_DECLINED_CUSTOMERS: nameList,
    PAYMENT_GATEWAY_LATENCY_MS: wholeNumber('PAYMENT_GATEWAY_LATENCY_MS', 0, 600_000, 0),
    PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE: rate('PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE'),
    PAYMENT_GATEWAY_SEED: wholeNumber('PAYMENT_GATEWAY_SEED', 0, 2 ** 32 - 1, 1),
    PAYMENT_GATEWAY_TIMEOUT_MS: wholeNumber('PAYMENT_GATEWAY_TIMEOUT_MS', 1, 600_000, 5_000),
    PAYMENT_GATEWAY_ATTEMPTS: wholeNumber('PAYMENT_GATEWAY_ATTEMPTS', 1, 20, 4),
    PAYMENT_GATEWAY_RETRY_BACKOFF_MS: wholeNumber('PAYMENT_GATEWAY_RETRY_BACKOFF_MS', 0, 60_000, 50),
    PAYMENT_INSTANCE_ID: optionalText,
  },
  docs: {
    PAYMENT_GATEWAY_DECLINE_ABOVE: {
      default: '(no limit)',
      meaning: 'the simulated gateway declines amounts above this (`1000.00`)',
    },
    PAYMENT_GATEWAY_DECLINED_CUSTOMERS: {
      default: '(none)',
      meaning: 'comma-separated customer ids whose payments it declines',
    },
    PAYMENT_GATEWAY_LATENCY_MS: { default: '`0`', meaning: 'how long each gateway call takes' },
    PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE: {
      default: '`0`',
      meaning: 'share of calls (0–1) that fail as if the gateway were away',
    },
    PAYMENT_GATEWAY_SEED: { default: '`1`', meaning: 'seed of the transient failures (deterministic runs)' },
    PAYMENT_GATEWAY_TIMEOUT_MS: {
      default: '`5000`',
      meaning: 'a call that takes longer counts as a transient failure',
    },
    PAYMENT_GATEWAY_ATTEMPTS: {
      default: '`4`',
      meaning: 'calls per payment before it is recorded as failed (`GATEWAY_UNAVAILABLE`)',
    },
    PAYMENT_GATEWAY_RETRY_BACKOFF_MS: { default: '`50`', meaning: 'first delay between calls; doubles each time' },
    PAYMENT_INSTANCE_ID: {
      default: '`host:pid`',
      meaning: 'names this instance in `payments.processed_by` and the captures metric',
    },
  },
  build: (e) => ({
    /** Amounts above this (minor units) are declined; undefined = no limit. */
    declineAbove: e.PAYMENT_GATEWAY_DECLINE_ABOVE,
    declinedCustomers: e.PAYMENT_GATEWAY_DECLINED_CUSTOMERS,
    latencyMs: e.PAYMENT_GATEWAY_LATENCY_MS,
    transientFailureRate: e.PAYMENT_GATEWAY_TRANSIENT_FAILURE_RATE,
    seed: e.PAYMENT_GATEWAY_SEED,
    timeoutMs: e.PAYMENT_GATEWAY_TIMEOUT_MS,
    attempts: e.PAYMENT_GATEWAY_ATTEMPTS,
    retryBackoffMs: e.PAYMENT_GATEWAY_RETRY_BACKOFF_MS,
    instanceId: e.PAYMENT_INSTANCE_ID,
  }),
})
