import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * The README's generated sections (the metrics and configuration tables): a Markdown table padded
 * as biome formats it, and the text between a pair of HTML-comment markers, read or rewritten.
 */

const README = fileURLToPath(new URL('../README.md', import.meta.url))

/** A Markdown table with every column padded to its widest cell. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (values: readonly string[]) => `| ${values.map((v, i) => v.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)]
}

/** A `|` inside a cell, escaped. */
export const escapeCell = (text: string) => text.replace(/\|/g, '\\|')

/** The README's text between the markers, trimmed (undefined when they are missing). */
export function readmeSection(markers: { start: string; end: string }, readme = readFileSync(README, 'utf8')) {
  const start = readme.indexOf(markers.start)
  const end = readme.indexOf(markers.end)
  if (start < 0 || end < start) return undefined
  return readme.slice(start + markers.start.length, end).trim()
}

/** Puts `content` between the markers in README.md; exits 1 naming them when they are missing. */
export function writeReadmeSection(markers: { start: string; end: string }, content: string): void {
  const readme = readFileSync(README, 'utf8')
  const start = readme.indexOf(markers.start)
  const end = readme.indexOf(markers.end)
  if (start < 0 || end < start) {
    process.stderr.write(`README.md has no ${markers.start} … ${markers.end} markers: add them where the table goes\n`)
    process.exit(1)
  }
  writeFileSync(README, `${readme.slice(0, start + markers.start.length)}\n${content}\n${readme.slice(end)}`)
}
