/**
 * Screenshots of the dashboard's views for the README (docs/screenshots/*.png), taken by the
 * browser test as it drives the app: `node scripts/screenshots.ts`. Needs a Chromium (CHROMIUM_PATH,
 * or chromium on the PATH) and nothing else: the app runs on the embedded default in memory.
 */
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { findChromium } from './chromium.ts'

const repoRoot = resolve(import.meta.dirname, '..')
const chromium = findChromium()
if (!chromium) {
  process.stderr.write('no Chromium found: apt-get install chromium, or set CHROMIUM_PATH\n')
  process.exit(1)
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-reporter=spec', 'test/browser/dashboard.browser.e2e.test.ts'],
  {
    cwd: repoRoot,
    stdio: 'inherit',
    env: {
      ...process.env,
      CHROMIUM_PATH: chromium,
      DASHBOARD_SCREENSHOTS: resolve(repoRoot, 'docs/screenshots'),
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    },
  },
)
process.exit(result.status ?? 1)
