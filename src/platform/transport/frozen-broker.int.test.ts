import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { pgliteTestDatabase, type TestDatabase, uniqueName, waitFor } from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { createMetrics } from '../metrics.ts'
import { createOutboxSignal, enqueue, type OutboxRelay, startOutboxRelay } from '../outbox/outbox.ts'
import { migratePlatform } from '../sql/migrations.ts'
import { instrumentTransport } from './instrumented.ts'
import { createKafkaTransport } from './kafka.ts'
import type { Transport } from './port.ts'

/**
 * A frozen broker (SIGSTOP: connections are accepted by the kernel, nothing ever answers) must not
 * be invisible: the readiness ping fails within seconds, and the outbox relay times its publish out,
 * logs it and counts it, instead of hanging silently. The frozen broker here is a TCP server that
 * accepts and never answers, which is exactly what a stopped broker looks like from the client.
 */
describe('a frozen broker is visible', () => {
  let frozen: Server
  const sockets = new Set<Socket>()
  let brokers: string
  let database: TestDatabase
  let transport: Transport
  let relay: OutboxRelay | undefined

  before(async () => {
    frozen = createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve) => frozen.listen(0, '127.0.0.1', resolve))
    const address = frozen.address()
    if (!address || typeof address === 'string') throw new Error('no address')
    brokers = `127.0.0.1:${address.port}`
    database = await pgliteTestDatabase()
    await migratePlatform(database.db)
  })
  after(async () => {
    await relay?.stop()
    await transport?.close().catch(() => {})
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => frozen.close(resolve))
    await database?.cleanup()
  })

  it('fails the readiness ping within seconds, and times the relay’s publish out with a warning and a metric', async () => {
    const lines: string[] = []
    const logger = createLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(line) } })
    const metrics = createMetrics()
    transport = instrumentTransport(
      await createKafkaTransport({
        brokers: [brokers],
        clientId: uniqueName('frozen'),
        partitions: 1,
        replicationFactor: 1,
        requiredAcks: 'all',
        retries: 0,
        retryBackoffMs: 100,
      }),
      { logger, metrics },
    )

    const pingStarted = Date.now()
    await assert.rejects(transport.ping(), /did not answer within 3 s/)
    assert.ok(Date.now() - pingStarted < 4_500, `the ping gave up after ${Date.now() - pingStarted} ms`)

    const signal = createOutboxSignal()
    await enqueue(database.db, [{ topic: 'frozen-topic', key: 'k', value: '{}' }])
    const relayStarted = Date.now()
    relay = startOutboxRelay({
      db: database.db,
      transport,
      signal,
      logger,
      leaseMs: 3_000,
      publishTimeoutMs: 1_000,
      retryBaseMs: 100,
    })
    signal.notify()
    await waitFor(() => lines.some((line) => line.includes('outbox publish timed out')), {
      timeoutMs: 10_000,
      message: () => `the relay logs the timed-out publish (logged: ${lines.join('')})`,
    })
    assert.ok(Date.now() - relayStarted < 5_000, `the first warning came ${Date.now() - relayStarted} ms in`)
    await waitFor(async () => (await metrics.publishFailures.get()).values.some((v) => v.value > 0), {
      message: 'orderflow_publish_failures_total moves',
    })
    assert.equal(await relay.pending(), 1, 'the row stays pending, to be published when the broker thaws')
  })
})
