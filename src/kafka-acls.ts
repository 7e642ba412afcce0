import { JOURNEY_GROUPS } from './audit/lag.ts'
import { cartModule } from './cart/index.ts'
import { COFFEE_GROUP } from './coffee/index.ts'
import { COFFEE_ORDERS_TOPIC } from './contracts/coffee/orders.ts'
import { DELIVERY_COMMANDS_TOPIC } from './contracts/delivery/commands.ts'
import { DISPATCH_COMMANDS_TOPIC } from './contracts/dispatch/commands.ts'
import { ORDER_COMMANDS_TOPIC } from './contracts/order/commands.ts'
import { PAYMENT_COMMANDS_TOPIC } from './contracts/payment/commands.ts'
import { SHOP_ORDER_EVENTS_TOPIC } from './contracts/shop/events.ts'
import { customerModule } from './customer/index.ts'
import { deliveryModule } from './delivery/index.ts'
import { dispatchModule } from './dispatch/index.ts'
import { orderModule } from './order/index.ts'
import { ORDER_DETAILS_GROUP } from './order-details/consumers/order-events.ts'
import { paymentModule } from './payment/index.ts'
import type { DeclaredService } from './platform/service.ts'
import { moduleSettings } from './platform/settings.ts'
import { deadLetterTopic } from './platform/transport/reliable-consumer.ts'
import { SAGA_GROUP, SAGA_INPUT_TOPICS } from './saga/consumers/saga-inputs.ts'
import type { SagaMode } from './saga/settings.ts'

/**
 * Who may do what on Kafka: per service, the topics it writes (through its outbox), the consumer
 * groups it runs and the topics each reads. Kafka's ACLs are the enforcement: with the broker's
 * authorizer on, a process can only do what its principal is allowed, so only the saga's principal
 * can write `order_commands` and `payment_commands`.
 *
 * One principal per process (`KAFKA_SASL_USERNAME`): every Kafka client of a process (producer,
 * relay, consumers, admin) authenticates as it, so a process gets the union of what its services
 * need. The outbox relay publishes every row of its database's outbox, whichever service wrote
 * it, so services that share a database share a principal too: a service with a principal of its
 * own runs in its own process with its own database (or PostgreSQL schema).
 *
 * The table is checked twice: each module's consumers against `reads` (kafka-acls.int.test.ts
 * starts every module and records what it subscribes), and the whole of it on a broker with the
 * authorizer (the journey runs with nothing more than these ACLs).
 */

export type { SagaMode }

const SAGA_MODES: readonly SagaMode[] = ['orchestration', 'choreography']

export interface ConsumerAccess {
  group: string
  topics: readonly string[]
  /** The saga modes in which the service runs this consumer (both when omitted). */
  modes?: readonly SagaMode[]
}

export interface ServiceKafkaAccess {
  service: string
  /** Topics the service publishes (its outbox's, or directly); the dead letters of what it reads come on top. */
  writes: readonly string[]
  reads: readonly ConsumerAccess[]
  /**
   * Groups the service reads with a throwaway name starting with this (and deletes when done):
   * the topic reader's (`<KAFKA_CLIENT_ID>-topic-reader-<uuid>`, not under KAFKA_TOPIC_PREFIX).
   */
  throwawayGroupsOf?: { topics: readonly string[] }
  /** Groups and topics it only looks at (the auditor reads every journey group's lag). */
  describes?: { groups: readonly string[]; topics: readonly string[] }
  /**
   * Topics it sends dead letters back to, on an operator's redrive (the dead-letter console): not
   * its own messages, so not among its documented topics; WRITE, as for `writes`.
   */
  redrives?: readonly string[]
}

/** A declared service's access, from its declaration: the topic it publishes and one group per intake. */
function declared(service: DeclaredService<object>): ServiceKafkaAccess {
  /** The modes an intake runs in: its `when` asked of the service's settings in each mode. */
  const modesOf = (when: ((settings: ReturnType<typeof moduleSettings>) => boolean) | undefined) =>
    when === undefined
      ? undefined
      : SAGA_MODES.filter((mode) => when(moduleSettings(service.name, service.settings ?? [], { SAGA_MODE: mode })))
  return {
    service: service.name,
    writes: [service.publishes],
    reads: service.intake.map(({ group, topics, when }) => {
      const modes = modesOf(when)
      return { group, topics: topics.map((each) => each.topic), ...(modes ? { modes } : {}) }
    }),
  }
}

