/**
 * The faults, one timeline each: start the app(s), put load on them, break something, mend it.
 * The harness (suite.ts) gives every fault a fresh database and fresh topics, waits for the drain
 * and verifies afterwards; a fault only says what happens and when. The waits here are the faults'
 * own durations ("SIGSTOP for 30 s"), not waits for a condition.
 */
import type { AppProcess } from './app.ts'
import type { FaultBroker } from './broker.ts'
import type { Load } from './load.ts'
import type { PoisonMessage } from './poison.ts'
import type { PostgresInstance } from './postgres.ts'

export interface Scale {
  /** Orders per second while the load runs. */
  rate: number
  /** Load before the fault, and after it is mended, before the load stops. */
  warmupMs: number
  afterMs: number
  brokerKills: number
  /** How long the broker stays down between a SIGKILL and its restart. */
  brokerDownMs: number
  sigstopMs: number
  postgresDownMs: number
  /** The outage during consumption: longer than every retry budget of the consumers. */
  outageMs: number
  /** Orders per second of the burst that fills the consumers before the outage. */
  burstRate: number
  burstMs: number
  drainTimeoutMs: number
}

export const FULL: Scale = {
  rate: 10,
  warmupMs: 5_000,
  afterMs: 5_000,
  brokerKills: 5,
  brokerDownMs: 2_000,
  sigstopMs: 30_000,
  postgresDownMs: 5_000,
  outageMs: 20_000,
  burstRate: 40,
  burstMs: 3_000,
  drainTimeoutMs: 180_000,
}

export const SMOKE: Scale = {
  rate: 5,
  warmupMs: 2_000,
  afterMs: 2_000,
  brokerKills: 1,
  brokerDownMs: 1_000,
  sigstopMs: 10_000,
  postgresDownMs: 2_000,
  outageMs: 6_000,
  burstRate: 20,
  burstMs: 2_000,
  // An app SIGKILL stops publishing for about a minute: the outbox relay's lease must run out
  // (3 × PRODUCER_MAX_SEND_MS) and the new holder waits one publish timeout more (src/app.ts).
  drainTimeoutMs: 100_000,
}

export interface FaultContext {
  scale: Scale
  broker: FaultBroker
  postgres: PostgresInstance
  /** Starts an app process of this fault (its database, its topics) and waits until it is ready. */
  startApp(name: string): Promise<AppProcess>
  /** Places orders on the running apps at `rate` (default: the scale's) until stopped. */
  startLoad(rate?: number): Load
  /** Lets the timeline run on for `ms`. */
  hold(ms: number): Promise<void>
  /** The fault starts now (times in the notes count from here). */
  faultStarts(what: string): void
  /** The fault is mended now: time to drain counts from here (or from the end of the load, if later). */
  healed(): void
  note(line: string): void
  log(line: string): void
  /** Publishes the poison mix on every topic a consumer group of this fault's apps reads. */
  injectPoison(): Promise<PoisonMessage[]>
  /** Messages the journey's consumer groups have not committed yet. */
  consumerLag(): Promise<number>
}

export interface Fault {
  name: string
  /** What the fault does, for the table's legend. */
  description: string
  run(ctx: FaultContext): Promise<void>
}

export const FAULTS: readonly Fault[] = [
  {
    name: 'broker-sigkill-x5',
    description: 'the broker is SIGKILLed and restarted (same port and data) several times under load',
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts(`broker SIGKILL ×${ctx.scale.brokerKills}`)
      for (let i = 1; i <= ctx.scale.brokerKills; i++) {
        await ctx.broker.kill()
        ctx.log(`broker SIGKILLed (${i}/${ctx.scale.brokerKills})`)
        await ctx.hold(ctx.scale.brokerDownMs)
        await ctx.broker.restart()
        ctx.log(`broker back (${i}/${ctx.scale.brokerKills})`)
        if (i < ctx.scale.brokerKills) await ctx.hold(ctx.scale.brokerDownMs)
      }
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'broker-sigstop',
    description: 'the broker is frozen (SIGSTOP) under load, then thawed (SIGCONT)',
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts(`broker SIGSTOP for ${ctx.scale.sigstopMs / 1000} s`)
      ctx.broker.pause()
      await ctx.hold(ctx.scale.sigstopMs)
      ctx.broker.resume()
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'postgres-immediate-stop',
    description: '`pg_ctl stop -m immediate` under load (every backend killed, crash recovery on start)',
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts('PostgreSQL immediate stop')
      await ctx.postgres.stopImmediate()
      await ctx.hold(ctx.scale.postgresDownMs)
      await ctx.postgres.start()
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'app-sigkill',
    description: 'the app is SIGKILLed under load and started again',
    async run(ctx) {
      const app = await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts('app SIGKILL')
      await app.kill()
      await app.restart()
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'two-apps-one-killed',
    description: 'two app processes share the load, groups and outbox; one is SIGKILLed for good',
    async run(ctx) {
      const first = await ctx.startApp('app-a')
      await ctx.startApp('app-b')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts('app-a SIGKILL (app-b carries on alone)')
      await first.kill()
      ctx.healed()
      // Long enough for the group's session timeout and the relay's lease to pass to app-b.
      await ctx.hold(ctx.scale.afterMs * 2)
      await load.stop()
    },
  },
  {
    name: 'poison-mix',
    description: 'poison (not JSON, empty, scalar, bad schema, unknown type, 300 kB garbage) on every consumed topic',
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts('poison mix')
      const poison = await ctx.injectPoison()
      const topics = new Set(poison.map((p) => p.topic))
      ctx.note(`${poison.length} poison messages on ${topics.size} topics`)
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'db-outage-consuming',
    description: 'a burst of orders, then PostgreSQL stops (`-m fast`) while the consumers work it off',
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad(ctx.scale.burstRate)
      await ctx.hold(ctx.scale.burstMs)
      await load.stop()
      const backlog = await ctx.consumerLag()
      ctx.faultStarts(`PostgreSQL down for ${ctx.scale.outageMs / 1000} s`)
      await ctx.postgres.stopFast()
      ctx.note(`consumer lag when the database stopped: ${backlog}`)
      await ctx.hold(ctx.scale.outageMs)
      await ctx.postgres.start()
      ctx.healed()
    },
  },
]

export function faultNamed(name: string): Fault {
  const fault = FAULTS.find((f) => f.name === name)
  if (!fault) throw new Error(`no fault named ${name}; there are ${FAULTS.map((f) => f.name).join(', ')}`)
  return fault
}
