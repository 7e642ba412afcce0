import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, globSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort, waitFor } from '../support/index.ts'

/**
 * Docs that run: every ```bash block of the README and of the module READMEs is run by this test,
 * so an example that no longer works fails CI. Each block says how, in an HTML comment on the line
 * before it (invisible on GitHub):
 *
 *   <!-- docs-test: server -->                      run against a fresh embedded server (npm start)
 *   <!-- docs-test: server AUTH=dev X=1 -->         … started with these variables
 *   <!-- docs-test: skip covered-by=<path> <why> --> not run here; <path> is the test that runs it
 *   <!-- docs-test: skip <why> -->                  not runnable on this machine (a production cluster)
 *
 * Server blocks of one file that share their variables run in order against one server, as a user
 * would type them; `localhost:3000` is rewritten to the server's port; AUTH=dev's printed tokens
 * are in the environment (CUSTOMER_TOKEN, OPERATOR_TOKEN…). The block runs in bash with `set -euo
 * pipefail`, and `curl` fails on an HTTP status ≥ 400 (retrying for a few seconds, since a reader
 * types slower than a script and an event may still be on its way).
 */

const repoRoot = resolve(import.meta.dirname, '../..')
const documents = ['README.md', ...globSync('src/*/README.md', { cwd: repoRoot }).sort()]

interface Block {
  file: string
  line: number
  code: string
  how: { kind: 'server'; vars: Record<string, string> } | { kind: 'skip'; coveredBy?: string; why: string }
}

const ANNOTATION = /^<!--\s*docs-test:\s*(.*?)\s*-->$/

function blocksOf(file: string): { blocks: Block[]; unannotated: string[] } {
  const lines = readFileSync(join(repoRoot, file), 'utf8').split('\n')
  const blocks: Block[] = []
  const unannotated: string[] = []
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== '```bash') continue
    const end = lines.findIndex((l, j) => j > i && l.trim() === '```')
    const code = lines.slice(i + 1, end).join('\n')
    let previous = i - 1
    while (previous >= 0 && lines[previous]?.trim() === '') previous--
    const annotation = ANNOTATION.exec(lines[previous]?.trim() ?? '')?.[1]
    if (annotation === undefined) {
      unannotated.push(`${file}:${i + 1}`)
    } else if (annotation.startsWith('server')) {
      const vars = Object.fromEntries(
        annotation
          .slice('server'.length)
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map((pair) => pair.split('=', 2) as [string, string]),
      )
      blocks.push({ file, line: i + 1, code, how: { kind: 'server', vars } })
    } else if (annotation.startsWith('skip')) {
      const rest = annotation.slice('skip'.length).trim()
      const covered = /^covered-by=(\S+)\s*(.*)$/.exec(rest)
      blocks.push({
        file,
        line: i + 1,
        code,
        how: covered ? { kind: 'skip', coveredBy: covered[1], why: covered[2] ?? '' } : { kind: 'skip', why: rest },
      })
    } else {
      unannotated.push(`${file}:${i + 1} (unknown annotation '${annotation}')`)
    }
    i = end
  }
  return { blocks, unannotated }
}

const parsed = documents.map(blocksOf)
const allBlocks = parsed.flatMap((p) => p.blocks)

interface Server {
  child: ChildProcess
  port: number
  tokens: Record<string, string>
  output: () => string
}

async function startServer(dataDir: string, vars: Record<string, string>): Promise<Server> {
  const port = await freePort()
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn', ...vars },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  await waitFor(
    async () => {
      if (child.exitCode !== null) return true
      const response = await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined)
      return response?.status === 200
    },
    { timeoutMs: 120_000, intervalMs: 200, message: () => `the server did not get ready:\n${output}` },
  )
  assert.equal(child.exitCode, null, `the server exited:\n${output}`)
  if (vars.AUTH === 'dev') {
    await waitFor(() => output.includes('export OPERATOR_TOKEN='), { message: () => `no tokens printed:\n${output}` })
  }
  const tokens = Object.fromEntries([...output.matchAll(/export ([A-Z_]+_TOKEN)=(\S+)/g)].map((m) => [m[1], m[2]]))
  return { child, port, tokens, output: () => output }
}

async function stopServer(server: Server | undefined): Promise<void> {
  if (!server || server.child.exitCode !== null) return
  const exited = new Promise((resolve) => server.child.once('exit', resolve))
  server.child.kill('SIGTERM')
  await exited
}

/** Runs a block as a reader would paste it into bash. */
async function runBlock(block: Block, server: Server): Promise<{ code: number | null; output: string }> {
  const script = [
    'set -euo pipefail',
    // Fail on ≥ 400 and show the body; retry while the answer may still be on its way.
    'curl() { command curl --silent --show-error --fail-with-body --retry 8 --retry-delay 1 --retry-all-errors "$@"; }',
    block.code.replaceAll(/(localhost|127\.0\.0\.1):3000/g, `127.0.0.1:${server.port}`),
  ].join('\n')
  const child = spawn('bash', ['-c', script], {
    cwd: repoRoot,
    env: { ...process.env, ...server.tokens },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  return { code, output }
}

describe('the docs run as written', () => {
  it('every bash block says how it is tested', () => {
    const unannotated = parsed.flatMap((p) => p.unannotated)
    assert.deepEqual(unannotated, [], 'add <!-- docs-test: server | skip … --> before each of these blocks')
  })

  it('every skipped block names why, and the test that covers it exists', () => {
    for (const block of allBlocks) {
      if (block.how.kind !== 'skip') continue
      assert.ok(block.how.why.length > 0 || block.how.coveredBy, `${block.file}:${block.line} says why it is skipped`)
      if (block.how.coveredBy) {
        assert.ok(
          existsSync(join(repoRoot, block.how.coveredBy)),
          `${block.file}:${block.line}: ${block.how.coveredBy} exists`,
        )
      }
    }
  })

  it('leaves placeholders such as <id> out of runnable blocks: ids go through shell variables', () => {
    for (const block of allBlocks) {
      if (block.how.kind !== 'server') continue
      assert.doesNotMatch(block.code, /<[a-z-]+>/, `${block.file}:${block.line} has a placeholder`)
    }
  })

  const groups = new Map<string, Block[]>()
  for (const block of allBlocks) {
    if (block.how.kind !== 'server') continue
    const key = `${block.file} ${JSON.stringify(block.how.vars)}`
    groups.set(key, [...(groups.get(key) ?? []), block])
  }
  for (const [key, blocks] of groups) {
    describe(key, () => {
      let dir: string
      let server: Server | undefined
      before(async () => {
        dir = await mkdtemp(join(tmpdir(), 'orderflow-docs-'))
        const first = blocks[0]
        server = await startServer(join(dir, 'data'), first?.how.kind === 'server' ? first.how.vars : {})
      })
      after(async () => {
        await stopServer(server)
        await rm(dir, { recursive: true, force: true })
      })
      for (const block of blocks) {
        it(`${block.file}:${block.line}`, async () => {
          assert.ok(server)
          const { code, output } = await runBlock(block, server)
          assert.equal(code, 0, `${block.file}:${block.line} failed:\n${block.code}\n--- output:\n${output}`)
        })
      }
    })
  }
})