const services: readonly ServiceKafkaAccess[] = [
  declared(cartModule()),
  declared(orderModule()),
  declared(paymentModule()),
  declared(dispatchModule()),
  declared(deliveryModule()),
  declared(customerModule()),
  {
    service: 'saga',
    writes: [PAYMENT_COMMANDS_TOPIC, ORDER_COMMANDS_TOPIC, DISPATCH_COMMANDS_TOPIC, DELIVERY_COMMANDS_TOPIC],
    reads: [{ group: SAGA_GROUP, topics: SAGA_INPUT_TOPICS, modes: ['orchestration'] }],
  },
  {
    service: 'audit',
    writes: [],
    reads: [],
    describes: {
      groups: JOURNEY_GROUPS,
      topics: [
        ORDER_COMMANDS_TOPIC,
        PAYMENT_COMMANDS_TOPIC,
        DISPATCH_COMMANDS_TOPIC,
        DELIVERY_COMMANDS_TOPIC,
        ...SAGA_INPUT_TOPICS,
      ],
    },
  },
  { service: 'shop', writes: [SHOP_ORDER_EVENTS_TOPIC], reads: [] },
  {
    service: 'order-details',
    writes: [],
    reads: [{ group: ORDER_DETAILS_GROUP, topics: [SHOP_ORDER_EVENTS_TOPIC] }],
    throwawayGroupsOf: { topics: [SHOP_ORDER_EVENTS_TOPIC] },
  },
  {
    service: 'coffee',
    // POST /order publishes straight to the topic (seed 003 has no outbox).
    writes: [COFFEE_ORDERS_TOPIC],
    reads: [{ group: COFFEE_GROUP, topics: [COFFEE_ORDERS_TOPIC] }],
  },
]

const COMMAND_TOPICS: ReadonlySet<string> = new Set([
  ORDER_COMMANDS_TOPIC,
  PAYMENT_COMMANDS_TOPIC,
  DISPATCH_COMMANDS_TOPIC,
  DELIVERY_COMMANDS_TOPIC,
])

/** Every topic some consumer group reads, and its dead-letter topic; every group. */
const consumedTopics = [...new Set(services.flatMap((s) => s.reads.flatMap((r) => r.topics)))].sort()
const allGroups = [...new Set(services.flatMap((s) => s.reads.map((r) => r.group)))].sort()

export const serviceKafkaAccess: readonly ServiceKafkaAccess[] = [
  ...services,
  {
    // The live dashboard's topics and groups view: offsets, lag and members of everything.
    service: 'dashboard',
    writes: [],
    reads: [],
    describes: { groups: allGroups, topics: [...consumedTopics, ...consumedTopics.map(deadLetterTopic)] },
  },
  {
    // The dead-letter console: a redrive goes back to the topic the dead letter came from. Not to a
    // command topic: only the saga commands (a dead-lettered command is redriven by a console that
    // runs in the saga's process, `SERVICES=saga,dead-letters`, under the saga's principal).
    service: 'dead-letters',
    writes: [],
    reads: [],
    redrives: consumedTopics.filter((topic) => !COMMAND_TOPICS.has(topic)),
  },
]

export type AclOperation = 'READ' | 'WRITE' | 'CREATE' | 'DESCRIBE' | 'DELETE'

/** One ACL: allow `principal` these operations on a topic or group (named literally or by prefix). */
export interface AclGrant {
  principal: string
  resource: 'topic' | 'group'
  name: string
  pattern: 'literal' | 'prefixed'
  operations: readonly AclOperation[]
}

const operationOrder: readonly AclOperation[] = ['READ', 'WRITE', 'CREATE', 'DESCRIBE', 'DELETE']

function inMode(read: ConsumerAccess, mode: SagaMode | 'both'): boolean {
  return mode === 'both' || read.modes === undefined || read.modes.includes(mode)
}

/**
 * What `access` needs, as ACLs for `principal`, with the deployment's KAFKA_TOPIC_PREFIX (which
 * prefixes topics and groups alike) and KAFKA_CLIENT_ID (the topic reader's throwaway groups).
 * In mode 'both', the consumers of either mode.
 *
 * Topics get CREATE besides READ or WRITE: a service creates the topics it uses on first use (the
 * broker's auto-creation stays off), and CREATE on a topic that exists does nothing. WRITE is all
 * the idempotent producer needs (KIP-679). Each topic read also means writing its dead letters.
 */
