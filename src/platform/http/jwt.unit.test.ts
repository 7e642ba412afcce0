import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { FastifyRequest } from 'fastify'
import { SignJWT } from 'jose'
import { AppError } from '../errors.ts'
import type { AuthRequirement } from './auth.ts'
import { createJwtAuthenticator } from './jwt.ts'

/**
 * The bearer-token verification with a shared secret (AUTH_JWT_SECRET): what passes, and each
 * reason a token is refused. The development-token path through HTTP is in auth.e2e.test.ts.
 */

const secret = 'a-development-secret-of-at-least-32-bytes'
const key = new TextEncoder().encode(secret)
const authenticate = createJwtAuthenticator({
  keys: { kind: 'secret', secret },
  algorithms: ['HS256'],
  issuer: 'https://id.example.test/',
  audience: 'orderflow',
  clockToleranceSeconds: 30,
  rolesClaim: 'roles',
})

const now = () => Math.floor(Date.now() / 1000)

function token(
  claims: Record<string, unknown> = {},
  options: {
    alg?: string
    key?: Uint8Array
    iss?: string
    aud?: string
    exp?: number
    nbf?: number
    sub?: string
  } = {},
): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? 'HS256' })
    .setIssuer(options.iss ?? 'https://id.example.test/')
    .setAudience(options.aud ?? 'orderflow')
    .setIssuedAt()
    .setExpirationTime(options.exp ?? now() + 600)
  if (options.sub !== '') jwt.setSubject(options.sub ?? 'alice')
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf)
  return jwt.sign(options.key ?? key)
}

const requestWith = (authorization?: string) =>
  ({ headers: authorization === undefined ? {} : { authorization } }) as unknown as FastifyRequest

async function refusal(authorization: string | undefined, requirement: AuthRequirement = 'customer') {
  try {
    await authenticate(requestWith(authorization), requirement)
  } catch (error) {
    assert.ok(error instanceof AppError, String(error))
    return error
  }
  assert.fail('the token was accepted')
}

describe('bearer JWT verification', () => {
  it('accepts a valid token: the subject is the caller, roles from the roles claim', async () => {
    const principal = await authenticate(requestWith(`Bearer ${await token({ roles: ['operator'] })}`), 'operator')
    assert.deepEqual(principal, { id: 'alice', roles: ['operator'] })
  })

  it('reads a token without roles as a customer, and ignores roles it does not know', async () => {
    assert.deepEqual((await authenticate(requestWith(`Bearer ${await token()}`), 'customer'))?.roles, ['customer'])
    const unknown = await token({ roles: ['admin', 'root'] })
    assert.equal((await refusal(`Bearer ${unknown}`)).code, 'FORBIDDEN')
    const scoped = await token({ roles: 'customer operator' })
    assert.deepEqual((await authenticate(requestWith(`Bearer ${scoped}`), 'operator'))?.roles, ['customer', 'operator'])
  })

  it('refuses what does not verify: another key, another algorithm, issuer, audience, no subject', async () => {
    const cases = {
      'another key': await token({}, { key: new TextEncoder().encode('another-secret-of-at-least-32-bytes!!') }),
      'HS512, not configured': await token({}, { alg: 'HS512' }),
      'another issuer': await token({}, { iss: 'https://evil.example.test/' }),
      'another audience': await token({}, { aud: 'someone-else' }),
      'no subject': await token({}, { sub: '' }),
      'alg none': `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(`{"sub":"alice","exp":${now() + 600}}`).toString('base64url')}.`,
    }
    for (const [name, jwt] of Object.entries(cases)) {
      assert.equal((await refusal(`Bearer ${jwt}`)).code, 'UNAUTHENTICATED', name)
    }
  })

  it('checks expiry and not-before with the configured tolerance', async () => {
    const justExpired = await token({}, { exp: now() - 10 })
    assert.ok(await authenticate(requestWith(`Bearer ${justExpired}`), 'customer'), 'within the 30 s tolerance')
    const expired = await refusal(`Bearer ${await token({}, { exp: now() - 120 })}`)
    assert.equal(expired.code, 'UNAUTHENTICATED')
    assert.match(expired.message, /expired/)
    const notYet = await refusal(`Bearer ${await token({}, { nbf: now() + 120 })}`)
    assert.equal(notYet.code, 'UNAUTHENTICATED')
  })

  it('refuses a missing or non-bearer Authorization with 401, and a role it lacks with 403', async () => {
    assert.equal((await refusal(undefined)).code, 'UNAUTHENTICATED')
    assert.equal((await refusal('Basic YWxpY2U6cHc=')).code, 'UNAUTHENTICATED')
    assert.equal((await refusal(`Bearer ${await token()}`, 'service')).code, 'FORBIDDEN')
    assert.equal((await refusal(`Bearer ${await token({ roles: ['service'] })}`, 'operator')).code, 'FORBIDDEN')
  })

  it('never fails a public route: a valid token names the caller, anything else is anonymous', async () => {
    assert.equal(await authenticate(requestWith(), 'public'), null)
    assert.equal(await authenticate(requestWith('Bearer garbage'), 'public'), null)
    assert.equal((await authenticate(requestWith(`Bearer ${await token()}`), 'public'))?.id, 'alice')
  })
})
