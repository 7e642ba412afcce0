import { knownVariables, platformVariables } from './platform/config.ts'
import type { ServiceModule } from './platform/module.ts'
import { type Environment, type SettingsSlice, settingsProblems, type VariableDoc } from './platform/settings.ts'
import { allModules } from './services.ts'

/**
 * Every settings slice the modules declare (each once, in module order; a slice several modules
 * read, such as the journey's, is one slice). Start-up checks them all, whichever modules a
 * process runs, so a wrong value stops every process of a deployment alike.
 */
export function allSettings(modules: readonly ServiceModule[] = allModules()): SettingsSlice<unknown>[] {
  return [...new Set(modules.flatMap((m) => m.settings ?? []))]
}

/** What is wrong with the modules' settings in `env`, one line per variable. */
export function modulesSettingsProblems(env: Environment, modules?: readonly ServiceModule[]): string[] {
  return settingsProblems(allSettings(modules), env)
}

/** Every variable orderflow reads: the platform's and every module's. */
export function allVariables(): string[] {
  return [...knownVariables, ...allSettings().flatMap((slice) => Object.keys(slice.docs))]
}

export interface VariableRow extends VariableDoc {
  name: string
  /** `platform`, or the slice's owner (a service, or `journey`). */
  owner: string
  /** The modules that read it (empty for the platform's). */
  readBy: string[]
}

/** The README's configuration table: the platform's variables, then each slice's, as declared. */
export function variableRows(modules: readonly ServiceModule[] = allModules()): VariableRow[] {
  const rows: VariableRow[] = Object.entries(platformVariables).map(([name, doc]) => ({
    name,
    owner: 'platform',
    readBy: [],
    ...(doc as VariableDoc),
  }))
  for (const slice of allSettings(modules)) {
    const readBy = modules.filter((m) => m.settings?.includes(slice)).map((m) => m.name)
    for (const [name, doc] of Object.entries(slice.docs)) rows.push({ name, owner: slice.owner, readBy, ...doc })
  }
  return rows
}
