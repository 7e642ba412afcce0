import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { before, describe, it } from 'node:test'
import { type MetricRow, metricsTable, readmeTable, registeredMetrics } from '../../scripts/metrics-table.ts'

/**
 * The README's table of metrics is what the registry holds: an app with every module, in both saga
 * modes, registers exactly the metrics it lists, with their types, labels and meanings. And the
 * Grafana dashboard graphs only metrics that exist.
 */
describe('the metrics as documented', () => {
  let rows: MetricRow[]
  before(async () => {
    rows = await registeredMetrics()
  })

  it("the README's table lists every metric the app registers, as the registry describes it", async () => {
    const inReadme = readmeTable()
    assert.ok(inReadme !== undefined, 'README.md has the <!-- metrics:start --> and <!-- metrics:end --> markers')
    assert.equal(
      inReadme,
      (await metricsTable(rows)).trim(),
      'the table is stale: run `node scripts/metrics-table.ts` to regenerate it',
    )
  })

  it('the Grafana dashboard queries only registered metrics, and is importable with any Prometheus', () => {
    const dashboard = JSON.parse(
      readFileSync(new URL('../../infra/grafana/orderflow-dashboard.json', import.meta.url), 'utf8'),
    ) as {
      panels: { targets?: { expr: string; datasource: { uid: string } }[] }[]
      templating: { list: { name: string; type: string }[] }
    }
    assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'))
    const known = new Set(rows.map((row) => row.name))
    const targets = dashboard.panels.flatMap((panel) => panel.targets ?? [])
    assert.ok(targets.length > 10)
    for (const target of targets) {
      // Grafana's variable, not a template string: the datasource is picked on import.
      assert.equal(target.datasource.uid, ['$', '{datasource}'].join(''))
      for (const [name] of target.expr.matchAll(/orderflow_[a-z_]+/g)) {
        const metric = name.replace(/_(bucket|count|sum)$/, '')
        assert.ok(known.has(metric), `${name} in '${target.expr}' is not a registered metric`)
      }
    }
  })
})
