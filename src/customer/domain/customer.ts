import { CUSTOMER_STREAM_TYPE, type CustomerEventData } from '../../contracts/customer/events.ts'
import { accept, type DecideContext, type Decider, type Decision } from '../../platform/es/decider.ts'

/**
 * A customer as the customer service knows them: only what erasing their personal data needs.
 * Erasing again is allowed (new personal data may have come since, sealed with a new key) and is
 * recorded again: each request is on the record.
 */

export { CUSTOMER_STREAM_TYPE }

export interface EraseCustomerData {
  commandType: 'EraseCustomerData'
  customerId: string
  requestedBy: string
}

export type CustomerCommand = EraseCustomerData

export interface Customer {
  customerId: string
  erasures: number
  lastErasedAt: string | null
}

export type CustomerState = Customer | null

export const initialState = (): CustomerState => null

export function decide(
  command: CustomerCommand,
  _state: CustomerState,
  _context: DecideContext,
): Decision<CustomerEventData> {
  return accept({ eventType: 'CustomerDataErased', customerId: command.customerId, requestedBy: command.requestedBy })
}

export function evolve(state: CustomerState, event: CustomerEventData & { occurredOn: string }): CustomerState {
  return {
    customerId: event.customerId,
    erasures: (state?.erasures ?? 0) + 1,
    lastErasedAt: event.occurredOn,
  }
}

export const customerDecider: Decider<CustomerCommand, CustomerEventData, CustomerState> = {
  initialState,
  decide,
  evolve,
}
