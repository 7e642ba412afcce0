import type { FaultResult } from './suite.ts'

/** The suite's table (Markdown, so docs/reliability.md can hold it as printed) and the details under it. */
export function formatTable(results: readonly FaultResult[]): string {
  const header = [
    'fault',
    'mode',
    'accepted',
    'found',
    'duplicates',
    'out of order',
    'outage dead letters',
    'audit',
    'time to drain',
    'result',
  ]
  const rows = results.map((r) => {
    const v = r.verification
    if (r.notRun) return [r.fault, r.mode, '', '', '', '', '', '', '', 'not run']
    return [
      r.fault,
      r.mode,
      String(r.accepted),
      v ? String(v.found) : '?',
      v ? String(v.duplicates) : '?',
      v ? String(v.outOfOrder) : '?',
      v ? String(v.outageDeadLetters) : '?',
      v ? (v.audit.ok ? 'clean' : 'FAILED') : '?',
      r.drainMs === null ? 'did not drain' : `${(r.drainMs / 1000).toFixed(1)} s`,
      r.ok ? 'ok' : 'FAILED',
    ]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`
  const rule = `| ${widths.map((w, i) => (i < 2 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`
  return [line(header), rule, ...rows.map(line)].join('\n')
}

export function formatDetails(results: readonly FaultResult[]): string {
  const lines: string[] = []
  for (const r of results) {
    const v = r.verification
    if (r.notRun) {
      lines.push(`- ${r.fault} (${r.mode}): not run here: ${r.notRun}`)
      continue
    }
    lines.push(`- ${r.fault} (${r.mode}): ${r.attempted} requests, ${r.accepted} accepted`)
    if (v) {
      lines.push(
        `  orders: ${
          Object.entries(v.statuses)
            .map(([s, n]) => `${n} ${s}`)
            .join(', ') || 'none'
        }`,
      )
      if (r.poison.length > 0) {
        lines.push(
          `  poison: ${r.poison.length} injected, ${v.poisonDeadLetters} dead letters of it, ${v.poisonNotDeadLettered.length} not dead-lettered`,
        )
      }
      for (const m of v.missing) lines.push(`  missing: ${m}`)
      for (const s of v.outOfOrderSample) lines.push(`  out of order: ${s}`)
      for (const s of v.outageDeadLetterSample) lines.push(`  dead letter: ${s}`)
      for (const s of v.notOnBrokerSample) lines.push(`  not on the broker: ${s}`)
    }
    for (const problem of r.problems) lines.push(`  PROBLEM: ${problem}`)
    for (const note of r.notes) lines.push(`  ${note}`)
  }
  return lines.join('\n')
}
