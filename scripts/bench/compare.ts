import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, lstatSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { type Broker, startBroker } from '../kafka.ts'
import { compareRounds, comparisonTable, overlapsOf, ratiosOf } from './comparison.ts'
import { say } from './support.ts'

/**
 * `bench -- … --compare <ref>`: the same bench on a git worktree of another commit and on the
 * current tree, in one invocation, so that a ratio is measured side by side rather than against a
 * figure from another day. Each run is a child process (the pinned Node, `scripts/bench.ts`),
 * alternating the other commit and the current tree so that the machine's noise hits both alike,
 * and both on the one broker started here: neither run starts its own.
 */

const repoRoot = resolve(import.meta.dirname, '..', '..')

/** The children running now, for a second Ctrl-C. */
const running = new Set<ChildProcess>()

export interface Comparison {
  ref: string
  sha: string
  /** Rounds of (other commit, current tree). */
  rounds: number
  keepWorktree: boolean
  /** The bench's arguments without the comparison's: what both runs get. */
  args: string[]
  /** Whether the bench asked for uses Kafka, so a broker is needed. */
  needsKafka: boolean
}

const git = (args: string[], cwd = repoRoot) =>
  execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()

/** The commit `ref` names, or a one-line reason why there is none. */
export function resolveCommit(ref: string): { sha: string } | { problem: string } {
  try {
    git(['rev-parse', '--show-toplevel'])
  } catch {
    return { problem: `--compare needs a git checkout, and ${repoRoot} is not one` }
  }
  if (ref.startsWith('-')) return { problem: `--compare '${ref}' is not a git ref` }
  try {
    return { sha: git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]) }
  } catch {
    return { problem: `--compare '${ref}' does not name a commit in ${repoRoot}` }
  }
}

export async function compareWith(comparison: Comparison): Promise<void> {
  const { ref, sha } = comparison
  const short = sha.slice(0, 12)
  const stopping = new AbortController()
  const interrupt = () => {
    if (!stopping.signal.aborted) {
      say('SIGINT: stopping the runs, then the broker and the worktree (Ctrl-C again to quit at once)')
      stopping.abort()
      return
    }
    // kafka.ts stops a broker it started when this process exits.
    for (const child of running) child.kill('SIGKILL')
    process.exit(130)
  }
  process.on('SIGINT', interrupt)
  let broker: Broker | undefined
  const worktree = openWorktree(sha)
  try {
    await installDependencies(worktree, stopping.signal)
    const env: NodeJS.ProcessEnv = { ...process.env }
    if (comparison.needsKafka && !env.KAFKA_BROKERS) {
      broker = await startBroker()
      env.KAFKA_BROKERS = broker.brokers
    } else if (!env.KAFKA_BROKERS) {
      // Nothing here uses Kafka, but a commit older than --compare starts a broker whenever
      // KAFKA_BROKERS is unset (and first fetches its jars into the worktree). It only reads the
      // variable on a Kafka run, so a name that cannot resolve is never dialled.
      env.KAFKA_BROKERS = 'unused.invalid:9092'
    }
    const rounds: Array<{ base: unknown; current: unknown }> = []
    for (let round = 1; round <= comparison.rounds; round++) {
      // Alternating, so that the machine's drift between runs hits both sides alike.
      say(`round ${round}/${comparison.rounds}: ${ref} (${short})…`)
      const base = await runBench(ref, worktree, comparison.args, env, stopping.signal)
      say(`round ${round}/${comparison.rounds}: the current tree…`)
      const current = await runBench('current', repoRoot, comparison.args, env, stopping.signal)
      rounds.push({ base, current })
    }
    const figures = compareRounds(rounds)
    const last = rounds.at(-1)
    process.stdout.write(
      `${ref} (${short}) against the current tree${comparison.rounds > 1 ? `, medians of ${comparison.rounds} rounds` : ''}:\n\n` +
        `${comparisonTable(figures, ref)}\n\n`,
    )
    process.stdout.write(
      `${JSON.stringify({
        compare: { ref, sha, head: headOf(), uncommittedChanges: isDirty(), rounds: comparison.rounds },
        base: last?.base,
        current: last?.current,
        ratios: ratiosOf(figures),
        ...(comparison.rounds > 1 ? { roundsOverlap: overlapsOf(figures), rounds } : {}),
      })}\n`,
    )
  } finally {
    process.removeListener('SIGINT', interrupt)
    await broker?.stop()
    if (comparison.keepWorktree) say(`worktree of ${ref} kept in ${worktree}`)
    else removeWorktree(worktree)
  }
  if (stopping.signal.aborted) throw stopping.signal.reason
}

function headOf(): string {
  return git(['rev-parse', 'HEAD'])
}

function isDirty(): boolean {
  // Untracked files count: a new module the current run imports is part of what it measures.
  return git(['status', '--porcelain']) !== ''
}

