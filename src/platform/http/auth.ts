import type { FastifyInstance, FastifyRequest } from 'fastify'

/**
 * The authentication seam: every route declares who may call it in its route config
 * (`config: { auth: 'customer' }`), and one hook reads that declaration and asks the configured
 * authenticator. Routes never check credentials themselves, so the rule is applied the same way
 * everywhere and a route without a declaration is visible in one place.
 */

/**
 * - `public`: anyone (health, documents);
 * - `customer`: a customer acting on their own resources;
 * - `service`: another service of the system (fulfilment transitions);
 * - `operator`: operations (dead letters, replay, audit).
 */
export type AuthRequirement = 'public' | 'customer' | 'service' | 'operator'

export interface Principal {
  /** The client's stable id (a customer id, a service name, an operator's subject). */
  id: string
  roles: readonly string[]
}

/** Resolves the caller for a route's requirement, or throws a 401/403 `AppError`. */
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

export function installAuthSeam(app: FastifyInstance, authenticate: Authenticator): void {
  app.decorateRequest('principal', null)
  app.addHook('onRequest', async (request) => {
    const requirement = request.routeOptions.config?.auth ?? 'public'
    request.principal = await authenticate(request, requirement)
  })
}
