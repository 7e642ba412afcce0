import { parseArgs } from 'node:util'
import { argumentProblem, dataDirBusy, openCliDatabase } from '../platform/cli.ts'
import { ConfigError, loadConfig } from '../platform/config.ts'
import { KeyFileError, rotateKeyFile } from '../platform/personal-data/kek.ts'
import { openPersonalData } from '../platform/runtime.ts'
import { DataDirInUseError } from '../platform/sql/data-dir-lock.ts'
import { migratePlatform } from '../platform/sql/migrations.ts'
import type { SqlDatabase } from '../platform/sql/port.ts'

/**
 * `npm run orderflow -- keys`: the personal-data keys of the deployment the environment describes
 * (DATABASE_URL, or the embedded default's DATA_DIR, while no server has it open), and
 * PERSONAL_DATA_KEY_FILE.
 */
export const USAGE = `Usage: npm run orderflow -- keys <command>

  status                       how many customer keys there are, live and erased, per key-encryption key
  rotate-kek                   adds a new key-encryption key to PERSONAL_DATA_KEY_FILE and rewraps every
                               customer key with it (no event is rewritten); keep the old file's copy until
                               this has finished
  rewrap                       rewraps the customer keys still wrapped by an older key-encryption key
                               (resumes an interrupted rotate-kek)
  rotate-customer --customer ID
                               a new data key for one customer: what is sealed from now on uses it, what
                               was sealed before still opens with the older one
  -h, --help                   this text

Erasing a customer is DELETE /api/customers/:id/personal-data on the running server.

Exit status: 0 done, 2 bad arguments, configuration, or a key file that cannot be used.
`

async function main(argv: string[]): Promise<number> {
  let parsed: { values: { customer?: string; help?: boolean }; positionals: string[] }
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { customer: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    })
  } catch (error) {
    const problem = argumentProblem(error)
    if (!problem) throw error
    process.stderr.write(`keys: ${problem}\n\n${USAGE}`)
    return 2
  }
  const [command, ...rest] = parsed.positionals
  if (parsed.values.help || command === undefined) {
    process.stdout.write(USAGE)
    return command === undefined && !parsed.values.help ? 2 : 0
  }
  if (!['status', 'rotate-kek', 'rewrap', 'rotate-customer'].includes(command) || rest.length > 0) {
    process.stderr.write(`keys: unknown command '${[command, ...rest].join(' ')}'\n\n${USAGE}`)
    return 2
  }
  if (command === 'rotate-customer' && !parsed.values.customer) {
    process.stderr.write('keys: rotate-customer needs --customer ID\n')
    return 2
  }
  const config = loadConfig()
  let opened: { db: SqlDatabase; unlock: () => void }
  try {
    opened = await openCliDatabase(config)
  } catch (error) {
    if (!(error instanceof DataDirInUseError)) throw error
    process.stderr.write(dataDirBusy('keys', error, 'stop it first'))
    return 2
  }
  const { db, unlock } = opened
  try {
    await migratePlatform(db)
    if (command === 'rotate-kek') {
      const { previous, current } = rotateKeyFile(config.personalData.keyFile)
      process.stderr.write(`key-encryption key ${current} added to ${config.personalData.keyFile} (was ${previous})\n`)
    }
    const personal = openPersonalData({ ...config, personalData: { ...config.personalData, createKeyFile: false } }, db)
    if (command === 'rotate-kek' || command === 'rewrap') {
      const { rewrapped } = await personal.rewrap((done, total) => process.stderr.write(`rewrapped ${done}/${total}\n`))
      process.stdout.write(`${rewrapped} customer key(s) rewrapped\n`)
    } else if (command === 'rotate-customer') {
      const version = await personal.rotate(String(parsed.values.customer))
      process.stdout.write(`customer ${parsed.values.customer}: data key ${version} seals from now on\n`)
    } else {
      const { rows } = await db.query<{ kek_id: string | null; live: number; erased: number; customers: number }>(
        `SELECT kek_id, count(*) FILTER (WHERE wrapped IS NOT NULL)::int AS live,
                count(*) FILTER (WHERE wrapped IS NULL)::int AS erased, count(DISTINCT subject)::int AS customers
           FROM personal_data_keys GROUP BY kek_id ORDER BY kek_id NULLS LAST`,
      )
      for (const row of rows) {
        process.stdout.write(
          `${row.kek_id ?? '(erased)'}: ${row.live} live key(s), ${row.erased} erased, ${row.customers} customer(s)\n`,
        )
      }
      if (rows.length === 0) process.stdout.write('no customer keys yet\n')
    }
    return 0
  } catch (error) {
    if (error instanceof KeyFileError) {
      process.stderr.write(`keys: ${error.message}\n`)
      return 2
    }
    throw error
  } finally {
    await db.close()
    unlock()
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof KeyFileError) {
      process.stderr.write(`keys: ${error.message}\n`)
      process.exitCode = 2
      return
    }
    process.stderr.write(`keys: ${(error as Error).stack ?? String(error)}\n`)
    process.exitCode = 1
  },
)
