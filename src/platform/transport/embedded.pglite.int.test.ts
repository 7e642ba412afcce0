import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { openPglite } from '../sql/pglite.ts'
import type { SqlDatabase } from '../sql/port.ts'
import { transportContract } from './contract.ts'
import { embeddedTransportSuite } from './embedded.testsuite.ts'
import { createEmbeddedTransport } from './embedded.ts'

/**
 * PGlite opens a data directory once per process, so the whole file shares one database and a
 * "restart" is a new transport on it: the new transport shares nothing with the old one but the
 * tables, as a restarted process would.
 */
let opened: Promise<{ db: SqlDatabase; cleanup(): Promise<void> }> | undefined

function database() {
  opened ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orderflow-log-'))
    const db = await openPglite(dir)
    return {
      db,
      async cleanup() {
        await db.close()
        await rm(dir, { recursive: true, force: true })
      },
    }
  })()
  return opened
}

after(async () => {
  await (await opened)?.cleanup()
})

transportContract('embedded on PGlite', async () => {
  const { db } = await database()
  // The database outlives the suite: the file-level `after` closes it.
  return { transport: () => createEmbeddedTransport({ db }), cleanup: async () => {} }
})

embeddedTransportSuite('PGlite', async () => (await database()).db)
