import { CART_EVENTS_TOPIC, type CartEvent, cartEvents, encodeCartEvent } from '../../contracts/cart/events.ts'
import { PERSONAL_FIELDS } from '../../contracts/personal.ts'
import { notFound } from '../../platform/errors.ts'
import { type CommandMetadata, createCommandHandler, jsonStateTable } from '../../platform/es/command-handler.ts'
import { eventMessage } from '../../platform/es/messages.ts'
import type { PersonalData } from '../../platform/personal-data/personal-data.ts'
import { personalSealer } from '../../platform/personal-data/sealer.ts'
import type { SqlDatabase } from '../../platform/sql/port.ts'
import { type Cart, type CartCommand, type CartState, cartDecider } from '../domain/cart.ts'

/**
 * The cart service's write side on the platform's command handler: one command, one transaction
 * (events, the `carts` row, the outbox rows for `cart-events` keyed by cart id).
 */

export const CART_STREAM_TYPE = 'cart'

export interface CartStore {
  execute(command: CartCommand, metadata?: CommandMetadata): Promise<Cart>
  get(cartId: string): Promise<Cart | null>
}

export function createCartStore(deps: {
  db: SqlDatabase
  onCommitted: () => void
  clock?: () => Date
  /** Seals the delivery address and contact a checkout carries. */
  personalData?: PersonalData
}): CartStore {
  const table = jsonStateTable<CartState>('carts', () => null)
  const handler = createCommandHandler({
    db: deps.db,
    onCommitted: deps.onCommitted,
    streamType: CART_STREAM_TYPE,
    decider: cartDecider,
    stateStore: table,
    toMessages: (event, metadata) => [
      eventMessage({
        topic: CART_EVENTS_TOPIC,
        key: event.aggregateId,
        body: encodeCartEvent(event as unknown as CartEvent),
        event,
        metadata,
      }),
    ],
    ...(deps.clock ? { clock: deps.clock } : {}),
    schemaVersion: (type) => cartEvents.latestVersion(type),
    seal: personalSealer(
      CART_STREAM_TYPE,
      { fields: { CartCheckedOut: PERSONAL_FIELDS }, subjectOf: (data) => String(data.customerId) },
      deps.personalData,
    ),
  })
  return {
    async execute(command, metadata = {}) {
      const { state } = await handler.handle(command.cartId, command, metadata)
      if (!state) throw notFound('cart', command.cartId)
      return state
    },
    get: async (cartId) => (await table.load(deps.db, cartId)).state,
  }
}
