import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'

/**
 * `npm run bench -- orders … --compare HEAD`, the smallest run there is (embedded, one concurrency,
 * one second): a worktree of HEAD, its run and the current tree's, both figures and their ratio in
 * the last line, and the worktree gone afterwards. Embedded only, so no broker may start, not even
 * for a HEAD whose bench started one unconditionally.
 */

const repoRoot = resolve(import.meta.dirname, '..', '..')

function bench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env }
  delete env.KAFKA_BROKERS
  const child = spawn(process.execPath, ['scripts/bench.ts', ...args], {
    cwd: repoRoot,
    env,
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

interface OrdersResult {
  benchmark: string
  modes: Array<{ mode: string; levels: Array<{ concurrency: number; ordersPerSecond: number }> }>
}

describe('bench --compare', () => {
  it('runs the same bench on HEAD and on the current tree and prints both with their ratio', async () => {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim()
    const worktree = join(tmpdir(), `orderflow-bench-${sha.slice(0, 12)}`)
    const run = await bench([
      'orders',
      '--modes',
      'embedded',
      '--concurrency',
      '1',
      '--seconds',
      '1',
      '--compare',
      'HEAD',
    ])
    assert.equal(run.code, 0, run.stderr)

    const last = JSON.parse(run.stdout.trimEnd().split('\n').at(-1) ?? '') as {
      compare: { ref: string; sha: string }
      base: OrdersResult
      current: OrdersResult
      ratios: Record<string, number | null>
    }
    assert.deepEqual(last.compare.ref, 'HEAD')
    assert.equal(last.compare.sha, sha)
    const perSecond = (result: OrdersResult) => {
      assert.equal(result.benchmark, 'orders')
      assert.deepEqual(
        result.modes.map((m) => [m.mode, m.levels.map((l) => l.concurrency)]),
        [['embedded', [1]]],
      )
      return result.modes[0]?.levels[0]?.ordersPerSecond ?? 0
    }
    const base = perSecond(last.base)
    const current = perSecond(last.current)
    assert.ok(base > 0 && current > 0, `orders/s: HEAD ${base}, current ${current}`)
    assert.equal(last.ratios['embedded concurrency 1 ordersPerSecond'], Math.round((current / base) * 100) / 100)
    assert.match(run.stdout, /\| embedded concurrency 1 ordersPerSecond \| +\d+ +\| +\d+ +\| +[\d.]+ +\|/)

    // Each run's progress, labelled, the other commit's first.
    const [headAt, currentAt] = [run.stderr.indexOf('[HEAD] bench:'), run.stderr.indexOf('[current] bench:')]
    assert.ok(headAt >= 0 && currentAt > headAt, run.stderr)
    assert.doesNotMatch(run.stderr, /^kafka: /m, 'an embedded comparison started a Kafka broker')

    assert.equal(existsSync(worktree), false, `${worktree} was not removed`)
    const worktrees = execFileSync('git', ['worktree', 'list', '--porcelain'], { cwd: repoRoot, encoding: 'utf8' })
    assert.doesNotMatch(worktrees, new RegExp(`worktree ${worktree}$`, 'm'))
    // The worktree borrowed this tree's node_modules through a link: removing it left them here.
    assert.ok(existsSync(join(repoRoot, 'node_modules', '.bin', 'biome')))
  })

  it('refuses a ref that names no commit in one line, before starting anything', async () => {
    const run = await bench(['orders', '--modes', 'embedded', '--compare', 'no-such-ref-anywhere'])
    assert.equal(run.code, 2)
    assert.equal(run.stderr, `bench: --compare 'no-such-ref-anywhere' does not name a commit in ${repoRoot}\n`)
    assert.equal(run.stdout, '')
  })
})
