import { pgliteTestDatabase } from '../../test/support/index.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import { seed002Suite } from './seed002.testsuite.ts'

// The embedded default: PGlite and the embedded log, no broker.
seed002Suite('the embedded default (PGlite, embedded log)', async () => {
  const database = await pgliteTestDatabase()
  const transport = await createEmbeddedTransport({ db: database.db, pollIntervalMs: 50 })
  return {
    db: database.db,
    transport,
    env: {},
    async cleanup() {
      await transport.close()
      await database.cleanup()
    },
  }
})
