import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { fileURLToPath } from 'node:url'

/**
 * `npm run orderflow -- <command> [options]`: every operator command in one place. Each command is
 * the service's own command line, run as a child process with this process's terminal: its
 * progress, its `--help`, its exit status, and Ctrl-C (which reaches it directly and stops it
 * cleanly after its current batch).
 */

export const commands = {
  replay: {
    file: 'order/cli.ts',
    prefix: ['replay'],
    what: "re-publish stored events of any service's stream type (--stream-type; default order)",
  },
  rebuild: {
    file: 'order/cli.ts',
    prefix: ['rebuild'],
    what: 'rebuild any projection from the event store (--projection <name>)',
  },
  'rebuild-read-model': { file: 'order/cli.ts', prefix: ['rebuild-read-model'], what: 'rebuild the order read model' },
  audit: { file: 'audit/cli.ts', prefix: [], what: "check the journey's invariants (or ask a server: --url)" },
  dlq: { file: 'dead-letters/cli.ts', prefix: [], what: 'list, show, redrive and discard dead letters' },
  keys: { file: 'customer/cli.ts', prefix: [], what: 'personal-data keys: status, rotation, rewrap' },
  outbox: {
    file: 'platform/outbox/cli.ts',
    prefix: [],
    what: 'outbox rows the broker refused for good: list, retry, discard',
  },
  topics: {
    file: 'platform/transport/topics-cli.ts',
    prefix: [],
    what: 'plan or apply the Kafka topics: partitions, replication, retention, min.insync.replicas',
  },
  schemas: {
    file: '../scripts/schemas.ts',
    prefix: [],
    what: 'check or update the message schemas and their golden samples',
  },
} as const

export const USAGE = `Usage: npm run orderflow -- <command> [options]

${Object.entries(commands)
  .map(([name, command]) => `  ${name.padEnd(20)} ${command.what}`)
  .join('\n')}
  help                 this text

Each command takes --help. Environment, as for the server: DATABASE_URL or DATA_DIR, KAFKA_BROKERS…
`

export function resolveCommand(argv: readonly string[]): { file: string; args: string[] } | null {
  const [name, ...rest] = argv
  const command = name === undefined ? undefined : commands[name as keyof typeof commands]
  if (!command) return null
  return { file: fileURLToPath(new URL(command.file, import.meta.url)), args: [...command.prefix, ...rest] }
}

async function main(argv: string[]): Promise<number> {
  const [name] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE)
    return name === undefined ? 2 : 0
  }
  const resolved = resolveCommand(argv)
  if (!resolved) {
    process.stderr.write(`orderflow: unknown command '${name}'\n\n${USAGE}`)
    return 2
  }
  const child = spawn(process.execPath, [resolved.file, ...resolved.args], { stdio: 'inherit' })
  // Ctrl-C reaches the child (same process group), which stops cleanly: wait for it rather than die first.
  const ignore = () => {}
  process.on('SIGINT', ignore)
  process.on('SIGTERM', () => child.kill('SIGTERM'))
  return new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)))
  })
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2))
