/**
 * A real single-node Kafka broker (KRaft) for tests and local runs, without Docker or the binary
 * tarball: the jars come from Maven Central through infra/kafka/pom.xml and run on the local JVM.
 *
 *   node scripts/kafka.ts start | stop | status     (a persistent broker in .orderflow/kafka)
 *   const broker = await startBroker()               (a throwaway broker on a free port)
 *   await startBroker({ sasl: { username, password } })   (clients must authenticate: SASL/SCRAM)
 *   await startBroker({ sasl: { username, password, users }, authorizer: true })   (… and need ACLs)
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { type AddressInfo, connect, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isProcessAlive } from '../src/platform/process-alive.ts'

const repoRoot = resolve(import.meta.dirname, '..')
const infraDir = join(repoRoot, 'infra', 'kafka')
const brokerJars = {
  what: 'broker',
  pomPath: join(infraDir, 'pom.xml'),
  libDir: join(infraDir, 'target', 'lib'),
  stampPath: join(infraDir, 'target', 'lib.pom-sha256'),
}
const toolJars = {
  what: 'command-line tools',
  pomPath: join(infraDir, 'tools', 'pom.xml'),
  libDir: join(infraDir, 'target', 'tools-lib'),
  stampPath: join(infraDir, 'target', 'tools-lib.pom-sha256'),
}
const libDir = brokerJars.libDir
const log4jConfigPath = join(infraDir, 'log4j2.properties')
const cliStateDir = join(repoRoot, '.orderflow', 'kafka')
const host = '127.0.0.1'

export interface BrokerOptions {
  /** Holds server.properties, data/ and broker.log. Default: a fresh temp dir that stop() removes; a given dir is kept. */
  dir?: string
  /** Client (PLAINTEXT) port. Default: a free loopback port. */
  port?: number
  /** KRaft controller port. Default: a free loopback port. */
  controllerPort?: number
  /** Keep the broker running after this process exits (what `start` does). */
  detached?: boolean
  /** How long one start-up attempt may take before it counts as failed. */
  readyTimeoutMs?: number
  attempts?: number
  /**
   * The client listener is SASL_PLAINTEXT with SCRAM-SHA-256, and this is its one user (added to
   * the metadata log when the storage is formatted, so a data dir formatted without it keeps none).
   * The broker talks to itself through the same listener, as that user.
   */
  sasl?: {
    username: string
    password: string
    /** More SCRAM users (service principals), added the same way: only when the storage is formatted. */
    users?: readonly { username: string; password: string }[]
  }
  /**
   * With `sasl`: the broker runs Kafka's standard authorizer, a principal may do only what an ACL
   * allows it (no ACL, no access), and the `sasl` user is the super user that creates the ACLs.
   */
  authorizer?: boolean
}

/** The SASL mechanism of a broker started with `sasl`. */
export const BROKER_SASL_MECHANISM = 'SCRAM-SHA-256'

export interface Broker {
  /** `host:port`, the value for KAFKA_BROKERS. */
  brokers: string
  pid: number
  dir: string
  /** SIGTERM, wait for a clean exit (SIGKILL after 20 s), and remove the dir if it was a temp dir. */
  stop(): Promise<void>
}

