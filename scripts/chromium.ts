import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/**
 * The Chromium the browser tests drive (playwright-core brings no browser of its own): `CHROMIUM_PATH`
 * when set, else the first of Debian's and the usual names found on the PATH. Undefined when none is.
 */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.CHROMIUM_PATH) return env.CHROMIUM_PATH
  const names = ['chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome']
  for (const directory of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    for (const name of names) {
      const candidate = join(directory, name)
      try {
        accessSync(candidate, constants.X_OK)
        return candidate
      } catch {}
    }
  }
  return undefined
}
