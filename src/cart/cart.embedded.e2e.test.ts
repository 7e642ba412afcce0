import { pgliteTestDatabase } from '../../test/support/index.ts'
import { createEmbeddedTransport } from '../platform/transport/embedded.ts'
import { cartSuite } from './cart.testsuite.ts'

cartSuite('the embedded default (PGlite, embedded log)', async () => {
  const database = await pgliteTestDatabase()
  const transport = await createEmbeddedTransport({ db: database.db, pollIntervalMs: 50 })
  return {
    db: database.db,
    transport,
    async cleanup() {
      await transport.close()
      await database.cleanup()
    },
  }
})
