import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { waitFor } from '../../../test/support/index.ts'
import { trackBrokerHealth } from './broker-health.ts'

describe('broker health for step timeouts', () => {
  it('counts the calm since the last failed ping, and never resets without one', async () => {
    let failing = true
    let pings = 0
    const health = trackBrokerHealth(
      {
        ping: async () => {
          pings++
          if (failing) throw new Error('the broker did not answer')
        },
      },
      { intervalMs: 10 },
    )
    try {
      await waitFor(() => pings >= 2, { message: 'pinged' })
      assert.ok(health.troubleFreeForMs() < 1_000, 'in trouble just now')
      failing = false
      const seen = pings
      await waitFor(() => pings >= seen + 3, { message: 'pinged again' })
      const calm = health.troubleFreeForMs()
      await waitFor(() => pings >= seen + 6, { message: 'pinged again' })
      assert.ok(health.troubleFreeForMs() > calm, 'the calm grows while pings answer')
    } finally {
      health.stop()
    }
    const never = trackBrokerHealth({ ping: async () => {} })
    assert.equal(never.troubleFreeForMs(), Number.POSITIVE_INFINITY)
    never.stop()
  })
})