const say = (line: string) => process.stderr.write(`kafka: ${line}\n`)
const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`

export async function startBroker(options: BrokerOptions = {}): Promise<Broker> {
  const started = performance.now()
  const java = javaBinary()
  await checkJava(java)
  await ensureJars()

  const temporary = options.dir === undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'orderflow-kafka-'))
  // Two brokers on one data dir corrupt each other's metadata log before the log-dir lock stops the second.
  const running = temporary ? undefined : runningBroker(dir)
  if (running) throw new Error(`a Kafka broker (pid ${running.pid}) already runs in ${dir} on ${running.brokers}`)
  mkdirSync(dir, { recursive: true })
  try {
    const broker = await launchWithRetries(java, dir, temporary, options)
    say(`broker ready on ${broker.brokers} in ${seconds(started)}`)
    return broker
  } catch (error) {
    if (temporary) rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

async function launchWithRetries(
  java: string,
  dir: string,
  temporary: boolean,
  options: BrokerOptions,
): Promise<Broker> {
  const attempts = options.attempts ?? 3
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000
  let lastFailure = ''
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const [port, controllerPort] = await freePorts(options.port, options.controllerPort)
    writeFileSync(
      join(dir, 'server.properties'),
      serverProperties(dir, port, controllerPort, options.sasl, options.authorizer ?? false),
    )
    if (!existsSync(join(dir, 'data', 'meta.properties'))) {
      say('formatting storage')
      await formatStorage(java, dir, options.sasl)
    }

    const logOffset = fileSize(join(dir, 'broker.log'))
    const child = launch(java, dir, options.detached ?? false)
    // Written before the broker is ready, so a concurrent start in the same dir sees it already.
    writeFileSync(join(dir, 'kafka.pid'), `${child.pid}\n`)
    const exited = () => child.exitCode !== null || child.signalCode !== null
    const killOnExit = () => {
      // A broker this process owns must not outlive it (a crashed or interrupted test run).
      child.kill('SIGKILL')
      if (temporary) rmSync(dir, { recursive: true, force: true })
    }
    if (!options.detached) process.on('exit', killOnExit)

    const failure = await waitUntilReady(child, port, readyTimeoutMs)
    if (failure === undefined) {
      if (options.detached) child.unref()
      let stopping: Promise<void> | undefined
      return {
        brokers: `${host}:${port}`,
        pid: child.pid ?? -1,
        dir,
        stop() {
          stopping ??= (async () => {
            await stopProcess(child.pid ?? -1, exited)
            process.off('exit', killOnExit)
            rmSync(join(dir, 'kafka.pid'), { force: true })
            if (temporary) rmSync(dir, { recursive: true, force: true })
          })()
          return stopping
        },
      }
    }

    lastFailure = `${failure}\n${logTail(dir, logOffset)}`
    say(`start-up attempt ${attempt}/${attempts} failed: ${failure}`)
    child.kill('SIGKILL')
    if (!exited()) await new Promise((done) => child.once('exit', done))
    process.off('exit', killOnExit)
    rmSync(join(dir, 'kafka.pid'), { force: true })
    // A half-formed quorum is not worth debugging in a throwaway broker: start over from an empty log.
    if (temporary) rmSync(join(dir, 'data'), { recursive: true, force: true })
  }
  throw new Error(
    `the Kafka broker did not start after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${lastFailure}`,
  )
}

function javaBinary(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java'
}

async function checkJava(java: string): Promise<void> {
  const result = await run(java, ['-version']).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new Error(
        `Java was not found (${java}). Kafka 4 needs a Java 17+ runtime: install one ` +
          '(Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME.',
      )
    }
    throw error
  })
  // `java -version` writes to stderr: `openjdk version "17.0.15"`, `java version "1.8.0_392"`, `... "21"`.
  const match = /version "(\d+)(?:\.(\d+))?/.exec(result.output)
  const major = match?.[1] === '1' ? Number(match[2]) : Number(match?.[1])
  if (!(major >= 17)) {
    const found = result.output.split('\n')[0]?.trim() || `exit code ${result.code}`
    throw new Error(`Kafka 4 needs Java 17 or newer, but ${java} is: ${found}. Install Java 17+ or set JAVA_HOME.`)
  }
}

/** The jars are fetched once and again only when the pom changes: a stamp keeps the pom's hash. */
async function ensureJars(jars: typeof brokerJars = brokerJars): Promise<void> {
  const { pomPath, libDir, stampPath: libStampPath } = jars
  const pom = readFileSync(pomPath)
  const hash = createHash('sha256').update(pom).digest('hex')
  if (existsSync(libDir) && readText(libStampPath) === hash) return

  const version = /<kafka\.version>([^<]+)</.exec(pom.toString())?.[1] ?? ''
  say(`fetching Kafka ${version} ${jars.what} jars from Maven Central…`)
  const started = performance.now()
  // A separate folder per process so an interrupted or concurrent fetch never leaves a half-filled lib/.
  const partial = `${libDir}.partial-${process.pid}`
  rmSync(partial, { recursive: true, force: true })
  const args = ['-B', '-q', '-f', pomPath, 'dependency:copy-dependencies', '-DincludeScope=runtime']
  const result = await run('mvn', [...args, `-DoutputDirectory=${partial}`]).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') {
      throw new Error(
        'Maven (mvn) was not found. It fetches the Kafka broker jars from Maven Central once ' +
          '(cached in ~/.m2): install it (Debian/Ubuntu: apt-get install maven).',
      )
    }
    throw error
  })
  if (result.code !== 0) {
    rmSync(partial, { recursive: true, force: true })
    throw new Error(`mvn could not fetch the Kafka jars (exit code ${result.code}):\n${result.output}`)
  }
  rmSync(libDir, { recursive: true, force: true })
  renameSync(partial, libDir)
  writeFileSync(libStampPath, hash)
  say(`fetched ${readdirSync(libDir).length} jars in ${seconds(started)}`)
}

function serverProperties(
  dir: string,
  port: number,
  controllerPort: number,
  sasl: BrokerOptions['sasl'] | undefined,
  authorizer: boolean,
): string {
  const client = sasl ? 'SASL_PLAINTEXT' : 'PLAINTEXT'
  if (authorizer && !sasl) throw new Error('the authorizer needs `sasl`: without it every client is ANONYMOUS')
  const credentials = sasl ? [sasl, ...(sasl.users ?? [])] : []
  if (credentials.some((user) => !/^[\w.-]+$/.test(`${user.username}${user.password}`))) {
    // They go into a JAAS line and a StorageTool argument unquoted.
    throw new Error('the SASL user name and password may only contain letters, digits, "_", "." and "-"')
  }
  const saslSettings = sasl
    ? {
        'sasl.enabled.mechanisms': BROKER_SASL_MECHANISM,
        'sasl.mechanism.inter.broker.protocol': BROKER_SASL_MECHANISM,
        [`listener.name.sasl_plaintext.${BROKER_SASL_MECHANISM.toLowerCase()}.sasl.jaas.config`]: `org.apache.kafka.common.security.scram.ScramLoginModule required username="${sasl.username}" password="${sasl.password}";`,
      }
    : {}
  const authorizerSettings =
    authorizer && sasl
      ? {
          'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
          // ANONYMOUS is the broker itself, registering with its controller over the PLAINTEXT
          // CONTROLLER listener (loopback only); clients can only come in through SASL.
          'super.users': `User:${sasl.username};User:ANONYMOUS`,
          'allow.everyone.if.no.acl.found': false,
        }
      : {}
  const settings = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    listeners: `${client}://${host}:${port},CONTROLLER://${host}:${controllerPort}`,
    'advertised.listeners': `${client}://${host}:${port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': client,
    'listener.security.protocol.map': `CONTROLLER:PLAINTEXT,${client}:${client}`,
    ...saslSettings,
    ...authorizerSettings,
    // Static voters, so storage is formatted without --standalone.
    'controller.quorum.voters': `1@${host}:${controllerPort}`,
    'log.dirs': join(dir, 'data'),
    // One node: internal topics cannot have more replicas, and 1 partition starts much faster than 50.
    'offsets.topic.replication.factor': 1,
    'offsets.topic.num.partitions': 1,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'transaction.state.log.num.partitions': 1,
    'share.coordinator.state.topic.replication.factor': 1,
    'share.coordinator.state.topic.min.isr': 1,
    'share.coordinator.state.topic.num.partitions': 1,
    // Otherwise the first member of every new consumer group waits 3 s.
    'group.initial.rebalance.delay.ms': 0,
    // The project creates its topics itself; a typo must fail instead of creating a topic.
    'auto.create.topics.enable': false,
    // Small footprint on a 2-core machine; the default dedupe buffer alone takes 128 MiB of heap.
    'num.network.threads': 2,
    'num.io.threads': 2,
    'log.cleaner.dedupe.buffer.size': 4194304,
  }
  const lines = Object.entries(settings).map(([key, value]) => `${key}=${value}`)
  return `# Written by scripts/kafka.ts on every start.\n${lines.join('\n')}\n`
}

