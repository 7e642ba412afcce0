import type { FastifyRequest } from 'fastify'
import { type CryptoKey, createRemoteJWKSet, errors, type JWTPayload, jwtVerify, type KeyObject } from 'jose'
import { AppError } from '../errors.ts'
import { type Authenticator, authorize, type Principal, ROLES } from './auth.ts'

/**
 * Bearer JWTs, verified with jose. The verification is as strict as the configuration: only the
 * configured algorithms (so `alg: none`, and an HS256 token against an RSA key, are refused before
 * any key is tried), the configured issuer and audience, a `sub` and an `exp`, and `exp`/`nbf`
 * checked with a small clock tolerance.
 */

/** Where the verification keys come from. */
export type JwtKeySource =
  /** The identity provider's JWKS endpoint (keys are fetched, cached and refreshed on rotation). */
  | { kind: 'jwks'; url: string }
  /** A shared secret (HS256/384/512), for development and single-party deployments. */
  | { kind: 'secret'; secret: string }
  /** A public key held in memory (development tokens). */
  | { kind: 'key'; key: CryptoKey | KeyObject }

export interface JwtOptions {
  keys: JwtKeySource
  /** Accepted `alg` values; nothing else is accepted. */
  algorithms: readonly string[]
  issuer?: string | undefined
  audience?: string | undefined
  /** Tolerance for `exp` and `nbf`, in seconds. */
  clockToleranceSeconds: number
  /** The claim holding the roles: an array, or a space-separated string (like OAuth's `scope`). */
  rolesClaim: string
}

const BEARER = /^Bearer[ \t]+([A-Za-z0-9._~+/-]+=*)[ \t]*$/i

export function createJwtAuthenticator(options: JwtOptions): Authenticator {
  const key =
    options.keys.kind === 'jwks'
      ? createRemoteJWKSet(new URL(options.keys.url))
      : options.keys.kind === 'secret'
        ? new TextEncoder().encode(options.keys.secret)
        : options.keys.key
  const verifyOptions = {
    algorithms: [...options.algorithms],
    clockTolerance: options.clockToleranceSeconds,
    requiredClaims: ['sub', 'exp'],
    ...(options.issuer ? { issuer: options.issuer } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
  }

  const verify = async (token: string): Promise<Principal> => {
    let payload: JWTPayload
    try {
      // jose's two overloads (a key, or a JWKS getter) take the same options.
      payload =
        typeof key === 'function'
          ? (await jwtVerify(token, key, verifyOptions)).payload
          : (await jwtVerify(token, key, verifyOptions)).payload
    } catch (error) {
      throw rejection(error)
    }
    const subject = payload.sub
    if (typeof subject !== 'string' || subject.length === 0 || subject.length > 200) {
      throw new AppError('UNAUTHENTICATED', 'the bearer token has no usable subject (sub)')
    }
    return { id: subject, roles: rolesOf(payload[options.rolesClaim]) }
  }

  return async (request: FastifyRequest, requirement) => {
    const token = bearerToken(request)
    if (requirement === 'public') {
      // Public routes never fail on credentials; a valid token only adds who is calling.
      if (token === null) return null
      return verify(token).catch(() => null)
    }
    if (token === null) {
      throw new AppError(
        'UNAUTHENTICATED',
        request.headers.authorization === undefined
          ? 'this route requires a bearer token: send Authorization: Bearer <token>'
          : 'the Authorization header must be Bearer <token>',
      )
    }
    const principal = await verify(token)
    authorize(principal, requirement)
    return principal
  }
}

function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization
  if (header === undefined) return null
  return BEARER.exec(header)?.[1] ?? null
}

/**
 * The roles the token grants, among the known ones. A token that names none is a customer's:
 * identity providers issue customer tokens without a roles claim, and customer is the least a
 * verified caller can be.
 */
function rolesOf(claim: unknown): string[] {
  if (claim === undefined) return ['customer']
  const named =
    typeof claim === 'string'
      ? claim.split(/\s+/)
      : Array.isArray(claim)
        ? claim.filter((r): r is string => typeof r === 'string')
        : []
  return [...new Set(named.filter((role) => (ROLES as readonly string[]).includes(role)))]
}

/**
 * Why a token was refused, as a 401 that says enough to fix a client (expired, wrong audience)
 * without helping a forger (a bad signature and an unknown key read the same). Keys that cannot be
 * fetched are not the caller's fault: a 503, retryable.
 */
function rejection(error: unknown): AppError {
  if (error instanceof errors.JWTExpired) {
    return new AppError('UNAUTHENTICATED', 'the bearer token has expired', { cause: error })
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new AppError('UNAUTHENTICATED', `the bearer token is not valid here: claim ${error.claim} ${error.reason}`, {
      cause: error,
    })
  }
  // jose reports a JWKS endpoint that answers badly with its generic error, and one that does not
  // answer with JWKSTimeout or the fetch's own error.
  const keysUnavailable =
    error instanceof errors.JWKSTimeout || !(error instanceof errors.JOSEError) || error.code === errors.JOSEError.code
  if (keysUnavailable) {
    return new AppError(
      'GATEWAY_UNAVAILABLE',
      'the keys that verify bearer tokens cannot be fetched now; retry later',
      {
        cause: error,
      },
    )
  }
  return new AppError('UNAUTHENTICATED', 'the bearer token is not valid', { cause: error })
}
