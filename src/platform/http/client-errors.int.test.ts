import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { createLogger } from '../logger.ts'
import { createMetrics } from '../metrics.ts'
import { createHttpServer } from './server.ts'

/**
 * Errors Node's HTTP server raises before a request reaches a route: each answered as what it is.
 * A timeout is emitted here as Node emits it (`clientError`, `ERR_HTTP_REQUEST_TIMEOUT`): Node checks
 * its timeouts every 30 s, too slow to wait for in a test.
 */
describe('HTTP client errors', () => {
  let app: FastifyInstance
  let port: number
  before(async () => {
    app = createHttpServer({ logger: createLogger({ level: 'silent' }), metrics: createMetrics(), checks: [] })
    await app.listen({ port: 0, host: '127.0.0.1' })
    port = (app.server.address() as { port: number }).port
  })
  after(() => app.close())

  /** Opens a connection, hands the server's side of it to `onServerSide`, and reads what the client gets. */
  const exchange = async (write: string, onServerSide: (socket: Socket) => void): Promise<string> => {
    const serverSide = new Promise<Socket>((resolve) => app.server.once('connection', resolve))
    const client = connect(port, '127.0.0.1')
    const received: Buffer[] = []
    client.on('data', (chunk) => received.push(chunk))
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()))
    client.on('error', () => {})
    await new Promise<void>((resolve) => client.once('connect', () => resolve()))
    if (write) client.write(write)
    onServerSide(await serverSide)
    await closed
    return Buffer.concat(received).toString()
  }

  it('answers a request not received in time with 408 REQUEST_TIMEOUT, not 400', async () => {
    const answer = await exchange('POST /api/orders HTTP/1.1\r\nhost: x\r\n', (socket) => {
      app.server.emit(
        'clientError',
        Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }),
        socket,
      )
    })
    assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/)
    assert.match(answer, /content-type: application\/problem\+json/)
    const problem = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { status: number; code: string }
    assert.equal(problem.status, 408)
    assert.equal(problem.code, 'REQUEST_TIMEOUT')
  })

  it('writes nothing to a connection the client reset', async () => {
    const answer = await exchange('', (socket) => {
      app.server.emit('clientError', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), socket)
    })
    assert.equal(answer, '')
  })

  it('answers what the parser refuses with 400 VALIDATION_FAILED', async () => {
    const answer = await exchange('NOT HTTP AT ALL\r\n\r\n', () => {})
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
    assert.match(answer, /"code":"VALIDATION_FAILED"/)
  })
})
