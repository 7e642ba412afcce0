import { defineSettings, wholeNumber } from '../platform/settings.ts'

const DAY_MS = 24 * 3600 * 1000

/** The simulated travel time from dispatch to delivery. */
export const deliverySettings = defineSettings({
  owner: 'delivery',
  variables: {
    DELIVERY_DELAY_MS: wholeNumber('DELIVERY_DELAY_MS', 0, DAY_MS, 2_000),
  },
  docs: {
    DELIVERY_DELAY_MS: { default: '`2000`', meaning: 'simulated time from dispatch to delivery' },
  },
  build: (e) => ({ delayMs: e.DELIVERY_DELAY_MS }),
})
