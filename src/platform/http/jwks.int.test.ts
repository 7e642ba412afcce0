import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { FastifyRequest } from 'fastify'
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { loadConfig } from '../config.ts'
import { AppError } from '../errors.ts'
import { createJwtAuthenticator } from './jwt.ts'

/**
 * Tokens verified against an identity provider's JWKS endpoint (AUTH_JWKS_URL), served here by a
 * small HTTP server on loopback: the key is found by its kid, a token of another key is refused,
 * and keys that cannot be fetched are a retryable 503, not the caller's 401.
 */

const ISSUER = 'https://id.example.test/'
const AUDIENCE = 'orderflow'

describe('bearer JWTs against a JWKS endpoint', () => {
  let server: Server
  let url: string
  let signingKey: CryptoKey
  let otherKey: CryptoKey
  let available = true

  before(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true })
    signingKey = pair.privateKey
    otherKey = (await generateKeyPair('RS256')).privateKey
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'key-1', alg: 'RS256', use: 'sig' }
    server = createServer((_request, response) => {
      if (!available) {
        response.writeHead(503).end()
        return
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }))
    })
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  })
  after(() => new Promise<void>((done) => server?.close(() => done())))

  const authenticatorFor = (jwksUrl: string) => {
    const jwt = loadConfig({ AUTH_JWKS_URL: jwksUrl, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE }).auth.jwt
    assert.ok(jwt)
    return createJwtAuthenticator(jwt)
  }
  const sign = (key: CryptoKey, kid = 'key-1') =>
    new SignJWT({ roles: ['operator'] })
      .setProtectedHeader({ alg: 'RS256', kid })
      .setSubject('ops-1')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(key)
  const request = (token: string) => ({ headers: { authorization: `Bearer ${token}` } }) as unknown as FastifyRequest
  const refusal = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => assert.fail('accepted'),
      (e: unknown) => e,
    )
    assert.ok(error instanceof AppError, String(error))
    return error.code
  }

  it('accepts a token signed by the published key', async () => {
    const principal = await authenticatorFor(url)(request(await sign(signingKey)), 'operator')
    assert.deepEqual(principal, { id: 'ops-1', roles: ['operator'] })
  })

  it('refuses a token signed by another key, under the published kid or another', async () => {
    const authenticate = authenticatorFor(url)
    assert.equal(await refusal(authenticate(request(await sign(otherKey)), 'operator')), 'UNAUTHENTICATED')
    assert.equal(await refusal(authenticate(request(await sign(otherKey, 'key-2')), 'operator')), 'UNAUTHENTICATED')
  })

  it('answers 503 (retryable) while the keys cannot be fetched', async () => {
    available = false
    try {
      const code = await refusal(authenticatorFor(url)(request(await sign(signingKey)), 'operator'))
      assert.equal(code, 'GATEWAY_UNAVAILABLE')
    } finally {
      available = true
    }
  })
})
