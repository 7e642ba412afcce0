import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { CustomerEventData } from '../../contracts/customer/events.ts'
import { ERASED } from '../../contracts/personal.ts'
import { AppError } from '../../platform/errors.ts'
import type { CommandMetadata, CommandResult } from '../../platform/es/command-handler.ts'
import { customerScope } from '../../platform/http/auth.ts'
import { documentRoute, problemResponses } from '../../platform/http/openapi.ts'
import { commandMetadata } from '../../platform/http/request.ts'
import type { SqlExecutor } from '../../platform/sql/port.ts'
import type { CustomerCommand, CustomerState } from '../domain/customer.ts'

/**
 * `DELETE /api/customers/:id/personal-data`: erases a customer's personal data by deleting their
 * data keys (crypto-shredding), in one transaction with the CustomerDataErased event that records
 * the request. The customer themself or an operator may ask; a service may not.
 */

export interface CustomerRoutesDeps {
  execute<T>(
    command: CustomerCommand,
    metadata: CommandMetadata,
    after: (tx: SqlExecutor, result: CommandResult<CustomerEventData, CustomerState>) => Promise<T>,
  ): Promise<{ result: CommandResult<CustomerEventData, CustomerState>; extra: T }>
  erase(tx: SqlExecutor, customerId: string): Promise<{ keysErased: number; erasedBefore: boolean }>
}

const params = z.object({
  id: z.string().trim().min(1, 'id must not be empty').max(200, 'id must be at most 200 characters'),
})

/** Where personal data lived, and what erasing the keys did to each. */
export const ERASED_WHERE = [
  'orders: delivery address and contact (event store, orders table, order read model, idempotent responses)',
  'messages that carried them: order-events, the outbox, retry and dead-letter topics, the embedded log',
] as const

export const COPIES_REMAIN = [
  `Sealed copies stay where they were written (the event store, Kafka topics and their retry and dead-letter topics, the embedded log, database backups): ciphertext that nothing can open without the deleted keys. Every read of them gives "${ERASED}".`,
  'A backup of the personal_data_keys table taken before now still holds the wrapped keys: keep backups no longer than your erasure deadline, or back that table up apart and expire it sooner.',
] as const

const erasureView = z.object({
  customerId: z.string(),
  erasedAt: z.iso.datetime(),
  requestedBy: z.string(),
  keysErased: z.number().int().describe('Data keys deleted now (0 when none was left)'),
  erasedBefore: z.boolean().describe('Whether an earlier request had already erased keys of this customer'),
  placeholder: z.literal(ERASED).describe('What every personal field of this customer reads as from now on'),
  erased: z.array(z.string()).describe('What was made unreadable'),
  copiesRemain: z.array(z.string()).describe('Where copies remain by design, and why they cannot be read'),
})

export function customerRoutes(deps: CustomerRoutesDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<ZodTypeProvider>()
    app.delete(
      '/api/customers/:id/personal-data',
      {
        schema: {
          summary: "Erase a customer's personal data",
          description:
            'Deletes the customer’s data keys (crypto-shredding) and records CustomerDataErased on customer-events. Every sealed copy of their delivery addresses and contacts, wherever it is, can no longer be opened: it reads as "[erased]". For the customer themself or an operator.',
          operationId: 'eraseCustomerPersonalData',
          tags: ['customers'],
          params,
          response: {
            200: erasureView,
            400: problemResponses[400],
            503: problemResponses[503],
          },
        },
        config: { auth: 'customer', swaggerTransform: documentRoute() },
      },
      async (request) => {
        const customerId = request.params.id
        const principal = request.principal
        const scope = customerScope(request)
        if (scope !== undefined && scope !== customerId) {
          throw new AppError('FORBIDDEN', 'a customer may erase only their own personal data', {
            details: { customerId },
          })
        }
        // Services fulfil orders; erasing is the customer's right or an operator's act, never a service's.
        if (principal && !principal.roles.includes('operator') && scope === undefined) {
          throw new AppError('FORBIDDEN', 'erasing personal data is for the customer themself or an operator', {
            details: { requiredRole: 'operator' },
          })
        }
        const requestedBy = principal?.id ?? 'anonymous'
        const { result, extra } = await deps.execute(
          { commandType: 'EraseCustomerData', customerId, requestedBy },
          commandMetadata(request),
          (tx) => deps.erase(tx, customerId),
        )
        const event = result.events[0]
        return {
          customerId,
          erasedAt: event?.occurredOn ?? new Date().toISOString(),
          requestedBy,
          keysErased: extra.keysErased,
          erasedBefore: extra.erasedBefore,
          placeholder: ERASED as typeof ERASED,
          erased: [...ERASED_WHERE],
          copiesRemain: [...COPIES_REMAIN],
        }
      },
    )
  }
}
