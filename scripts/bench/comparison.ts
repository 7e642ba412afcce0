/**
 * The figures of two bench results side by side: `bench -- … --compare <ref>` runs the same bench on
 * another commit and on the current tree, and this says how the current one compares. Pure: it
 * reads the JSON each run prints as its last line, of any benchmark and of older commits too (a
 * figure an older commit does not print is left out on its side, not an error).
 */

/** A figure's name (the JSON path it comes from, with its run) and its value. */
export type Figures = Map<string, number>

export interface ComparedFigure {
  metric: string
  /** The median over the rounds, on the other commit; null when that side does not print it. */
  base: number | null
  current: number | null
  /** current / base, to two decimals; null when either side lacks the figure or base is 0. */
  ratio: number | null
  /** Each round's figure, in the order they ran (rounds that did not print it are left out). */
  baseRounds: number[]
  currentRounds: number[]
  /**
   * Whether the two sides' rounds overlap (the lowest of one side is not above the highest of the
   * other): then the difference is within what the machine varies from run to run. Null with fewer
   * than two rounds on either side.
   */
  overlap: boolean | null
}

type Json = Record<string, unknown>

const isRecord = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value)
const records = (value: unknown): Json[] => (Array.isArray(value) ? value.filter(isRecord) : [])
// JSON.stringify prints NaN (a percentile of nothing) as null: not a figure.
const finite = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isFinite(value) ? value : undefined

/** The key figures of one bench result, in the order the bench printed them. */
export function figuresOf(result: unknown): Figures {
  const figures: Figures = new Map()
  const put = (metric: string, value: unknown) => {
    const n = finite(value)
    if (n !== undefined) figures.set(metric, n)
  }
  if (!isRecord(result)) return figures
  switch (result.benchmark) {
    case 'transport':
      // The raw client's figure measures the machine, not orderflow: its ratio says how much the two
      // runs' conditions differed.
      for (const side of ['raw', 'ours'] as const) {
        const best = isRecord(result[side]) ? result[side] : {}
        put(`${side} eventsPerSecond`, best.eventsPerSecond)
        put(`${side} p99Ms`, best.p99Ms)
      }
      put('throughputRatio', result.throughputRatio)
      break
    case 'orders':
      for (const mode of records(result.modes)) {
        for (const level of records(mode.levels)) {
          const name = `${mode.mode} concurrency ${level.concurrency}`
          put(`${name} ordersPerSecond`, level.ordersPerSecond)
          put(`${name} httpP99Ms`, level.httpP99Ms)
        }
      }
      break
    case 'journey':
      for (const run of records(result.runs)) {
        const layout =
          run.processes === 'split' ? ' (2 processes)' : run.processes === 'server' ? ' (server process)' : ''
        const name = `${run.transport}${layout}/${run.mode}`
        for (const rate of records(run.rates)) {
          put(`${name} rates[${rate.offeredPerSecond}/s].p50Ms`, rate.p50Ms)
          put(`${name} rates[${rate.offeredPerSecond}/s].p99Ms`, rate.p99Ms)
          put(`${name} rates[${rate.offeredPerSecond}/s].transactionsPerOrder`, rate.transactionsPerOrder)
        }
        put(
          `${name} saturation.deliveredPerSecond`,
          isRecord(run.saturation) ? run.saturation.deliveredPerSecond : null,
        )
        put(
          `${name} saturation.transactionsPerOrder`,
          isRecord(run.saturation) ? run.saturation.transactionsPerOrder : null,
        )
        put(`${name} transactionsPerOrder`, run.transactionsPerOrder)
        // The same figure on every run of a transport: once per transport.
        put(`${run.transport} ordersBaselinePerSecond`, run.ordersBaselinePerSecond)
      }
      break
  }
  return figures
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  if (sorted.length % 2 === 1) return sorted[middle] ?? Number.NaN
  return ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2
}

/** Every figure of either side, each side's median over the rounds, and their ratio. */
export function compareRounds(rounds: ReadonlyArray<{ base: unknown; current: unknown }>): ComparedFigure[] {
  const base = rounds.map((round) => figuresOf(round.base))
  const current = rounds.map((round) => figuresOf(round.current))
  const metrics = new Set([...base, ...current].flatMap((figures) => [...figures.keys()]))
  const roundsOf = (runs: Figures[], metric: string) =>
    runs.map((figures) => figures.get(metric)).filter((v): v is number => v !== undefined)
  return [...metrics].map((metric) => {
    const baseRounds = roundsOf(base, metric)
    const currentRounds = roundsOf(current, metric)
    const b = baseRounds.length > 0 ? median(baseRounds) : null
    const c = currentRounds.length > 0 ? median(currentRounds) : null
    const ratio = b !== null && c !== null && b !== 0 ? Math.round((c / b) * 100) / 100 : null
    const overlap =
      baseRounds.length > 1 && currentRounds.length > 1
        ? Math.min(...baseRounds) <= Math.max(...currentRounds) && Math.min(...currentRounds) <= Math.max(...baseRounds)
        : null
    return { metric, base: b, current: c, ratio, baseRounds, currentRounds, overlap }
  })
}

/** `{ metric: ratio }`, the `ratios` of the comparison's JSON. */
export function ratiosOf(figures: ComparedFigure[]): Record<string, number | null> {
  return Object.fromEntries(figures.map((figure) => [figure.metric, figure.ratio]))
}

/** `{ metric: overlap }`, the `roundsOverlap` of the comparison's JSON (with several rounds). */
export function overlapsOf(figures: ComparedFigure[]): Record<string, boolean | null> {
  return Object.fromEntries(figures.map((figure) => [figure.metric, figure.overlap]))
}

/**
 * A Markdown table, so that a comparison can go into docs/benchmarks.md as it is. With several
 * rounds, each side's rounds are shown too, and whether they overlap: a ratio whose rounds overlap
 * is within the machine's noise.
 */
export function comparisonTable(figures: ComparedFigure[], baseLabel: string): string {
  const shown = (n: number | null) => (n === null ? '—' : String(Math.round(n * 100) / 100))
  const rounds = figures.some((f) => f.overlap !== null)
  const listed = (values: number[]) => (values.length === 0 ? '—' : values.map(shown).join(', '))
  const yesNo = (overlap: boolean | null) => (overlap === null ? '—' : overlap ? 'yes' : 'no')
  const rows = [
    [
      'metric',
      baseLabel,
      'current',
      `current/${baseLabel}`,
      ...(rounds ? [`${baseLabel} rounds`, 'current rounds', 'rounds overlap'] : []),
    ],
    ...figures.map((f) => [
      f.metric,
      shown(f.base),
      shown(f.current),
      shown(f.ratio),
      ...(rounds ? [listed(f.baseRounds), listed(f.currentRounds), yesNo(f.overlap)] : []),
    ]),
  ]
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0))) ?? []
  const line = (row: string[]) => `| ${row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`
  const [header, ...body] = rows
  return [line(header ?? []), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')
}
