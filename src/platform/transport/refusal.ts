/**
 * Whether the broker refused a message for good: no retry, however patient, can land it, because
 * the refusal is about the message itself (its size, its content) or its topic (the name, this
 * principal's right to write it), and the broker will answer the same tomorrow. The outbox relay
 * sets such a row aside instead of retrying it forever behind every row that follows it.
 *
 * Deliberately left out, although Kafka flags them as not retryable: refusals of the producer or
 * the whole cluster rather than of one message (CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUIRED_ACKS,
 * UNSUPPORTED_COMPRESSION_TYPE, UNSUPPORTED_FOR_MESSAGE_FORMAT, TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
 * which would set every row aside at once; and INVALID_TIMESTAMP, which is about this process's
 * clock (the client stamps a record when it sends it), not the message. Those keep blocking, and
 * alerting, until someone fixes the setup. CORRUPT_MESSAGE is retryable by Kafka's own account
 * (a checksum broken on the way).
 */
export const PERMANENT_REFUSALS: ReadonlySet<string> = new Set([
  // The record (batch) is larger than the topic's max.message.bytes.
  'MESSAGE_TOO_LARGE',
  // The record batch is larger than the topic's segment size.
  'RECORD_LIST_TOO_LARGE',
  // The broker's validation rejected the record (a compacted topic without a key, a broker-side policy).
  'INVALID_RECORD',
  // The topic's name is not one Kafka accepts, or it is an internal topic.
  'INVALID_TOPIC_EXCEPTION',
  // This principal may not write the topic (its ACLs).
  'TOPIC_AUTHORIZATION_FAILED',
])

/** Where nested errors hide: a nested error tree is never this deep unless it is a cycle. */
const MAX_DEPTH = 8

/**
 * The Kafka protocol error id (`MESSAGE_TOO_LARGE`, …) when `error` says the broker refused the
 * message for good, else undefined. Walks the whole tree: @platformatic/kafka reports a refused
 * partition of a produce request as a `ProtocolError` (with `apiId` and `canRetry`) inside a
 * `ResponseError`, inside the `MultipleErrors` of the send (one per broker written to), possibly
 * inside the `MultipleErrors` of its retries; other wrappers hold theirs in `cause`. One refused
 * partition is enough, whatever else failed beside it: the caller finds out which message it was.
 */
export function refusalOf(error: unknown): string | undefined {
  return findRefusal(error)?.reason
}

/** As `refusalOf`, with the broker's words for it (or Kafka's text for the code). */
export function findRefusal(error: unknown): { reason: string; message: string } | undefined {
  const seen = new Set<unknown>()
  const walk = (node: unknown, depth: number): { reason: string; message: string } | undefined => {
    if (node === null || typeof node !== 'object' || depth > MAX_DEPTH || seen.has(node)) return undefined
    seen.add(node)
    const { apiId, canRetry, serverErrorMessage, message, errors, cause } = node as {
      apiId?: unknown
      canRetry?: unknown
      serverErrorMessage?: unknown
      message?: unknown
      errors?: unknown
      cause?: unknown
    }
    // A client that says a retry can help knows something about this error that its code does not.
    if (typeof apiId === 'string' && PERMANENT_REFUSALS.has(apiId) && canRetry !== true) {
      const words = typeof serverErrorMessage === 'string' && serverErrorMessage !== '' ? serverErrorMessage : message
      return { reason: apiId, message: typeof words === 'string' && words !== '' ? words : apiId }
    }
    for (const nested of Array.isArray(errors) ? errors : []) {
      const found = walk(nested, depth + 1)
      if (found) return found
    }
    return walk(cause, depth + 1)
  }
  return walk(error, 0)
}