export function aclGrants(
  principal: string,
  access: readonly ServiceKafkaAccess[],
  options: { mode: SagaMode | 'both'; topicPrefix?: string; clientId?: string },
): AclGrant[] {
  const prefix = options.topicPrefix ?? ''
  const topics = new Map<string, Set<AclOperation>>()
  const groups = new Map<string, Set<AclOperation>>()
  const allow = (on: Map<string, Set<AclOperation>>, name: string, ...operations: AclOperation[]) => {
    const set = on.get(name) ?? new Set()
    for (const operation of operations) set.add(operation)
    on.set(name, set)
  }
  const throwaway = new Set<string>()
  for (const service of access) {
    for (const topic of service.writes) allow(topics, topic, 'WRITE', 'CREATE')
    for (const topic of service.redrives ?? []) allow(topics, topic, 'WRITE')
    for (const read of service.reads.filter((r) => inMode(r, options.mode))) {
      allow(groups, read.group, 'READ')
      for (const topic of read.topics) {
        allow(topics, topic, 'READ', 'CREATE')
        allow(topics, deadLetterTopic(topic), 'WRITE', 'CREATE')
      }
    }
    for (const topic of service.throwawayGroupsOf?.topics ?? []) {
      allow(topics, topic, 'READ')
      throwaway.add(`${options.clientId ?? 'orderflow'}-topic-reader-`)
    }
    for (const group of service.describes?.groups ?? []) allow(groups, group, 'DESCRIBE')
    for (const topic of service.describes?.topics ?? []) allow(topics, topic, 'DESCRIBE')
  }
  const sorted = (set: Set<AclOperation>) => operationOrder.filter((operation) => set.has(operation))
  // READ and WRITE imply DESCRIBE: saying it again would only lengthen the list.
  const trimmed = (set: Set<AclOperation>) =>
    set.has('READ') || set.has('WRITE') ? sorted(set).filter((o) => o !== 'DESCRIBE') : sorted(set)
  return [
    ...[...topics].map(([name, operations]) => ({
      principal,
      resource: 'topic' as const,
      name: `${prefix}${name}`,
      pattern: 'literal' as const,
      operations: trimmed(operations),
    })),
    ...[...groups].map(([name, operations]) => ({
      principal,
      resource: 'group' as const,
      name: `${prefix}${name}`,
      pattern: 'literal' as const,
      operations: trimmed(operations),
    })),
    ...[...throwaway].map((name) => ({
      principal,
      resource: 'group' as const,
      name,
      pattern: 'prefixed' as const,
      operations: ['READ', 'DELETE'] as const,
    })),
  ]
}

/** The access of the named services: one entry each (an unknown name is a mistake of the caller). */
export function accessOf(services: readonly string[]): ServiceKafkaAccess[] {
  return services.map((name) => {
    const found = serviceKafkaAccess.find((a) => a.service === name)
    if (!found) throw new Error(`no Kafka access is declared for service '${name}'`)
    return found
  })
}

/** The conventional principal of a service's process. */
export const servicePrincipal = (service: string): string => `User:orderflow-${service}`

/**
 * The `kafka-acls` commands that allow every service its own principal, in both saga modes: what
 * the README and docs/reliability.md show (a unit test keeps them equal to this).
 */
export function kafkaAclScript(): string {
  const lines = [
    '# admin.properties: the SASL settings of a super user (or a principal allowed to ALTER the cluster)',
    'acl() { kafka-acls.sh --bootstrap-server "$KAFKA_BROKERS" --command-config admin.properties --add "$@"; }',
    'P="$KAFKA_TOPIC_PREFIX" # the deployment\'s KAFKA_TOPIC_PREFIX, if any: it prefixes topics and groups',
  ]
  for (const access of serviceKafkaAccess) {
    const principal = servicePrincipal(access.service)
    lines.push('', `# ${access.service}: KAFKA_SASL_USERNAME=${principal.slice('User:'.length)}`)
    const choreographyOnly = new Set(
      aclGrants(principal, [access], { mode: 'both' })
        .map(grantKey)
        .filter(
          (key) => !aclGrants(principal, [access], { mode: 'orchestration' }).some((grant) => grantKey(grant) === key),
        ),
    )
    for (const grant of aclGrants(principal, [access], { mode: 'both' })) {
      const name =
        grant.pattern === 'prefixed' ? `"\${KAFKA_CLIENT_ID:-orderflow}-topic-reader-"` : `"\${P}${grant.name}"`
      const operations = grant.operations.map((o) => `--operation ${o}`).join(' ')
      const pattern = grant.pattern === 'prefixed' ? ' --resource-pattern-type prefixed' : ''
      const note = choreographyOnly.has(grantKey(grant)) ? '  # choreography' : ''
      lines.push(`acl --allow-principal ${principal} ${operations} --${grant.resource} ${name}${pattern}${note}`)
    }
  }
  return lines.join('\n')
}

const grantKey = (grant: AclGrant) => `${grant.resource}:${grant.name}:${grant.operations.join(',')}`
