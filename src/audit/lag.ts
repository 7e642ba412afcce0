import { DELIVERY_COMMANDS_GROUP, DELIVERY_DISPATCH_EVENTS_GROUP } from '../delivery/index.ts'
import { DISPATCH_COMMANDS_GROUP, DISPATCH_ORDER_EVENTS_GROUP } from '../dispatch/index.ts'
import { ORDER_JOURNEY_GROUP } from '../order/consumers/journey.ts'
import { ORDER_COMMANDS_GROUP } from '../order/consumers/order-commands.ts'
import { PAYMENT_COMMANDS_GROUP, PAYMENT_ORDER_EVENTS_GROUP } from '../payment/index.ts'
import type { GroupLag } from '../platform/transport/port.ts'
import { SAGA_GROUP } from '../saga/consumers/saga-inputs.ts'

export type { GroupLag }

/**
 * Consumer lag for the auditor: how many messages each of the journey's consumer groups has not
 * committed yet. The transport answers it (`Transport.groupLag`: the embedded log's tables, or the
 * Kafka brokers' committed offsets and log ends); the auditor is an operator's tool that looks
 * across services, so it names their groups here.
 */

/** Every consumer group of the journey, in both modes (a group that never ran is left out). */
export const JOURNEY_GROUPS = [
  ORDER_COMMANDS_GROUP,
  ORDER_JOURNEY_GROUP,
  PAYMENT_COMMANDS_GROUP,
  PAYMENT_ORDER_EVENTS_GROUP,
  DISPATCH_COMMANDS_GROUP,
  DISPATCH_ORDER_EVENTS_GROUP,
  DELIVERY_COMMANDS_GROUP,
  DELIVERY_DISPATCH_EVENTS_GROUP,
  SAGA_GROUP,
]

/** Reads the lag of the groups, as `Transport.groupLag` does; names come back without the deployment's prefix. */
export type LagSource = (groups: readonly string[]) => Promise<GroupLag[]>
