import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestApp, testTokens } from '../../../test/support/app.ts'
import { pgliteTestDatabase, type TestDatabase } from '../../../test/support/index.ts'
import type { App } from '../../app.ts'
import { allModules } from '../../services.ts'
import { createEmbeddedTransport } from '../transport/embedded.ts'
import type { Transport } from '../transport/port.ts'
import { AUTH_REQUIREMENTS } from './auth.ts'
import { registeredRoutes, SECURITY_SCHEME } from './server.ts'

/**
 * Access is declared once per route: every route of every module says who may call it, and the
 * OpenAPI document shows the same requirement for each operation, with the bearer scheme.
 */

interface Operation {
  security?: Record<string, string[]>[]
  'x-required-role'?: string
  responses?: Record<string, unknown>
}

describe('every route declares its access', () => {
  let database: TestDatabase
  let transport: Transport
  let app: App

  before(async () => {
    database = await pgliteTestDatabase()
    transport = await createEmbeddedTransport({ db: database.db, partitions: 1, pollIntervalMs: 50 })
    const tokens = await testTokens()
    app = await startTestApp({
      db: database.db,
      transport,
      modules: allModules(),
      app: { authenticate: tokens.authenticate },
    })
  })
  after(async () => {
    await app?.close()
    await transport?.close()
    await database?.cleanup()
  })

  it('declares public, customer, service or operator on every route of every module', () => {
    const routes = registeredRoutes(app.http)
    assert.ok(routes.length > 20, `only ${routes.length} routes`)
    const undeclared = routes.filter((r) => !AUTH_REQUIREMENTS.includes(r.auth as never))
    assert.deepEqual(
      undeclared.map((r) => `${r.method} ${r.url}`),
      [],
    )
    // Public is the exception, and these are all of it.
    const publicRoutes = routes.filter((r) => r.auth === 'public' && r.method !== 'HEAD').map((r) => r.url)
    assert.deepEqual(publicRoutes.sort(), [
      '/asyncapi.json',
      '/dashboard',
      '/dashboard/:asset',
      '/health',
      '/health/live',
      '/health/ready',
      '/openapi.json',
    ])
    const operatorOnly = [
      '/metrics',
      '/api/audit',
      '/api/sagas',
      '/api/orders/:id/saga',
      '/api/orders/:id/saga/resume',
      '/api/orders/:id/saga/compensate',
      '/getAllOrderIdsFromTopic',
    ]
    for (const url of operatorOnly) {
      assert.equal(routes.find((r) => r.url === url)?.auth, 'operator', url)
    }
  })

  it('shows the bearer scheme and each operation’s requirement in the OpenAPI document', async () => {
    const document = (await app.http.inject({ method: 'GET', url: '/openapi.json' })).json<{
      components: { securitySchemes: Record<string, { type: string; scheme: string }> }
      paths: Record<string, Record<string, Operation>>
    }>()
    assert.deepEqual(
      { type: document.components.securitySchemes[SECURITY_SCHEME]?.type, scheme: 'bearer' },
      { type: 'http', scheme: document.components.securitySchemes[SECURITY_SCHEME]?.scheme },
    )
    const byRoute = new Map(
      registeredRoutes(app.http)
        .filter((r) => !r.hidden)
        .map((r) => [`${r.method.toLowerCase()} ${r.url.replace(/:(\w+)/g, '{$1}')}`, r.auth]),
    )
    let operations = 0
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        operations++
        const where = `${method.toUpperCase()} ${path}`
        const auth = byRoute.get(`${method} ${path}`)
        assert.equal(operation['x-required-role'], auth, where)
        if (auth === 'public') {
          assert.deepEqual(operation.security, [], where)
        } else {
          assert.deepEqual(operation.security, [{ [SECURITY_SCHEME]: [] }], where)
          assert.ok(operation.responses?.['401'] && operation.responses['403'], `${where} documents 401 and 403`)
          assert.ok(operation.responses?.['429'], `${where} documents 429`)
        }
      }
    }
    assert.ok(operations > 20, `only ${operations} operations`)
  })
})
