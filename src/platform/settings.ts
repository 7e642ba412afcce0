import { z } from 'zod'

/**
 * Settings a module owns: the variables it reads, each with a zod schema of its raw string and a
 * line of documentation, and how they become the module's settings. The platform knows no
 * service's variables. It reads every declared slice at start-up (a bad value stops it, naming the
 * variable and what it accepts), hands each module the slices it declared
 * (`context.settings.get(slice)`), and the README's configuration table is generated from the
 * declarations (`npm run docs:config`).
 */

export type Environment = Readonly<Record<string, string | undefined>>

/** What the README's configuration table says of a variable. */
export interface VariableDoc {
  /** The default as a reader would write it (`2000`, `(empty)`, `on when auth is on`). */
  default: string
  meaning: string
}

export interface SettingsSlice<Value> {
  /** Who reads it: a service's name, or a concern several services share (`journey`). */
  readonly owner: string
  /** Its variables, in the order the README lists them, with their documentation. */
  readonly docs: Readonly<Record<string, VariableDoc>>
  /** Reads the slice from `env`, adding what is wrong to `problems` (then the value is undefined). */
  read(env: Environment, problems: string[]): Value | undefined
}

export type SettingsValue<Slice> = Slice extends SettingsSlice<infer Value> ? Value : never

/**
 * A module's slice: `variables` are zod schemas of the raw strings (the helpers below give the
 * messages start-up prints), `docs` document every one of them (the type says so), and `build`
 * turns them into the module's settings, adding cross-variable problems to `problems`.
 */
export function defineSettings<Shape extends z.ZodRawShape, Value>(spec: {
  owner: string
  variables: Shape
  docs: { [Name in keyof Shape]: VariableDoc }
  /** `read` gives another slice's settings from the same environment (undefined when they are wrong). */
  build(
    values: z.output<z.ZodObject<Shape>>,
    problems: string[],
    read: <Other>(slice: SettingsSlice<Other>) => Other | undefined,
  ): Value
}): SettingsSlice<Value> {
  const schema = z.object(spec.variables)
  return {
    owner: spec.owner,
    docs: spec.docs as Record<string, VariableDoc>,
    read(env, problems) {
      const parsed = schema.safeParse(env)
      if (!parsed.success) {
        problems.push(...parsed.error.issues.map((issue) => issue.message))
        return undefined
      }
      const before = problems.length
      const value = spec.build(parsed.data, problems, (other) => other.read(env, []))
      return problems.length > before ? undefined : value
    },
  }
}

export class ConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** One slice read from `env`; a `ConfigError` names every wrong variable. */
export function loadSettings<Value>(slice: SettingsSlice<Value>, env: Environment = process.env): Value {
  const problems: string[] = []
  const value = slice.read(env, problems)
  if (value === undefined || problems.length > 0) throw new ConfigError(problems)
  return value
}

/** What is wrong with any of `slices` in `env` (each slice once, however many modules declare it). */
export function settingsProblems(slices: Iterable<SettingsSlice<unknown>>, env: Environment): string[] {
  const problems: string[] = []
  for (const slice of new Set(slices)) slice.read(env, problems)
  return [...new Set(problems)]
}

/** The slices a module declared, read once; asking for another is a programming error. */
export interface ModuleSettings {
  get<Value>(slice: SettingsSlice<Value>): Value
}

export function moduleSettings(module: string, slices: readonly SettingsSlice<unknown>[], env: Environment) {
  const values = new Map<SettingsSlice<unknown>, unknown>()
  for (const slice of slices) values.set(slice, loadSettings(slice, env))
  const settings: ModuleSettings = {
    get<Value>(slice: SettingsSlice<Value>): Value {
      if (!values.has(slice)) {
        throw new Error(`module ${module} reads the '${slice.owner}' settings without declaring them (settings: [...])`)
      }
      return values.get(slice) as Value
    },
  }
  return settings
}

// The schemas of raw strings that slices are made of: unset or blank means the default.

export const wholeNumber = <Fallback extends number | undefined>(
  name: string,
  min: number,
  max: number,
  fallback: Fallback,
) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return fallback
      const value = Number(raw)
      if (!Number.isInteger(value) || value < min || value > max) {
        ctx.addIssue({ code: 'custom', message: `${name} must be a whole number from ${min} to ${max} (got '${raw}')` })
        return z.NEVER
      }
      return value
    })

/** A rate from 0 to 1, such as a share of calls that fail. */
export const rate = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return 0
      const value = Number(raw)
      if (!Number.isFinite(value) || value < 0 || value > 1) {
        ctx.addIssue({ code: 'custom', message: `${name} must be a number from 0 to 1 (got '${raw}')` })
        return z.NEVER
      }
      return value
    })

/** A decimal amount (`1000` or `1000.00`) as minor units; unset means no limit. */
export const amountLimit = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined
      const match = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(raw.trim())
      if (!match) {
        ctx.addIssue({
          code: 'custom',
          message: `${name} must be a decimal amount with at most 2 decimals, such as 1000.00 (got '${raw}')`,
        })
        return z.NEVER
      }
      return Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'))
    })

/** A comma-separated list of names, blanks dropped. */
export const nameList = z
  .string()
  .optional()
  .transform((raw) =>
    raw === undefined
      ? []
      : raw
          .split(',')
          .map((name) => name.trim())
          .filter((name) => name !== ''),
  )

export const optionalText = z
  .string()
  .optional()
  .transform((raw) => (raw === undefined || raw.trim() === '' ? undefined : raw.trim()))

/** `on`/`off` (or true/false, 1/0, yes/no); unset is undefined, for the caller's default. */
export const onOff = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined
      const value = raw.trim().toLowerCase()
      if (['on', 'true', '1', 'yes'].includes(value)) return true
      if (['off', 'false', '0', 'no'].includes(value)) return false
      ctx.addIssue({ code: 'custom', message: `${name} must be 'on' or 'off' (got '${raw}')` })
      return z.NEVER
    })

/** One of `values`, or the default when unset. */
export const oneOf = <const Values extends readonly [string, ...string[]]>(
  name: string,
  values: Values,
  fallback: Values[number],
) =>
  z
    .enum(values, {
      error: (issue) =>
        `${name} must be ${values
          .map((v) => `'${v}'`)
          .join(', ')
          .replace(/, ([^,]*)$/, ' or $1')} (got '${issue.input}')`,
    })
    .default(fallback)