function jvmArgs(dir: string): string[] {
  const heap = process.env.KAFKA_HEAP_OPTS?.split(/\s+/).filter(Boolean) ?? ['-Xms256m', '-Xmx512m']
  return [
    ...heap,
    `-Dlog4j2.configurationFile=${log4jConfigPath}`,
    `-Dkafka.logs.dir=${dir}`,
    // The launcher expands `lib/*` itself; no shell involved.
    '-cp',
    join(libDir, '*'),
  ]
}

async function formatStorage(java: string, dir: string, sasl: BrokerOptions['sasl'] | undefined): Promise<void> {
  const args = ['kafka.tools.StorageTool', 'format', '-t', clusterId(), '-c', join(dir, 'server.properties')]
  // KRaft keeps SCRAM credentials in the metadata log: the first ones go in when it is formatted.
  for (const user of sasl ? [sasl, ...(sasl.users ?? [])] : []) {
    args.push('--add-scram', `${BROKER_SASL_MECHANISM}=[name=${user.username},password=${user.password}]`)
  }
  const result = await run(java, [...jvmArgs(dir), ...args, '--ignore-formatted'], { cwd: dir })
  if (result.code !== 0)
    throw new Error(`formatting the Kafka storage failed (exit code ${result.code}):\n${result.output}`)
}

