import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { InjectOptions } from 'fastify'
import { SCOPES } from '../src/auth/api-keys.ts'
import { build, randomKeyring, testKeys } from './helper.ts'
import { buildRequest, documentOf, ingestBodies, isErrorBody, loginBody, needsKey } from './routes-helpers.ts'

/*
 * The outside view, generated from the served OpenAPI document so that a new route cannot skip
 * it: every documented operation with no key, an unknown key and each single-scope key, checked
 * against the scopes the document says it needs (`x-scopes`, from the route's own auth hook),
 * and, for audited operations (`x-audit-action`), the audit row each call leaves.
 */

test('every documented operation: 401 without a key or with an unknown one, 403 or 2xx for each single-scope key, one audit row per call where audited', async (t) => {
  const { app, services, tokens } = await build(t, { env: { RATE_LIMIT_PER_MINUTE: '1000000', AUDIT_REFUSALS_PER_WINDOW: '1000000' }, keys: testKeys(undefined, undefined, randomKeyring('p1')) })
  // A row for the examples to find (the first row of a fresh database has id 1, the PII example's id).
  await ingestBodies(services, [loginBody()])
  const document = await documentOf(app)
  const operations = Object.entries(document.paths)
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method, operation })))
    // erasure last: it may destroy what the other examples read
    .sort((a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'))
  assert.ok(operations.length >= 8, `${operations.length} operations documented`)

  const auditRows = async () => {
    const [row] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM audit_log`
    return row?.n ?? -1
  }
  const lastAudit = async () => (await services.sql<{ action: string; key_name: string | null; status: number }[]>`
    SELECT action, key_name, status FROM audit_log ORDER BY id DESC LIMIT 1`)[0]

  for (const { path, method, operation } of operations) {
    const name = `${method.toUpperCase()} ${path}`
    const { request } = buildRequest(path, method, operation, tokens.all)
    const withKey = (authorization: string | undefined): InjectOptions => {
      const headers = { ...(request.headers as Record<string, string>) }
      delete headers.authorization
      return { ...request, headers: authorization === undefined ? headers : { ...headers, authorization } }
    }
    const action = operation['x-audit-action']
    const call = async (authorization: string | undefined, keyName: string | null) => {
      const before = await auditRows()
      const response = await app.inject(withKey(authorization))
      if (action !== undefined) {
        assert.equal(await auditRows(), before + 1, `${name}: one audit row per call`)
        assert.deepEqual({ ...(await lastAudit()) }, { action, key_name: keyName, status: response.statusCode }, `${name}: the audit row`)
      } else {
        assert.equal(await auditRows(), before, `${name} is not audited`)
      }
      return response
    }

    if (!needsKey(operation)) {
      const open = await call(undefined, null)
      assert.ok(open.statusCode < 400, `${name} is open: ${open.statusCode}`)
      assert.equal(operation['x-scopes'], undefined, `${name}: an open operation names no scope`)
      continue
    }
    const scopes = operation['x-scopes']
    assert.ok(scopes !== undefined && scopes.length > 0 && scopes.every((s) => (SCOPES as readonly string[]).includes(s)), `${name} documents the scopes it needs: ${JSON.stringify(scopes)}`)

    for (const [what, authorization] of [['no key', undefined], ['an unknown key', 'Bearer lik_not-a-key-of-this-service']] as const) {
      const refused = await call(authorization, null)
      assert.equal(refused.statusCode, 401, `${name} with ${what}: ${refused.body}`)
      assert.ok(isErrorBody(refused) && refused.headers['www-authenticate'] === 'Bearer', `${name} with ${what}`)
    }
    for (const scope of SCOPES) {
      const response = await call(`Bearer ${tokens[scope]}`, scope.replace(':', '-'))
      if (scopes.includes(scope)) {
        assert.ok(response.statusCode >= 200 && response.statusCode < 300, `${name} with the ${scope} key: ${response.statusCode} ${response.body.slice(0, 200)}`)
      } else {
        assert.equal(response.statusCode, 403, `${name} with the ${scope} key: ${response.body.slice(0, 200)}`)
        assert.ok(isErrorBody(response))
      }
    }
  }
})
