import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { AppError } from '../errors.ts'
import { isProcessAlive } from '../process-alive.ts'

/**
 * DATA_DIR is held by a live process: `owner` is its pid. Entry points that can ask the running
 * server instead (`npm run orderflow -- audit --url`) catch it to say so in one line.
 */
export class DataDirInUseError extends AppError {
  readonly owner: number
  readonly dataDir: string
  constructor(dataDir: string, owner: number) {
    super(
      'CONFIG_INVALID',
      `DATA_DIR ${dataDir} is in use by process ${owner}: the embedded database is single-process. ` +
        'Stop that process, set another DATA_DIR, or run on PostgreSQL with DATABASE_URL.',
      { details: { dataDir, owner } },
    )
    this.name = 'DataDirInUseError'
    this.owner = owner
    this.dataDir = dataDir
  }
}

/**
 * PGlite opens a directory that another process has open without complaint, and then both write
 * the same files. The embedded database is single-process, so a lock file beside the directory
 * (holding the owner's pid) refuses a second process, and is taken over when its owner has died.
 */
export function lockDataDir(dataDir: string): () => void {
  const lockFile = `${resolve(dataDir)}.lock`
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lockFile, String(process.pid), { flag: 'wx' })
      return () => rmSync(lockFile, { force: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const owner = Number(readFileSync(lockFile, 'utf8').trim())
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isProcessAlive(owner)) {
        throw new DataDirInUseError(dataDir, owner)
      }
      // The owner died without cleaning up: the directory is free again.
      rmSync(lockFile, { force: true })
    }
  }
  throw new AppError('CONFIG_INVALID', `could not lock DATA_DIR ${dataDir} (${lockFile})`)
}
