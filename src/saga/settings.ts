import { deliverySettings } from '../delivery/settings.ts'
import { defineSettings, type ModuleSettings, oneOf, type SettingsValue, wholeNumber } from '../platform/settings.ts'

const DAY_MS = 24 * 3600 * 1000
const timeout = (name: string, fallback: number) => wholeNumber(name, 1, DAY_MS, fallback)

/**
 * How the order journey is coordinated, read in this one place: `orchestration` (the Create-Order
 * saga sends every command) or `choreography` (each service reacts to the one before), and every
 * step's timeout, which both modes apply (the saga's timers, or the order's journey deadlines).
 */
export const journeySettings = defineSettings({
  owner: 'journey',
  variables: {
    SAGA_MODE: oneOf('SAGA_MODE', ['orchestration', 'choreography'], 'orchestration'),
    SAGA_PAYMENT_TIMEOUT_MS: timeout('SAGA_PAYMENT_TIMEOUT_MS', 30_000),
    SAGA_CONFIRM_TIMEOUT_MS: timeout('SAGA_CONFIRM_TIMEOUT_MS', 15_000),
    SAGA_DISPATCH_TIMEOUT_MS: timeout('SAGA_DISPATCH_TIMEOUT_MS', 30_000),
    SAGA_DELIVERY_TIMEOUT_MS: timeout('SAGA_DELIVERY_TIMEOUT_MS', 5 * 60_000),
    SAGA_COMPENSATION_TIMEOUT_MS: timeout('SAGA_COMPENSATION_TIMEOUT_MS', 30_000),
  },
  docs: {
    SAGA_MODE: {
      default: '`orchestration`',
      meaning: '`orchestration` (the Create-Order saga drives the journey) or `choreography` (each service reacts)',
    },
    SAGA_PAYMENT_TIMEOUT_MS: { default: '`30000`', meaning: 'how long the journey waits for a payment, in both modes' },
    SAGA_CONFIRM_TIMEOUT_MS: { default: '`15000`', meaning: "how long it waits for the order's confirmation" },
    SAGA_DISPATCH_TIMEOUT_MS: { default: '`30000`', meaning: 'how long it waits for the dispatch' },
    SAGA_DELIVERY_TIMEOUT_MS: {
      default: '`300000` (5 min)',
      meaning: 'how long it waits for the delivery (more than `DELIVERY_DELAY_MS`)',
    },
    SAGA_COMPENSATION_TIMEOUT_MS: { default: '`30000`', meaning: 'how long a refund or a rejection may take' },
  },
  build(e, problems, read) {
    const delivery = read(deliverySettings)
    if (delivery && e.SAGA_DELIVERY_TIMEOUT_MS <= delivery.delayMs) {
      problems.push(
        `SAGA_DELIVERY_TIMEOUT_MS (${e.SAGA_DELIVERY_TIMEOUT_MS}) must be longer than DELIVERY_DELAY_MS (${delivery.delayMs}), or every delivery would time out`,
      )
    }
    return {
      mode: e.SAGA_MODE,
      timeoutsMs: {
        payment: e.SAGA_PAYMENT_TIMEOUT_MS,
        confirm: e.SAGA_CONFIRM_TIMEOUT_MS,
        dispatch: e.SAGA_DISPATCH_TIMEOUT_MS,
        delivery: e.SAGA_DELIVERY_TIMEOUT_MS,
        compensation: e.SAGA_COMPENSATION_TIMEOUT_MS,
      },
    }
  },
})

export type JourneySettings = SettingsValue<typeof journeySettings>
export type SagaMode = JourneySettings['mode']

/** An intake's `when` for choreography's reactions: they run only when SAGA_MODE is choreography. */
export const inChoreography = (settings: ModuleSettings): boolean =>
  settings.get(journeySettings).mode === 'choreography'
