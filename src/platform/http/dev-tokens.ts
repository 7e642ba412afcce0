import { generateKeyPair, SignJWT } from 'jose'
import type { Authenticator, Role } from './auth.ts'
import { createJwtAuthenticator } from './jwt.ts'

/**
 * Development tokens (`AUTH=dev`): a key pair generated at start, held in memory only, signs tokens
 * that this process's authenticator accepts. It is the real verification path (algorithm, issuer,
 * audience, expiry), with a local key instead of an identity provider; tests use it the same way.
 * A restart makes a new key, and the old tokens stop working.
 */

export const DEVELOPMENT_ISSUER = 'orderflow-development'
export const DEVELOPMENT_AUDIENCE = 'orderflow'
const ALGORITHM = 'ES256'

export interface IssueOptions {
  /** Lifetime in seconds (default 12 hours); negative makes an already expired token. */
  expiresInSeconds?: number
  /** Seconds from now before which the token is not valid (`nbf`). */
  notBeforeSeconds?: number
}

export interface DevelopmentTokens {
  authenticate: Authenticator
  /** A token for `subject` with `roles` (none: a customer token without a roles claim). */
  issue(subject: string, roles?: readonly Role[], options?: IssueOptions): Promise<string>
}

export async function createDevelopmentTokens(
  options: { clockToleranceSeconds?: number } = {},
): Promise<DevelopmentTokens> {
  const { privateKey, publicKey } = await generateKeyPair(ALGORITHM)
  const authenticate = createJwtAuthenticator({
    keys: { kind: 'key', key: publicKey },
    algorithms: [ALGORITHM],
    issuer: DEVELOPMENT_ISSUER,
    audience: DEVELOPMENT_AUDIENCE,
    clockToleranceSeconds: options.clockToleranceSeconds ?? 5,
    rolesClaim: 'roles',
  })
  return {
    authenticate,
    async issue(subject, roles, issueOptions = {}) {
      const now = Math.floor(Date.now() / 1000)
      const jwt = new SignJWT(roles ? { roles: [...roles] } : {})
        .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
        .setSubject(subject)
        .setIssuer(DEVELOPMENT_ISSUER)
        .setAudience(DEVELOPMENT_AUDIENCE)
        .setIssuedAt(now)
        .setExpirationTime(now + (issueOptions.expiresInSeconds ?? 12 * 3600))
      if (issueOptions.notBeforeSeconds !== undefined) jwt.setNotBefore(now + issueOptions.notBeforeSeconds)
      return jwt.sign(privateKey)
    },
  }
}

/** The subjects of the tokens `AUTH=dev` prints at start. */
export const DEVELOPMENT_SUBJECTS = {
  customer: 'customer-1',
  otherCustomer: 'customer-2',
  service: 'service-1',
  operator: 'operator-1',
} as const

/**
 * What `AUTH=dev` prints at start: a customer, a service and an operator token as shell exports,
 * and curl commands that use them.
 */
export async function developmentTokenNotice(tokens: DevelopmentTokens, address: string): Promise<string> {
  const [customer, otherCustomer, service, operator] = await Promise.all([
    tokens.issue(DEVELOPMENT_SUBJECTS.customer, ['customer']),
    tokens.issue(DEVELOPMENT_SUBJECTS.otherCustomer, ['customer']),
    tokens.issue(DEVELOPMENT_SUBJECTS.service, ['service']),
    tokens.issue(DEVELOPMENT_SUBJECTS.operator, ['operator']),
  ])
  return [
    '',
    'AUTH=dev: development tokens, signed with a key generated at start (valid 12 h, for this process only):',
    `  export CUSTOMER_TOKEN=${customer}   # sub ${DEVELOPMENT_SUBJECTS.customer}, role customer`,
    `  export OTHER_CUSTOMER_TOKEN=${otherCustomer}   # sub ${DEVELOPMENT_SUBJECTS.otherCustomer}, role customer (sees none of customer-1's orders)`,
    `  export SERVICE_TOKEN=${service}   # sub ${DEVELOPMENT_SUBJECTS.service}, role service`,
    `  export OPERATOR_TOKEN=${operator}   # sub ${DEVELOPMENT_SUBJECTS.operator}, role operator`,
    'Then, for example:',
    `  curl -X POST ${address}/api/orders -H "Authorization: Bearer $CUSTOMER_TOKEN" -H 'Content-Type: application/json' \\`,
    `    -d '{"customerId":"${DEVELOPMENT_SUBJECTS.customer}","items":[{"productId":"p-1","price":12.5,"quantity":2}]}'`,
    `  curl ${address}/api/orders -H "Authorization: Bearer $CUSTOMER_TOKEN"`,
    `  curl ${address}/api/orders/<id> -H "Authorization: Bearer $OTHER_CUSTOMER_TOKEN"   # 404: another customer's order`,
    `  curl ${address}/metrics -H "Authorization: Bearer $OPERATOR_TOKEN"`,
    `The dashboard, signed in as the operator: ${address}/dashboard#token=${operator}`,
    '',
  ].join('\n')
}
