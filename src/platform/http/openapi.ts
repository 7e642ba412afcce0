import type { SwaggerTransform } from '@fastify/swagger'
import type { FastifySchema } from 'fastify'
import { createJsonSchemaTransform } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { decimalAmount } from '../../contracts/money.ts'

/**
 * How routes appear in `GET /openapi.json`, for every service module: the request schemas are the
 * contracts' zod schemas, documented as their wire input; this module adds what zod cannot say by
 * itself (problem responses, response headers, decimal amounts as numbers).
 */

/**
 * A decimal amount is a codec: the wire carries `12.99`, the domain 1299 minor units. Left alone
 * the input side documents as "number or string"; clients are meant to send numbers (the seeds do),
 * so that is what is documented. Numeric strings still work.
 */
const decimalAmountDocument = {
  type: 'number',
  minimum: 0,
  description: 'Decimal amount with at most 2 decimal places, e.g. 12.99',
  examples: [12.99],
}

const zodTransform = createJsonSchemaTransform({
  skipList: [],
  zodToJsonConfig: {
    override: (ctx) => {
      if (ctx.zodSchema !== decimalAmount) return
      const target = ctx.jsonSchema as Record<string, unknown>
      for (const key of Object.keys(target)) delete target[key]
      Object.assign(target, decimalAmountDocument)
    },
  },
})

/** An RFC 9457 problem, as `platform/http/problem.ts` writes it. */
export const problemDocument = z.looseObject({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  instance: z.string().optional(),
  code: z.string().describe('Stable error code, e.g. VALIDATION_FAILED, NOT_FOUND, VERSION_CONFLICT'),
  resource: z.string().optional().describe('With NOT_FOUND: the kind of resource that does not exist'),
  errors: z
    .array(z.object({ field: z.string(), message: z.string() }))
    .optional()
    .describe("One entry per invalid field, e.g. { field: 'items.0.price', message: 'must not be negative' }"),
})

/** A problem+json response, for a route's `schema.response`. */
export const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: problemDocument } },
})

export const problemResponses = {
  400: problemResponse('The request is invalid: a field, the body, a query parameter or a header'),
  404: problemResponse('No resource with this id (NOT_FOUND, naming the resource)'),
  409: problemResponse(
    'The resource changed since the If-Match version (VERSION_CONFLICT), or its state does not allow this (INVALID_TRANSITION), or the change would alter an order total that is fixed (ORDER_TOTAL_FIXED)',
  ),
  422: problemResponse('The Idempotency-Key was used before with a different request (IDEMPOTENCY_KEY_REUSED)'),
  503: problemResponse(
    'The database is unavailable or busy (DATABASE_UNAVAILABLE: unreachable, out of connections, disk or memory, or a deadlock that persisted), or the server is handling as many requests as it takes (OVERLOADED: nothing was done); retry after Retry-After seconds',
  ),
} as const

/** A response header as @fastify/swagger reads it: a JSON schema whose description it lifts out. */
export interface ResponseHeaderDocument {
  type: 'string'
  description: string
}

const header = (description: string): ResponseHeaderDocument => ({ type: 'string', description })

export const responseHeaders = {
  etag: header('The version as a strong entity tag, e.g. "3"; send it back in If-Match'),
  location: header('Where the created resource is'),
} as const

/**
 * A route-level OpenAPI transform (`config.swaggerTransform`): the zod schemas as JSON schema, and
 * the given response headers documented per status.
 */
export function documentRoute(headersByStatus: Record<number, Record<string, ResponseHeaderDocument>> = {}) {
  const transform: SwaggerTransform = (input) => {
    const transformed = zodTransform(input as Parameters<typeof zodTransform>[0])
    const response = (transformed.schema as FastifySchema).response as
      | Record<string, Record<string, unknown>>
      | undefined
    for (const [status, headers] of Object.entries(headersByStatus)) {
      const documented = response?.[status]
      // @fastify/swagger reads a response's `headers` keyword as its response headers.
      if (documented) documented.headers = headers
    }
    return transformed
  }
  return transform
}
