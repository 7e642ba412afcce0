import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { describe, it } from 'node:test'
import { freePort, waitFor } from '../../../test/support/index.ts'
import { createLogger } from '../logger.ts'
import { probeBroker, watchBrokers } from './broker-watch.ts'

/** A wrong KAFKA_BROKERS is said once, in words, with the cause; and again when a broker answers. */
describe('broker watch', () => {
  it('names an unresolvable host and a closed port, and finds an open one', async () => {
    const unresolvable = await probeBroker('no-such-host.invalid:9092')
    assert.equal(unresolvable.ok, false)
    assert.match(unresolvable.cause ?? '', /'no-such-host\.invalid' does not resolve \((ENOTFOUND|EAI_AGAIN)\)/)
    const port = await freePort()
    const closed = await probeBroker(`127.0.0.1:${port}`)
    assert.match(closed.cause ?? '', /nothing listens on 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/)
    const server = createServer((socket) => socket.end())
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    try {
      assert.deepEqual(await probeBroker(`127.0.0.1:${port}`), { broker: `127.0.0.1:${port}`, ok: true })
    } finally {
      server.close()
    }
  })

  it('logs one line naming KAFKA_BROKERS while none answers, and one when a broker comes', async () => {
    const port = await freePort()
    const lines: Array<{ level: string; msg: string }> = []
    const logger = createLogger({
      level: 'info',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    })
    const watch = watchBrokers({
      brokers: [`127.0.0.1:${port}`],
      logger,
      consequence: 'Orders wait.',
      firstIntervalMs: 50,
    })
    await watch.checked
    assert.match(watch.problem() ?? '', new RegExp(`KAFKA_BROKERS=127\\.0\\.0\\.1:${port}`))
    const server = createServer((socket) => socket.end())
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    try {
      await waitFor(() => watch.problem() === undefined, {
        timeoutMs: 10_000,
        message: () => 'the broker was not seen',
      })
      const errors = lines.filter((l) => l.level === 'error')
      assert.equal(errors.length, 1, JSON.stringify(lines))
      assert.match(errors[0]?.msg ?? '', /no Kafka broker of KAFKA_BROKERS=.*ECONNREFUSED.*Orders wait\./)
      assert.ok(lines.some((l) => l.msg.includes('answers again')))
    } finally {
      watch.stop()
      server.close()
    }
  })
})
