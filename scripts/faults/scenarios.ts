/**
 * The faults, one timeline each: start the app(s), put load on them, break something, mend it.
 * The harness (suite.ts) gives every fault a fresh database and fresh topics, waits for the drain
 * and verifies afterwards; a fault only says what happens and when. The waits here are the faults'
 * own durations ("SIGSTOP for 30 s"), not waits for a condition.
 */
import type { AppProcess } from './app.ts'
import type { FaultBroker } from './broker.ts'
import type { SmallDisk } from './disk.ts'
import { type Load, type StormResult, stormOrder } from './load.ts'
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
  /** A broker outage longer than a saga step's default timeout (30 s). */
  longOutageMs: number
  /** How long every PostgreSQL connection is held (connections exhausted). */
  connectionsHeldMs: number
  /** How long the embedded default's disk stays full. */
  diskFullMs: number
  /** How long the app's clock stays at each step (an hour back, true, an hour ahead, true). */
  clockStepMs: number
  /** How long every new order is stormed with concurrent PATCH, cancel and confirm. */
  stormMs: number
  drainTimeoutMs: number
}

const HOUR_MS = 3_600_000

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
  longOutageMs: 45_000,
  connectionsHeldMs: 12_000,
  diskFullMs: 15_000,
  clockStepMs: 20_000,
  stormMs: 20_000,
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
  // Still longer than the default 30 s of a saga step: shorter would not be this fault.
  longOutageMs: 35_000,
  connectionsHeldMs: 12_000,
  diskFullMs: 15_000,
  clockStepMs: 8_000,
  stormMs: 8_000,
  // An app SIGKILL stops publishing for about a minute: the outbox relay's lease must run out
  // (3 × PRODUCER_MAX_SEND_MS) and the new holder waits one publish timeout more (src/app.ts).
  drainTimeoutMs: 100_000,
}

export interface FaultContext {
  scale: Scale
  broker: FaultBroker
  postgres: PostgresInstance
  /** The fault's database on `postgres` (a fault on the embedded default has none there). */
  database: string
  /** The small disk the embedded default's DATA_DIR is on (faults with `database: 'embedded'`). */
  disk(): SmallDisk
  /** Steps the wall clock of the fault's apps to true time + `offsetMs` (faults with `shiftableClock`). */
  setClock(offsetMs: number): void
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
  /** Something the fault itself saw go wrong (besides what the verification checks). */
  problem(line: string): void
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
  /** Where the app keeps its data: the suite's PostgreSQL (default) or the embedded PGlite on a small disk. */
  database?: 'postgres' | 'embedded'
  /** The apps run with a wall clock the fault can step (scripts/faults/clock-preload.ts). */
  shiftableClock?: boolean
  /**
   * The fault's own requests cancel orders. Otherwise every order must end DELIVERED: the load's
   * orders are all payable, so a CANCELLED one was cancelled by a step timeout the fault caused.
   */
  cancelsOrders?: boolean
  /** Overrides the scale's drain timeout (a fault that leaves a long backlog). */
  drainTimeoutMs?: number
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
  {
    name: 'broker-outage-long',
    description: "the broker is SIGKILLed under load and stays down longer than a saga step's default timeout (30 s)",
    // Everything accepted during the outage (and the broker's restart) waits in the outbox: more
    // than a minute of orders to carry through once it is back.
    drainTimeoutMs: 240_000,
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts(`broker SIGKILL, down for ${ctx.scale.longOutageMs / 1000} s`)
      await ctx.broker.kill()
      await ctx.hold(ctx.scale.longOutageMs)
      await ctx.broker.restart()
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'connections-exhausted',
    description: 'every PostgreSQL connection the server allows is held (SQLSTATE 53300 for the app) under load',
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts(`every PostgreSQL connection held for ${ctx.scale.connectionsHeldMs / 1000} s`)
      const held = await ctx.postgres.exhaustConnections(ctx.database)
      ctx.note(
        `held ${held.held} connections (${held.terminated} of the app's terminated so that it needs new ones); ` +
          `the server refused one more with ${held.refusal}`,
      )
      await ctx.hold(ctx.scale.connectionsHeldMs)
      await held.release()
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'embedded-disk-full',
    description: 'the embedded default (PGlite in DATA_DIR, on a small tmpfs) under load while the disk is full',
    database: 'embedded',
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts(`DATA_DIR's disk full for ${ctx.scale.diskFullMs / 1000} s`)
      const bytes = ctx.disk().fill()
      ctx.note(`the filler took the disk's last ${(bytes / 2 ** 20).toFixed(1)} MiB`)
      await ctx.hold(ctx.scale.diskFullMs)
      ctx.disk().free()
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'clock-step',
    description: "the app's wall clock steps an hour back, to true time, an hour ahead and back, under load",
    shiftableClock: true,
    async run(ctx) {
      await ctx.startApp('app')
      const load = ctx.startLoad()
      await ctx.hold(ctx.scale.warmupMs)
      ctx.faultStarts(`app clock an hour back for ${ctx.scale.clockStepMs / 1000} s`)
      ctx.setClock(-HOUR_MS)
      await ctx.hold(ctx.scale.clockStepMs)
      ctx.log('app clock an hour forward (true time)')
      ctx.setClock(0)
      await ctx.hold(ctx.scale.clockStepMs)
      ctx.log('app clock an hour forward (an hour ahead)')
      ctx.setClock(HOUR_MS)
      await ctx.hold(ctx.scale.clockStepMs)
      ctx.setClock(0)
      ctx.healed()
      await ctx.hold(ctx.scale.afterMs)
      await load.stop()
    },
  },
  {
    name: 'deadlock-storm',
    description: 'every new order gets a PATCH with If-Match, a cancel and a confirm at once, through HTTP',
    cancelsOrders: true,
    async run(ctx) {
      const app = await ctx.startApp('app')
      const load = ctx.startLoad()
      ctx.faultStarts(`storm on every new order for ${ctx.scale.stormMs / 1000} s`)
      const storm: StormResult = { answers: {}, serverErrors: [] }
      const stormed = new Set<string>()
      const running: Promise<void>[] = []
      const until = Date.now() + ctx.scale.stormMs
      while (Date.now() < until) {
        for (const id of load.acceptedIds()) {
          if (stormed.has(id)) continue
          stormed.add(id)
          running.push(stormOrder(app.url, id, stormed.size, storm))
        }
        // The load places an order every 1000/rate ms; each is stormed within this much of its 201.
        await ctx.hold(50)
      }
      await load.stop()
      await Promise.all(running)
      ctx.healed()
      const answers = Object.entries(storm.answers).sort(([a], [b]) => a.localeCompare(b))
      ctx.note(`storm on ${stormed.size} orders: ${answers.map(([k, n]) => `${n}× ${k}`).join(', ')}`)
      // A 2xx or 4xx is an answer (409: a conflict, or a state that no longer allows it); a 5xx, a
      // timeout or a dropped connection is not.
      const failed = answers.filter(([k]) => !/ [24]\d\d$/.test(k))
      if (failed.length > 0) {
        ctx.problem(
          `the storm got ${failed.map(([k, n]) => `${n}× ${k}`).join(', ')}: ${storm.serverErrors.slice(0, 3).join(' | ')}`,
        )
      }
    },
  },
]

export function faultNamed(name: string): Fault {
  const fault = FAULTS.find((f) => f.name === name)
  if (!fault) throw new Error(`no fault named ${name}; there are ${FAULTS.map((f) => f.name).join(', ')}`)
  return fault
}