/** A detached worktree of `sha` in the temp dir: the one already there at that commit, or a new one. */
function openWorktree(sha: string): string {
  const dir = join(tmpdir(), `orderflow-bench-${sha.slice(0, 12)}`)
  if (existsSync(dir)) {
    let at: string | undefined
    try {
      at = git(['rev-parse', 'HEAD'], dir)
    } catch {}
    if (at === sha && isWorktreeOfThisRepo(dir)) {
      say(`reusing the worktree of ${sha.slice(0, 12)} in ${dir}`)
      return dir
    }
    say(`${dir} is not a worktree of ${sha.slice(0, 12)}: replacing it`)
    removeWorktree(dir)
  }
  say(`creating a worktree of ${sha.slice(0, 12)} in ${dir}`)
  // A run killed before its clean-up, whose directory was then deleted, leaves the worktree
  // registered: git refuses to add it again until the registration is pruned.
  git(['worktree', 'prune'])
  git(['worktree', 'add', '--detach', dir, sha])
  return dir
}

function isWorktreeOfThisRepo(dir: string): boolean {
  return git(['worktree', 'list', '--porcelain'])
    .split('\n')
    .some((line) => line === `worktree ${dir}`)
}

function removeWorktree(dir: string): void {
  // Never follow the link into the current tree's node_modules.
  const modules = join(dir, 'node_modules')
  if (lstatSync(modules, { throwIfNoEntry: false })?.isSymbolicLink()) unlinkSync(modules)
  try {
    git(['worktree', 'remove', '--force', dir])
  } catch {
    // Not (or no longer) a registered worktree: a directory left over from an interrupted run.
    rmSync(dir, { recursive: true, force: true })
    git(['worktree', 'prune'])
  }
}

/**
 * The same lock file: the current tree's node_modules, linked. Another one: `npm ci` in the
 * worktree, once (a stamp in its node_modules says it finished, for a kept worktree).
 */
async function installDependencies(worktree: string, signal: AbortSignal): Promise<void> {
  const modules = join(worktree, 'node_modules')
  const lock = readFileSync(join(worktree, 'package-lock.json'))
  if (lock.equals(readFileSync(join(repoRoot, 'package-lock.json')))) {
    if (!lstatSync(modules, { throwIfNoEntry: false })) {
      say('same package-lock.json: linking the current node_modules')
      symlinkSync(join(repoRoot, 'node_modules'), modules, 'dir')
    }
    return
  }
  const stamp = join(modules, '.orderflow-bench-installed')
  if (existsSync(stamp) && readFileSync(stamp).equals(lock)) return
  if (lstatSync(modules, { throwIfNoEntry: false })?.isSymbolicLink()) unlinkSync(modules)
  say('another package-lock.json: npm ci in the worktree…')
  await run({ label: 'npm ci', command: 'npm', args: ['ci', '--no-audit', '--no-fund'], cwd: worktree, signal })
  writeFileSync(stamp, lock)
}

/** One bench run in `cwd`; its progress goes to stderr, labelled; returns the JSON it ends with. */
async function runBench(
  label: string,
  cwd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
): Promise<unknown> {
  // process.execPath: the pinned Node that runs this script, for both trees alike.
  const command = process.execPath
  const stdout = await run({
    label,
    command,
    args: ['scripts/bench.ts', ...args],
    cwd,
    env,
    signal,
    captureStdout: true,
  })
  const last = stdout.trimEnd().split('\n').at(-1) ?? ''
  try {
    return JSON.parse(last)
  } catch {
    throw new Error(`the bench on ${label} did not end with a JSON line (it ended with '${last.slice(0, 200)}')`)
  }
}

/**
 * Runs a child to its end, its stderr passed on line by line with a label (its stdout too, unless
 * captured and returned). The child has a process group of its own, so that a Ctrl-C reaches it
 * once, from here, and it stops the way it does on its own.
 */
function run(options: {
  label: string
  command: string
  args: string[]
  cwd: string
  env?: NodeJS.ProcessEnv
  signal: AbortSignal
  captureStdout?: boolean
}): Promise<string> {
  const { label, command, signal } = options
  signal.throwIfAborted()
  const child = spawn(command, options.args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  running.add(child)
  const labelled = (stream: NodeJS.ReadableStream) =>
    createInterface({ input: stream }).on('line', (line) => process.stderr.write(`[${label}] ${line}\n`))
  labelled(child.stderr)
  let stdout = ''
  if (options.captureStdout) child.stdout.on('data', (chunk) => (stdout += chunk))
  else labelled(child.stdout)
  const stop = () => child.kill('SIGINT')
  signal.addEventListener('abort', stop, { once: true })
  return new Promise((done, fail) => {
    child.once('error', (error) => fail(new Error(`could not run ${command}: ${error.message}`)))
    child.once('close', (code, killedBy) => {
      running.delete(child)
      signal.removeEventListener('abort', stop)
      if (signal.aborted) fail(signal.reason)
      else if (code === 0) done(stdout)
      else fail(new Error(`${label} failed (${killedBy ? `killed by ${killedBy}` : `exit code ${code}`}), see above`))
    })
  })
}