/**
 * What `StorageTool random-uuid` prints (a base64url, unpadded, 16-byte UUID), without starting a JVM for it.
 * Like Kafka's Uuid.randomUuid it never starts with '-', which command lines would read as an option.
 */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url')
    if (!id.startsWith('-')) return id
  }
}

function launch(java: string, dir: string, detached: boolean): ChildProcess {
  // The JVM's own stdout/stderr (crashes, log4j's complaints) go to a file, never to ours.
  const out = openSync(join(dir, 'broker.out'), 'a')
  try {
    return spawn(java, [...jvmArgs(dir), 'kafka.Kafka', join(dir, 'server.properties')], {
      cwd: dir,
      detached,
      stdio: ['ignore', out, out],
    })
  } finally {
    closeSync(out)
  }
}

/** The broker opens its client port only once it is ready, so a TCP connect is the readiness check. */
async function waitUntilReady(child: ChildProcess, port: number, timeoutMs: number): Promise<string | undefined> {
  let spawnError: Error | undefined
  child.once('error', (error) => {
    spawnError = error
  })
  const deadline = performance.now() + timeoutMs
  const exited = () => child.exitCode !== null || child.signalCode !== null
  while (performance.now() < deadline) {
    if (spawnError) return `could not start java: ${spawnError.message}`
    if (exited()) return `the broker exited (${child.exitCode ?? child.signalCode}) before it was ready`
    // A connect only counts if our broker is still alive: a port someone else holds would answer too.
    if ((await canConnect(port)) && !exited()) return undefined
    await sleep(100)
  }
  return `not ready within ${timeoutMs / 1000} s`
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port })
    socket.setTimeout(1000)
    const finish = (connected: boolean) => {
      socket.destroy()
      done(connected)
    }
    socket.once('connect', () => finish(true))
    socket.once('error', () => finish(false))
    socket.once('timeout', () => finish(false))
  })
}

/**
 * The ports the caller fixed, else free loopback ports (held open together so the two differ).
 * A fixed port must be free too: with another program on it, the readiness check would pass at once.
 */
async function freePorts(port?: number, controllerPort?: number): Promise<[number, number]> {
  const held: Server[] = []
  const pick = async (fixed?: number) => {
    const server = createServer()
    held.push(server)
    try {
      await new Promise<void>((done, fail) => server.once('error', fail).listen(fixed ?? 0, host, done))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error
      throw new Error(`port ${fixed} on ${host} is already in use by another program`)
    }
    return (server.address() as AddressInfo).port
  }
  try {
    return [await pick(port), await pick(controllerPort)]
  } finally {
    await Promise.all(held.map((server) => new Promise((done) => server.close(done))))
  }
}

async function stopProcess(pid: number, exited: () => boolean): Promise<void> {
  if (pid <= 0 || exited()) return
  signal(pid, 'SIGTERM')
  if (await waitForExit(exited, 20_000)) return
  say(`broker (pid ${pid}) did not stop within 20 s of SIGTERM: sending SIGKILL`)
  signal(pid, 'SIGKILL')
  await waitForExit(exited, 10_000)
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error
  }
}

async function waitForExit(exited: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (exited()) return true
    await sleep(100)
  }
  return exited()
}

function run(
  command: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => {
      output += chunk
    })
    child.stderr.on('data', (chunk) => {
      output += chunk
    })
    // An interrupted start must not leave mvn or StorageTool writing into a dir that is being removed.
    const killOnExit = () => child.kill('SIGKILL')
    process.on('exit', killOnExit)
    child.once('error', (error) => {
      process.off('exit', killOnExit)
      fail(error)
    })
    child.once('close', (code) => {
      process.off('exit', killOnExit)
      done({ code, output })
    })
  })
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch {
    return undefined
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}

/** What the broker logged since `offset` (this attempt only), plus the JVM's own output. */
function logTail(dir: string, offset: number, lines = 40): string {
  const sections: string[] = []
  const log = join(dir, 'broker.log')
  const size = fileSize(log)
  if (size > offset) {
    const buffer = Buffer.alloc(size - offset)
    const fd = openSync(log, 'r')
    try {
      readSync(fd, buffer, 0, buffer.length, offset)
    } finally {
      closeSync(fd)
    }
    sections.push(`--- ${log} (last ${lines} lines) ---\n${lastLines(buffer.toString(), lines)}`)
  }
  const out = readText(join(dir, 'broker.out'))
  if (out) sections.push(`--- ${join(dir, 'broker.out')} ---\n${lastLines(out, lines)}`)
  return sections.join('\n') || `(the broker logged nothing)`
}

