import { defineSettings, wholeNumber } from '../platform/settings.ts'

/** When the auditor (and the dashboard) call an order stuck. */
export const auditSettings = defineSettings({
  owner: 'audit',
  variables: {
    AUDIT_STUCK_AFTER_MS: wholeNumber('AUDIT_STUCK_AFTER_MS', 0, 30 * 24 * 3600 * 1000, 15 * 60_000),
  },
  docs: {
    AUDIT_STUCK_AFTER_MS: {
      default: '`900000` (15 min)',
      meaning: 'an order in flight longer than this is listed as stuck by the auditor and the dashboard',
    },
  },
  build: (e) => ({ stuckAfterMs: e.AUDIT_STUCK_AFTER_MS }),
})
