import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { compareRounds, comparisonTable, figuresOf, overlapsOf, ratiosOf } from '../../scripts/bench/comparison.ts'

/**
 * `bench -- … --compare <ref>` reads the JSON each run prints as its last line and compares the
 * figures of the same name: these are the shapes `scripts/bench/*.ts` print.
 */

const journeyRun = (transport: string, mode: string, delivered: number, extra: Record<string, unknown> = {}) => ({
  transport,
  mode,
  rates: [{ offeredPerSecond: 50, accepted: 150, delivered: 150, p50Ms: 40, p99Ms: 120, deliveredPerSecond: 50 }],
  saturation: { offeredPerSecond: 300, deliveredPerSecond: delivered, p50Ms: 900, p99Ms: 2000 },
  ordersBaselinePerSecond: 400,
  ratioToOrders: delivered / 400,
  ...extra,
})

const journey = (runs: unknown[]) => ({ benchmark: 'journey', seconds: 3, runs, machine: { cpus: 2 } })

describe('comparing two bench results', () => {
  it('names the journey figures the issue keeps, per transport and saga mode', () => {
    const figures = figuresOf(
      journey([
        journeyRun('kafka', 'orchestration', 120, {
          transactionsPerOrder: 31.5,
          rates: [
            {
              offeredPerSecond: 50,
              accepted: 150,
              delivered: 150,
              p50Ms: 40,
              p99Ms: 120,
              deliveredPerSecond: 50,
              transactionsPerOrder: 17.5,
            },
          ],
          saturation: {
            offeredPerSecond: 300,
            deliveredPerSecond: 120,
            p50Ms: 900,
            p99Ms: 2000,
            transactionsPerOrder: 2.8,
          },
        }),
        journeyRun('kafka', 'choreography', 150, { transactionsPerOrder: 27 }),
      ]),
    )
    assert.deepEqual(Object.fromEntries(figures), {
      'kafka/orchestration rates[50/s].p50Ms': 40,
      'kafka/orchestration rates[50/s].p99Ms': 120,
      'kafka/orchestration rates[50/s].transactionsPerOrder': 17.5,
      'kafka/orchestration saturation.deliveredPerSecond': 120,
      'kafka/orchestration saturation.transactionsPerOrder': 2.8,
      'kafka/orchestration transactionsPerOrder': 31.5,
      'kafka ordersBaselinePerSecond': 400,
      'kafka/choreography rates[50/s].p50Ms': 40,
      'kafka/choreography rates[50/s].p99Ms': 120,
      'kafka/choreography saturation.deliveredPerSecond': 150,
      'kafka/choreography transactionsPerOrder': 27,
    })
  })

  it('names the runs of services in processes of their own apart from those in the bench’s process', () => {
    const figures = figuresOf(journey([journeyRun('kafka', 'choreography', 300, { processes: 'split' })]))
    assert.equal(figures.get('kafka (2 processes)/choreography saturation.deliveredPerSecond'), 300)
    assert.equal(figures.has('kafka/choreography saturation.deliveredPerSecond'), false)
    const server = figuresOf(journey([journeyRun('kafka', 'choreography', 310, { processes: 'server' })]))
    assert.equal(server.get('kafka (server process)/choreography saturation.deliveredPerSecond'), 310)
    assert.equal(server.has('kafka/choreography saturation.deliveredPerSecond'), false)
  })

  it('divides current by base, figure by figure', () => {
    const [saturation] = compareRounds([
      {
        base: journey([journeyRun('embedded', 'orchestration', 80)]),
        current: journey([journeyRun('embedded', 'orchestration', 100)]),
      },
    ]).filter((f) => f.metric === 'embedded/orchestration saturation.deliveredPerSecond')
    assert.deepEqual(saturation, {
      metric: 'embedded/orchestration saturation.deliveredPerSecond',
      base: 80,
      current: 100,
      ratio: 1.25,
      baseRounds: [80],
      currentRounds: [100],
      overlap: null,
    })
  })

  it('compares the medians of the rounds, so one noisy round does not decide', () => {
    const orders = (perSecond: number) => ({
      benchmark: 'orders',
      modes: [{ mode: 'embedded', levels: [{ concurrency: 16, ordersPerSecond: perSecond, httpP99Ms: 50 }] }],
    })
    const figures = compareRounds([
      { base: orders(200), current: orders(210) },
      { base: orders(20), current: orders(230) },
      { base: orders(220), current: orders(220) },
    ])
    assert.deepEqual(ratiosOf(figures), {
      'embedded concurrency 16 ordersPerSecond': 1.1, // 220 / 200
      'embedded concurrency 16 httpP99Ms': 1,
    })
  })

  it('says whether the two sides’ rounds overlap, so that a ratio within the noise shows as such', () => {
    const orders = (perSecond: number, p99: number) => ({
      benchmark: 'orders',
      modes: [{ mode: 'embedded', levels: [{ concurrency: 16, ordersPerSecond: perSecond, httpP99Ms: p99 }] }],
    })
    const figures = compareRounds([
      { base: orders(200, 50), current: orders(260, 45) },
      { base: orders(230, 40), current: orders(250, 52) },
    ])
    assert.deepEqual(overlapsOf(figures), {
      'embedded concurrency 16 ordersPerSecond': false, // 200–230 against 250–260
      'embedded concurrency 16 httpP99Ms': true, // 40–50 against 45–52
    })
    const byName = new Map(figures.map((f) => [f.metric, f]))
    assert.deepEqual(byName.get('embedded concurrency 16 ordersPerSecond')?.baseRounds, [200, 230])
    assert.deepEqual(byName.get('embedded concurrency 16 ordersPerSecond')?.currentRounds, [260, 250])
    assert.deepEqual(comparisonTable(figures, 'main').split('\n'), [
      '| metric                                  | main | current | current/main | main rounds | current rounds | rounds overlap |',
      '| --------------------------------------- | ---- | ------- | ------------ | ----------- | -------------- | -------------- |',
      '| embedded concurrency 16 ordersPerSecond | 215  | 255     | 1.19         | 200, 230    | 260, 250       | no             |',
      '| embedded concurrency 16 httpP99Ms       | 45   | 48.5    | 1.08         | 50, 40      | 45, 52         | yes            |',
    ])
  })

  it('keeps a figure only one side prints, without a ratio, and skips a percentile of nothing', () => {
    // An older commit without transactionsPerOrder; a rate where nothing was delivered (NaN → null).
    const base = journey([
      journeyRun('kafka', 'orchestration', 100, { rates: [{ offeredPerSecond: 50, p50Ms: null }] }),
    ])
    const current = journey([journeyRun('kafka', 'orchestration', 90, { transactionsPerOrder: 30 })])
    const figures = compareRounds([{ base, current }])
    const byName = new Map(figures.map((f) => [f.metric, f]))
    assert.deepEqual(byName.get('kafka/orchestration transactionsPerOrder'), {
      metric: 'kafka/orchestration transactionsPerOrder',
      base: null,
      current: 30,
      ratio: null,
      baseRounds: [],
      currentRounds: [30],
      overlap: null,
    })
    assert.equal(byName.get('kafka/orchestration rates[50/s].p50Ms')?.base, null)
    assert.equal(byName.get('kafka/orchestration rates[50/s].p50Ms')?.ratio, null)
    assert.equal(byName.get('kafka/orchestration saturation.deliveredPerSecond')?.ratio, 0.9)
  })

  it('compares the transport bench, the raw client included (it measures the machine)', () => {
    const transport = (raw: number, ours: number) => ({
      benchmark: 'transport',
      raw: { eventsPerSecond: raw, p99Ms: 70 },
      ours: { eventsPerSecond: ours, p99Ms: 90 },
      throughputRatio: ours / raw,
    })
    const ratios = ratiosOf(compareRounds([{ base: transport(80000, 60000), current: transport(80000, 72000) }]))
    assert.equal(ratios['raw eventsPerSecond'], 1)
    assert.equal(ratios['ours eventsPerSecond'], 1.2)
    assert.equal(ratios.throughputRatio, 1.2)
  })

  it('prints a Markdown table with the ref as a column', () => {
    const table = comparisonTable(
      [
        {
          metric: 'embedded concurrency 1 ordersPerSecond',
          base: 41,
          current: 133,
          ratio: 3.24,
          baseRounds: [41],
          currentRounds: [133],
          overlap: null,
        },
        { metric: 'x', base: null, current: 2, ratio: null, baseRounds: [], currentRounds: [2], overlap: null },
      ],
      'HEAD~1',
    )
    assert.deepEqual(table.split('\n'), [
      '| metric                                 | HEAD~1 | current | current/HEAD~1 |',
      '| -------------------------------------- | ------ | ------- | -------------- |',
      '| embedded concurrency 1 ordersPerSecond | 41     | 133     | 3.24           |',
      '| x                                      | —      | 2       | —              |',
    ])
  })
})