function lastLines(text: string, count: number): string {
  return text.trimEnd().split('\n').slice(-count).join('\n')
}

// --- CLI: a broker that outlives the command, with its data kept in .orderflow/kafka -------------

interface RunningBroker {
  pid: number
  brokers: string
}

function runningBroker(dir: string): RunningBroker | undefined {
  const pid = Number(readText(join(dir, 'kafka.pid')))
  if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid)) return undefined
  // A stale pid file may name a pid the system has since given to another program.
  const cmdline = readText(`/proc/${pid}/cmdline`)
  if (cmdline !== undefined && !cmdline.includes('kafka.Kafka')) return undefined
  const listener = /^advertised\.listeners=(?:SASL_)?PLAINTEXT:\/\/(.+)$/m.exec(
    readText(join(dir, 'server.properties')) ?? '',
  )
  return { pid, brokers: listener?.[1] ?? '?' }
}

function cliPort(name: string): number | undefined {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return undefined
  const port = Number(raw)
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`${name} must be a port number (got '${raw}')`)
  return port
}

/**
 * Runs Kafka's own console consumer (seed 001's check: `--topic order-events --from-beginning
 * --property print.key=true`), fetching the tools on first use. `--bootstrap-server` defaults to
 * KAFKA_BROKERS, else the broker `npm run kafka:start` runs.
 */
export async function consoleConsumerCommand(args: string[]): Promise<{ java: string; args: string[] }> {
  const java = javaBinary()
  await checkJava(java)
  await ensureJars(toolJars)
  const bootstrap = args.includes('--bootstrap-server')
    ? []
    : ['--bootstrap-server', process.env.KAFKA_BROKERS || runningBroker(cliStateDir)?.brokers || `${host}:9092`]
  return {
    java,
    args: ['-cp', join(toolJars.libDir, '*'), 'org.apache.kafka.tools.consumer.ConsoleConsumer', ...bootstrap, ...args],
  }
}

async function cli(command: string | undefined): Promise<number> {
  switch (command) {
    case 'console-consumer': {
      const { java, args } = await consoleConsumerCommand(process.argv.slice(3))
      const child = spawn(java, args, { stdio: 'inherit' })
      return new Promise((done) => child.once('close', (code) => done(code ?? 1)))
    }
    case 'start': {
      const running = runningBroker(cliStateDir)
      if (running) {
        say(`already running (pid ${running.pid}) on ${running.brokers}`)
        process.stdout.write(`${running.brokers}\n`)
        return 0
      }
      const broker = await startBroker({
        dir: cliStateDir,
        port: cliPort('KAFKA_PORT') ?? 9092,
        controllerPort: cliPort('KAFKA_CONTROLLER_PORT'),
        detached: true,
      }).catch((error: Error) => {
        throw new Error(`${error.message} (KAFKA_PORT and KAFKA_CONTROLLER_PORT choose the ports)`)
      })
      say(`pid ${broker.pid}, data and logs in ${broker.dir}; stop it with: npm run kafka:stop`)
      say(`use it with: export KAFKA_BROKERS=${broker.brokers}`)
      process.stdout.write(`${broker.brokers}\n`)
      return 0
    }
    case 'stop': {
      const running = runningBroker(cliStateDir)
      if (!running) {
        say('not running')
        return 0
      }
      const started = performance.now()
      await stopProcess(running.pid, () => !isProcessAlive(running.pid))
      rmSync(join(cliStateDir, 'kafka.pid'), { force: true })
      say(`stopped (pid ${running.pid}) in ${seconds(started)}`)
      return 0
    }
    case 'status': {
      const running = runningBroker(cliStateDir)
      process.stdout.write(
        running ? `running (pid ${running.pid}) on ${running.brokers}, data in ${cliStateDir}\n` : 'not running\n',
      )
      return running ? 0 : 1
    }
    default:
      process.stderr.write(
        'usage: node scripts/kafka.ts start | stop | status | console-consumer [kafka-console-consumer options]\n',
      )
      return 2
  }
}

if (import.meta.main) {
  try {
    process.exitCode = await cli(process.argv[2])
  } catch (error) {
    say(error instanceof Error ? error.message : String(error))
    process.exitCode = 1
  }
}
