import { customerEvents, customerStreamId } from '../contracts/customer/events.ts'
import { stateTable } from '../platform/es/state-table.ts'
import { defineService } from '../platform/service.ts'
import { migrationsBeside } from '../platform/sql/migrations.ts'
import { CUSTOMER_STREAM_TYPE, type CustomerCommand, type CustomerState, customerDecider } from './domain/customer.ts'
import { customerRoutes } from './http/routes.ts'

/**
 * The customer service: a customer's right to erasure. `DELETE /api/customers/:id/personal-data`
 * deletes the customer's data keys and records CustomerDataErased on `customer-events`; the order
 * read model drops the sealed fields it kept of that customer when it sees the event.
 */

const customers = stateTable<CustomerState>({
  table: 'customers',
  initialState: () => null,
  locks: false,
  columns: { customer_id: { type: 'text', of: (customer) => customer.customerId } },
})

export const customerService = defineService({
  name: 'customer',
  migrations: migrationsBeside(import.meta.url),
  aggregate: {
    streamType: CUSTOMER_STREAM_TYPE,
    streamOf: (command: CustomerCommand) => customerStreamId(command.customerId),
    decider: customerDecider,
    state: customers,
    publishes: customerEvents,
  },
  start: (context, { aggregate }) => ({
    routes: customerRoutes({
      execute: (command, metadata, after) => aggregate.executeWith(command, metadata, after),
      erase: (tx, customerId) => context.personalData.erase(tx, customerId),
    }),
  }),
})

/** The customer service as a module (`SERVICES=customer`). */
export const customerModule = () => customerService
