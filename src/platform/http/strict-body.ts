import { z } from 'zod'

/**
 * Request bodies are strict: a property the route does not know answers 400 naming it, instead of
 * being dropped without a word (a client that sends `deliveryAddress` must learn it is not kept).
 * The contracts declare bodies as ordinary objects, because the same shapes also describe consumed
 * messages, which stay lenient (newer producers may add fields). `strictDeep` makes a body schema
 * strict at every level (objects inside arrays, optionals, defaults, unions and pipes), keeping each
 * object's refinements; `registerApi` applies it to every route's body, so the OpenAPI document
 * says `additionalProperties: false` too.
 */
export function strictDeep<T extends z.ZodType>(schema: T): T {
  return convert(schema) as T
}

// The zod 4 definitions this walks; anything else (strings, numbers, enums, literals) is a leaf.
type Def = Record<string, unknown> & { type: string }

function convert(schema: z.ZodType): z.ZodType {
  const def = schema._zod.def as unknown as Def
  // A schema without an object inside stays the same instance: the OpenAPI and AsyncAPI generators
  // recognise some by identity (decimal amounts, timestamps).
  const rebuilt = (changes: Record<string, unknown>, changed: boolean) =>
    changed ? schema.clone({ ...def, ...changes } as never) : schema
  switch (def.type) {
    case 'object': {
      const shape = def.shape as Record<string, z.ZodType>
      const strictShape = Object.fromEntries(Object.entries(shape).map(([key, value]) => [key, convert(value)]))
      // `catchall: never` is what z.strictObject is; checks (refine) live in def and are kept.
      return schema.clone({ ...def, shape: strictShape, catchall: def.catchall ?? z.never() } as never)
    }
    case 'array': {
      const element = convert(def.element as z.ZodType)
      return rebuilt({ element }, element !== def.element)
    }
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
    case 'nonoptional': {
      const innerType = convert(def.innerType as z.ZodType)
      return rebuilt({ innerType }, innerType !== def.innerType)
    }
    case 'pipe': {
      const input = convert(def.in as z.ZodType)
      return rebuilt({ in: input }, input !== def.in)
    }
    case 'union': {
      const options = (def.options as z.ZodType[]).map(convert)
      return rebuilt(
        { options },
        options.some((o, i) => o !== (def.options as z.ZodType[])[i]),
      )
    }
    default:
      return schema
  }
}
