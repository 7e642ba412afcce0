import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { commands, resolveCommand } from './cli.ts'

/**
 * `npm run orderflow -- <command>` is the one way to run an operator command: no npm script runs a
 * command's file around it, and each command's `--help`, reached through it, says to run it so.
 */

const repoRoot = resolve(import.meta.dirname, '..')
const orderflow = resolve(import.meta.dirname, 'cli.ts')
const names = Object.keys(commands)

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** `node src/cli.ts <args>` with a database and a broker that do not answer: --help needs neither. */
function run(args: string[]): Promise<Run> {
  const env = {
    PATH: process.env.PATH ?? '',
    DATABASE_URL: 'postgres://127.0.0.1:1/none',
    KAFKA_BROKERS: '127.0.0.1:1',
  }
  return new Promise((done, fail) => {
    // A command that waits on the database or the broker for its --help fails here instead of hanging.
    execFile(
      process.execPath,
      [orderflow, ...args],
      { cwd: repoRoot, env, timeout: 30_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') fail(error)
        else done({ code: error ? (error.code as number) : 0, stdout, stderr })
      },
    )
  })
}

describe('npm run orderflow', () => {
  it('is the only npm script that runs an operator command', () => {
    const { scripts } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>
    }
    assert.equal(scripts.orderflow, 'node src/cli.ts')
    // order/cli.ts runs replay, rebuild and rebuild-read-model.
    const commandsOf = Map.groupBy(names, (name) => resolveCommand([name])?.file)
    const around = Object.entries(scripts).flatMap(([script, line]) =>
      line
        .split(/\s+/)
        .flatMap((word) => commandsOf.get(resolve(repoRoot, word)) ?? [])
        .map((name) => `"${script}": "${line}" runs what npm run orderflow -- ${name} runs`),
    )
    assert.deepEqual(around, [])
  })

  // Each is a small process that exits at once: all of them together take as long as the slowest.
  describe('each command answers --help through it, naming itself as npm run orderflow -- <command>', {
    concurrency: true,
  }, () => {
    for (const name of names) {
      it(name, async () => {
        const help = await run([name, '--help'])
        assert.equal(help.code, 0, help.stderr)
        assert.match(help.stdout, new RegExp(`npm run orderflow -- ${name}(?![\\w-])`))
        assert.doesNotMatch(help.stdout, /npm run (orders|audit|dlq|keys)\b/)
      })
    }
  })
})
