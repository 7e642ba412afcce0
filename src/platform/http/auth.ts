import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AppError, isAppError } from '../errors.ts'

/**
 * The authentication seam: every route declares who may call it in its route config
 * (`config: { auth: 'customer' }`), and one hook reads that declaration and asks the configured
 * authenticator. Routes never check credentials themselves, so the rule is applied the same way
 * everywhere and a route without a declaration is visible in one place.
 *
 * Function-level rules (which role a route needs) live here, in `authorize`. Object-level rules
 * (a customer sees only their own orders and carts) are the routes' business, through
 * `customerScope`: only a route knows which resource it is about.
 */

/**
 * - `public`: anyone (health, documents);
 * - `customer`: a customer acting on their own resources (services and operators act on anyone's);
 * - `service`: another service of the system (fulfilment transitions);
 * - `operator`: operations (dead letters, replay, audit, metrics).
 */
export type AuthRequirement = 'public' | 'customer' | 'service' | 'operator'

export const AUTH_REQUIREMENTS: readonly AuthRequirement[] = ['public', 'customer', 'service', 'operator']

/** The roles a token may carry; any other role in a token is ignored. */
export type Role = 'customer' | 'service' | 'operator'
export const ROLES: readonly Role[] = ['customer', 'service', 'operator']

export interface Principal {
  /** The client's stable id (a customer id, a service name, an operator's subject). */
  id: string
  roles: readonly string[]
}

/**
 * Resolves the caller for a route's requirement, or throws a 401/403 `AppError`. On a public route
 * it returns the caller when valid credentials came along, and null otherwise (never a 401).
 */
export type Authenticator = (request: FastifyRequest, requirement: AuthRequirement) => Promise<Principal | null>

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; null where the route is public or authentication is off. */
    principal: Principal | null
  }
  interface FastifyContextConfig {
    auth?: AuthRequirement
  }
}

/** Authentication off: every caller is anonymous and allowed (the embedded default on loopback). */
export const allowEveryone: Authenticator = async () => null

/**
 * Whether `principal` may call a route that requires `requirement`, as a 403 when not. Roles do not
 * nest: an operator is not a service (fulfilment happens through commands and events, not by hand),
 * but every known role may use the customer routes, which scope customers to their own resources.
 */
export function authorize(principal: Principal, requirement: AuthRequirement): void {
  const allowed =
    requirement === 'public' ||
    (requirement === 'customer' ? principal.roles.some((role) => ROLES.includes(role as Role)) : false) ||
    principal.roles.includes(requirement)
  if (!allowed) {
    throw new AppError('FORBIDDEN', `this route requires the ${requirement} role`, {
      details: { requiredRole: requirement },
    })
  }
}

/**
 * The customer whose resources the caller may reach: their own id for a customer; undefined (any
 * customer's) for services, operators, and when authentication is off. Routes compare it with the
 * resource's owner and answer another customer's resource exactly as a missing one (404), so ids
 * cannot be probed.
 */
export function customerScope(request: FastifyRequest): string | undefined {
  const principal = request.principal
  if (!principal) return undefined
  return principal.roles.includes('service') || principal.roles.includes('operator') ? undefined : principal.id
}

/** Whether the caller may see resources of `customerId` (see `customerScope`). */
export function mayAccess(request: FastifyRequest, customerId: string): boolean {
  const scope = customerScope(request)
  return scope === undefined || scope === customerId
}

export function installAuthSeam(app: FastifyInstance, authenticate: Authenticator): void {
  app.decorateRequest('principal', null)
  app.addHook('onRequest', async (request, reply) => {
    const requirement = request.routeOptions.config?.auth ?? 'public'
    try {
      request.principal = await authenticate(request, requirement)
    } catch (error) {
      // RFC 6750: a 401 says which scheme it wants, and whether the token that came was the problem.
      if (isAppError(error, 'UNAUTHENTICATED')) {
        const tokenSent = request.headers.authorization !== undefined
        reply.header('www-authenticate', `Bearer realm="orderflow"${tokenSent ? ', error="invalid_token"' : ''}`)
      }
      throw error
    }
  })
}
