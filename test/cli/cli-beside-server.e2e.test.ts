import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort, waitFor } from '../support/index.ts'

/**
 * Every command-line entry point run beside `npm start` on its embedded default (AUTH=dev, a temp
 * DATA_DIR), the operator commands through `npm run orderflow -- <command>` (src/cli.ts) as an
 * operator runs them: none opens the database the server holds. Each refuses in one line naming the
 * server's pid, or answers by asking the server (`--url`, with the operator token AUTH=dev
 * printed). `--help` prints the usage and exits 0; an unknown flag is one line and the usage, exit
 * 2; never a stack trace.
 */

const repoRoot = resolve(import.meta.dirname, '..', '..')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  return new Promise((done) => child.once('close', (code) => done({ code, stdout, stderr })))
}

const STACK = /^\s+at /m

describe('every CLI beside a running embedded server', () => {
  let base: string
  let dataDir: string
  let server: ChildProcess
  let output = ''
  let url: string
  let operatorToken: string
  let env: Record<string, string>

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'orderflow-cli-beside-'))
    dataDir = join(base, 'data')
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    env = { DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1' }
    server = spawn(process.execPath, ['src/main.ts'], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', ...env, AUTH: 'dev', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    server.stdout?.on('data', (chunk) => {
      output += chunk
    })
    server.stderr?.on('data', (chunk) => {
      output += chunk
    })
    await waitFor(() => /OPERATOR_TOKEN=\S+/.test(output) || server.exitCode !== null, {
      // A loaded CI machine can take a minute to start the embedded server.
      timeoutMs: 120_000,
      message: () => `the server did not start:\n${output}`,
    })
    assert.equal(server.exitCode, null, output)
    operatorToken = /OPERATOR_TOKEN=(\S+)/.exec(output)?.[1] ?? ''
  })

  after(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((done) => server.once('exit', done))
      server.kill('SIGTERM')
      await exited
    }
    await rm(base, { recursive: true, force: true })
  })

  const serverHoldsTheLock = async () => {
    assert.equal((await readFile(`${dataDir}.lock`, 'utf8')).trim(), String(server.pid))
    assert.equal((await fetch(`${url}/health/ready`)).status, 200)
  }

  it('npm run orderflow -- audit refuses in one line and names --url', async () => {
    const result = await run(['src/cli.ts', 'audit'], env)
    assert.equal(result.code, 2)
    assert.equal(
      result.stderr,
      `audit: the server (pid ${server.pid}) has DATA_DIR ${dataDir} open; run with --url ${url} to ask it\n`,
    )
    assert.equal(result.stdout, '')
    await serverHoldsTheLock()
  })

  it('npm run orderflow -- audit --url asks the server: 401 without a token, the report with --token or ORDERFLOW_TOKEN', async () => {
    const anonymous = await run(['src/cli.ts', 'audit', '--url', url], env)
    assert.equal(anonymous.code, 2)
    assert.match(anonymous.stderr, /asking the server at http:\/\/127\.0\.0\.1:\d+ \(GET \/api\/audit\)/)
    assert.match(anonymous.stderr, /answered 401.*pass an operator token with --token or ORDERFLOW_TOKEN/)
    assert.doesNotMatch(anonymous.stderr, STACK)

    const withFlag = await run(['src/cli.ts', 'audit', '--url', url, '--token', operatorToken, '--json'], env)
    assert.equal(withFlag.code, 0, withFlag.stderr)
    const report = JSON.parse(withFlag.stdout) as { ok: boolean; checks: { name: string }[] }
    assert.equal(report.ok, true)
    assert.ok(report.checks.some((c) => c.name === 'dead-letters'))

    const withVariable = await run(['src/cli.ts', 'audit', '--url', url], { ...env, ORDERFLOW_TOKEN: operatorToken })
    assert.equal(withVariable.code, 0, withVariable.stderr)
    assert.match(withVariable.stdout, /CLEAN/)
    await serverHoldsTheLock()
  })

  for (const command of [['replay', '--all'], ['rebuild-read-model']]) {
    it(`npm run orderflow -- ${command.join(' ')} refuses in one line`, async () => {
      const result = await run(['src/cli.ts', ...command], env)
      assert.equal(result.code, 1)
      assert.equal(
        result.stderr,
        `${command[0]}: the server (pid ${server.pid}) has DATA_DIR ${dataDir} open; stop it first (replay and rebuild-read-model have no HTTP route to ask it), or run on PostgreSQL (DATABASE_URL)\n`,
      )
      await serverHoldsTheLock()
    })
  }

  const entryPoints: { name: string; args: string[]; usage: RegExp }[] = [
    { name: 'audit', args: ['src/cli.ts', 'audit'], usage: /^Usage: npm run orderflow -- audit / },
    { name: 'replay', args: ['src/cli.ts', 'replay'], usage: /^Usage: npm run orderflow -- replay / },
    { name: 'coffee', args: ['src/coffee/main.ts'], usage: /^usage: npm run coffee/ },
    { name: 'bench', args: ['scripts/bench.ts'], usage: /^usage: npm run bench/ },
    { name: 'faults', args: ['scripts/faults.ts'], usage: /^usage: npm run faults/ },
  ]
  for (const entry of entryPoints) {
    it(`${entry.name}: --help prints the usage and exits 0; an unknown flag is one line and the usage, exit 2`, async () => {
      const help = await run([...entry.args, '--help'], env)
      assert.equal(help.code, 0, help.stderr)
      assert.match(help.stdout, entry.usage)
      assert.doesNotMatch(help.stdout + help.stderr, STACK)
      assert.doesNotMatch(help.stdout, /node src\//, 'the usage names npm run, which works on every Node')

      const unknown = await run([...entry.args, '--no-such-flag'], env)
      assert.equal(unknown.code, 2, unknown.stderr)
      const [first, ...rest] = unknown.stderr.split('\n')
      assert.match(first ?? '', new RegExp(`^${entry.name}: .*--no-such-flag`))
      assert.match(rest.join('\n'), /usage: npm run/i)
      assert.doesNotMatch(unknown.stderr, STACK)
    })
  }
})
