/**
 * One outbox relay as an OS process of its own, for the tests of relays side by side: its own
 * connection pool onto a PostgreSQL schema and its own Kafka producer.
 *
 *   node test/support/outbox-relay-process.ts '{"schema":"…","holder":"a","shards":8,"leaseMs":3000}'
 *
 * It writes JSON lines on stdout: the relay's info logs, `{"joined":true}` once it has joined the
 * shards (or `{"refused":"…"}`), and `{"published":n}` after each batch. SIGTERM stops the relay as
 * a process would on shutdown (its shards are released) and exits.
 */
import { createLogger } from '../../src/platform/logger.ts'
import { createOutboxSignal, startOutboxRelay } from '../../src/platform/outbox/outbox.ts'
import { openPostgres } from '../../src/platform/sql/postgres.ts'
import { createKafkaTransport } from '../../src/platform/transport/kafka.ts'
import { kafkaBrokers, testDatabaseUrl } from './index.ts'

interface RelayProcessOptions {
  schema: string
  holder: string
  shards: number
  leaseMs: number
  pollIntervalMs?: number
}

const options = JSON.parse(process.argv[2] ?? '{}') as RelayProcessOptions
const line = (fields: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(fields)}\n`)

const db = openPostgres({ connectionString: testDatabaseUrl, schema: options.schema })
const transport = await createKafkaTransport({
  brokers: kafkaBrokers(),
  clientId: `relay-${options.holder}`,
  partitions: 3,
  replicationFactor: 1,
  requiredAcks: 'all',
  retries: 0,
  retryBackoffMs: 100,
})
// Connected before the relay starts: its first publish must not spend its timeout on connecting.
await transport.ping()
const relay = startOutboxRelay({
  db,
  transport,
  signal: createOutboxSignal(),
  logger: createLogger({ level: 'info' }),
  holderId: options.holder,
  shards: options.shards,
  leaseMs: options.leaseMs,
  pollIntervalMs: options.pollIntervalMs ?? 20,
  retryBaseMs: 20,
  retryMaxMs: 200,
  onPublished: (published) => line({ published }),
})
relay.joined.then(
  () => line({ joined: true }),
  (error: Error) => line({ refused: error.message }),
)

process.once('SIGTERM', () => {
  void (async () => {
    await relay.stop()
    await transport.close()
    await db.close()
    line({ stopped: true })
    process.exit(0)
  })()
})
