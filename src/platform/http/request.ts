import { randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { z } from 'zod'
import type { CommandMetadata } from '../es/command-handler.ts'
import { activeTraceHeaders } from '../tracing.ts'

/**
 * What every command route reads from its request, the same way in every service: the correlation
 * id, W3C trace context (generated when the caller sent none, so every event carries one), the
 * `If-Match` version and the `Idempotency-Key`.
 */

const ifMatchPattern = /^(?:W\/)?(?:"(\d{1,9})"|(\d{1,9}))$/
const traceparentPattern = /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/

// Loose: Fastify replaces `request.headers` with what the schema returns, so unknown headers must
// survive it.
export const requestHeaders = z.looseObject({
  'x-correlation-id': z
    .string()
    .min(1)
    .max(200, 'must be at most 200 characters')
    .optional()
    .describe("Recorded on the events; defaults to the request's id"),
  traceparent: z
    .string()
    .optional()
    .describe('W3C trace context, carried to the published events; a new trace is started without it'),
  tracestate: z.string().optional(),
})

/** Headers of a route that changes an existing resource. */
export const commandHeaders = requestHeaders.extend({
  'if-match': z
    .string()
    .trim()
    .refine((value) => value === '*' || ifMatchPattern.test(value), 'must be one version tag, like "3"')
    .optional()
    .describe('The version the change is based on ("3", 3 or W/"3"); a different current version is a 409'),
})

/** Headers of a route that creates a resource. */
export const createHeaders = requestHeaders.extend({
  'idempotency-key': z
    .string()
    .min(1, 'must not be empty')
    .max(255, 'must be at most 255 characters')
    .optional()
    .describe('Retrying with the same key and body returns the first response instead of creating another'),
})

type KnownHeaders = z.output<typeof requestHeaders> & { 'if-match'?: string | undefined }

/** A new W3C traceparent: version 00, random trace and span ids, sampled. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`
}

/** The metadata a command from this request carries into its events. */
export function commandMetadata(request: FastifyRequest): CommandMetadata {
  const headers = request.headers as KnownHeaders
  const metadata: CommandMetadata = { correlationId: headers['x-correlation-id'] ?? request.id }
  const expectedVersion = versionFrom(headers['if-match'])
  if (expectedVersion !== undefined) metadata.expectedVersion = expectedVersion
  // With tracing on, the request's span (@fastify/otel's, a child of the caller's traceparent):
  // what the command writes is part of the request's trace.
  const traced = activeTraceHeaders()
  if (traced.traceparent) return { ...metadata, ...traced }
  // An invalid traceparent is replaced, not rejected: tracing must never fail a request (W3C).
  if (headers.traceparent !== undefined && traceparentPattern.test(headers.traceparent)) {
    metadata.traceparent = headers.traceparent
    if (headers.tracestate !== undefined) metadata.tracestate = headers.tracestate
  } else {
    metadata.traceparent = newTraceparent()
  }
  return metadata
}

/** The version in an If-Match header; `*` (any version) and no header check nothing. */
export function versionFrom(ifMatch: string | undefined): number | undefined {
  const match = ifMatch === undefined ? null : ifMatchPattern.exec(ifMatch)
  if (!match) return undefined
  return Number(match[1] ?? match[2])
}

/** A strong entity tag for a version. */
export const etagOf = (version: number): string => `"${version}"`

/** Who is calling, for scoping idempotency keys (and, with authentication on, everything else). */
export function clientOf(request: FastifyRequest): string {
  return request.principal?.id ?? 'anonymous'
}
