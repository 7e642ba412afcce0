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
  switch (def.type) {
    case 'object': {
      const shape = def.shape as Record<string, z.ZodType>
      const strictShape = Object.fromEntries(Object.entries(shape).map(([key, value]) => [key, convert(value)]))
      // `catchall: never` is what z.strictObject is; checks (refine) live in def and are kept.
      return schema.clone({ ...def, shape: strictShape, catchall: def.catchall ?? z.never() } as never)
    }
    case 'array':
      return schema.clone({ ...def, element: convert(def.element as z.ZodType) } as never)
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
    case 'nonoptional':
      return schema.clone({ ...def, innerType: convert(def.innerType as z.ZodType) } as never)
    case 'pipe':
      return schema.clone({ ...def, in: convert(def.in as z.ZodType) } as never)
    case 'union':
      return schema.clone({ ...def, options: (def.options as z.ZodType[]).map(convert) } as never)
    default:
      return schema
  }
}
