import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import fc from 'fast-check'
import { sampleBodies, sendBodies } from '../src/embedded/samples.ts'
import { build, randomKeyring, testKeys } from './helper.ts'
import { bearer, buildRequest, documentOf, documented, exampleOf, isErrorBody, needsKey, valueOf, type Operation } from './routes-helpers.ts'

/*
 * The served OpenAPI document against the app: every operation's documented example request
 * runs and gets a status the operation documents (a success, in fact); what the document marks
 * as required is required and nothing else is; and generated requests (random query strings,
 * path values, headers and bodies) never get a 500, and every refusal has the error shape.
 */

test('documented examples and generated requests against the app', async (t) => {
  // With the optional IP_PREFIX_KEYS on, so that the documented ip_network examples apply.
  const { app, tokens, queue } = await build(t, { env: { RATE_LIMIT_PER_MINUTE: '1000000' }, keys: testKeys(undefined, undefined, randomKeyring('p1')) })
  // Real rows first (the exercise's samples, one of them invalid), so examples find data.
  await sendBodies(queue.client, queue.queueUrl, await sampleBodies())
  const drained = await app.inject({ method: 'POST', url: '/ingest', headers: bearer(tokens['ingest:run']) })
  assert.equal(drained.json<{ inserted: number }>().inserted, 99, drained.body)

  const document = await documentOf(app)
  const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation })))

  await t.test('the document covers the API', () => {
    const names = operations.map((o) => `${o.method.toUpperCase()} ${o.path}`)
    for (const expected of ['GET /logins', 'GET /logins/duplicates', 'GET /logins/{id}/pii', 'GET /audit', 'POST /ingest', 'GET /healthz', 'GET /readyz']) {
      assert.ok(names.includes(expected), `${expected} is documented (${names.join(', ')})`)
    }
  })

  await t.test('every documented example request succeeds with a documented status', async () => {
    // Erasure last: it destroys the example user's originals, which the PII example may read.
    const ordered = [...operations].sort((a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'))
    for (const { path, method, operation } of ordered) {
      const { request } = buildRequest(path, method, operation, tokens.all)
      const response = await app.inject(request)
      const what = `${request.method} ${request.url}`
      assert.ok(documented(operation, response.statusCode), `${what}: ${response.statusCode} is documented (${Object.keys(operation.responses).join(', ')})`)
      assert.ok(response.statusCode >= 200 && response.statusCode < 300, `${what}: the example works: ${response.statusCode} ${response.body.slice(0, 300)}`)
      if (needsKey(operation)) {
        const anonymous = await app.inject({ ...request, headers: { ...(request.headers as Record<string, string>), authorization: '' } })
        assert.equal(anonymous.statusCode, 401, `${what} without a key`)
        assert.ok(documented(operation, 401))
      }
    }
  })

  await t.test('a parameter the document marks required is required, and one it marks optional is not', async () => {
    for (const { path, method, operation } of operations) {
      if (method === 'delete') continue
      for (const parameter of operation.parameters ?? []) {
        if (parameter.in === 'path') continue
        const { request, used } = buildRequest(path, method, operation, tokens.all, parameter)
        if (used.length === 0 && parameter.required !== true && exampleOf(parameter) === undefined) continue
        const response = await app.inject(request)
        const what = `${request.method} ${path} without ${parameter.in} ${parameter.name} (documented ${parameter.required === true ? 'required' : 'optional'})`
        if (parameter.required === true) assert.equal(response.statusCode, 400, `${what}: ${response.statusCode} ${response.body.slice(0, 200)}`)
        else assert.ok(response.statusCode >= 200 && response.statusCode < 300, `${what}: ${response.statusCode} ${response.body.slice(0, 200)}`)
      }
      const body = operation.requestBody
      if (body !== undefined) {
        const { request } = buildRequest(path, method, operation, tokens.all)
        delete request.payload
        const response = await app.inject(request)
        const what = `${request.method} ${path} without a body (documented ${body.required === true ? 'required' : 'optional'})`
        if (body.required === true) assert.equal(response.statusCode, 400, what)
        else assert.ok(response.statusCode >= 200 && response.statusCode < 300, `${what}: ${response.statusCode}`)
        const schema = body.content['application/json']?.schema as { required?: string[] } | undefined
        for (const field of schema?.required ?? []) {
          const partial: Record<string, unknown> = { ...(body.content['application/json']?.example as Record<string, unknown>) }
          delete partial[field]
          const without: LightMyRequestResponse = await app.inject({ ...request, payload: partial as InjectOptions['payload'] })
          assert.equal(without.statusCode, 400, `${request.method} ${path}: body field ${field} is documented as required`)
        }
      }
    }
  })

  // ---- generated requests ------------------------------------------------------------------

  const auth = fc.oneof(
    { weight: 8, arbitrary: fc.constant({ authorization: `Bearer ${tokens.all}` }) },
    { weight: 1, arbitrary: fc.constantFrom<Record<string, string>>({ authorization: `Bearer ${tokens['logins:read']}` }, { authorization: 'Bearer lik_unknown' }, {}) },
  )
  const percentEncode = (bytes: Uint8Array): string => [...bytes].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('')
  /** Any text, encoded as UTF-8 (lone surrogates become U+FFFD on the way). */
  const anyText = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: fc.constantFrom('a', '\u0000', '\u0001', '\u001f', '\u007f', '\u00e9', '\u2028', '\ufeff', '\ud83d\ude00', '\\', '%', ' '), maxLength: 12 }),
    fc.constantFrom('', ' ', '0', '-1', '1e309', 'NaN', 'Infinity', 'null', 'true', '[]', '{}', '2.3.0', '2026-02-30', '2026-13-40', '9'.repeat(400), '\u0000', 'a\u0000b', '../../etc/passwd', "' OR 1=1 --", 'x'.repeat(2000)),
    fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map(String),
    fc.double().map(String),
  )
  const encodedText = fc.oneof(
    { weight: 4, arbitrary: anyText.map((s) => percentEncode(Buffer.from(s, 'utf8'))) },
    // raw bytes: invalid UTF-8, overlong forms, NUL, CESU surrogates
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map(percentEncode) },
    // malformed percent-escapes and reserved characters left raw
    { weight: 1, arbitrary: fc.constantFrom('%', '%z', '%E0%A4%A', '%%', '+', '&', '=', ';', '#frag', '?', '%ED%A0%80', '%C0%80') },
  )
  const allNames = [...new Set(operations.flatMap((o) => (o.operation.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name)))]
  /**
   * Query strings for one operation: a subset of its documented examples (valid) with zero to two
   * parameters set to generated values, so most requests pass validation but one value is odd
   * and reaches the handler and the database; sometimes a parameter of another route or a stranger.
   */
  const queryStringFor = (operation: Operation) => {
    const own = (operation.parameters ?? []).filter((p) => p.in === 'query')
    const valid = own.flatMap((p) => {
      const v = valueOf(p)
      return v === undefined ? [] : [[p.name, encodeURIComponent(v)] as [string, string]]
    })
    const key = fc.oneof(
      ...(own.length > 0 ? [{ weight: 8, arbitrary: fc.constantFrom(...own.map((p) => p.name)) }] : []),
      { weight: 1, arbitrary: fc.constantFrom(...allNames) },
      { weight: 1, arbitrary: encodedText },
    )
    const value = fc.oneof({ weight: 6, arbitrary: encodedText }, { weight: 1, arbitrary: fc.constant(null) })
    return fc
      .tuple(
        valid.length > 0 ? fc.subarray(valid) : fc.constant([] as [string, string][]),
        fc.array(fc.tuple(key, value), { maxLength: own.length > 0 ? 2 : 1 }),
      )
      .map(([base, odd]) => {
        const pairs = new Map<string, string | null>(base)
        for (const [k, v] of odd) pairs.set(k, v)
        return [...pairs].map(([k, v]) => (v === null ? k : `${k}=${v}`)).join('&')
      })
  }
  const pathValue = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 120 }).map(String) },
    { weight: 1, arbitrary: fc.constantFrom('424cdd21-063a-43a7-b91b-7ca1a833afae', '1', '2', '0', '-1', '01', '9223372036854775807', '9223372036854775808', '1'.repeat(40), 'abc', '%00', 'a%00b', '%2F', '..', '%20') },
    { weight: 2, arbitrary: anyText.filter((s) => s.length > 0).map((s) => percentEncode(Buffer.from(s, 'utf8'))) },
  )
  const reasonHeader = fc.oneof(
    { weight: 6, arbitrary: fc.constant('INC-1 generated request') },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 600 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')) },
    { weight: 1, arbitrary: fc.constantFrom('valid reason 123', '', 'four') },
  )
  const jsonBody = fc.oneof(
    { weight: 3, arbitrary: fc.record({
      maxMessages: fc.oneof(fc.integer({ min: -10, max: 50 }), fc.double(), fc.string(), fc.constant(null), fc.constant(Number.MAX_VALUE)),
      maxSeconds: fc.oneof(fc.integer({ min: -2, max: 2 }), fc.constant(301), fc.string(), fc.constant(null)),
    }, { requiredKeys: [] }).map((o) => JSON.stringify(o)) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.constantFrom('{', '[', '', '{"maxMessages":1,"maxMessages":2}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', 'null', '1e400', '"\\u0000"', '{"maxMessages":1e400}') },
  )
  /** content type and body: mostly none or JSON, sometimes anything */
  const payloadArb = fc.oneof(
    { weight: 5, arbitrary: fc.constant({ type: undefined, payload: undefined }) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom('application/json', 'application/json; charset=utf-8'), jsonBody).map(([type, payload]) => ({ type, payload })) },
    {
      weight: 1,
      arbitrary: fc.record({
        type: fc.constantFrom(undefined, 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'multipart/form-data; boundary=x', 'foo/bar', 'application/json; charset=latin1', ''),
        payload: fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), jsonBody),
      }),
    },
  )

  const check = (response: LightMyRequestResponse, what: string): void => {
    assert.ok(response.statusCode < 500, `${what} -> ${response.statusCode} ${response.body.slice(0, 300)}`)
    if (response.statusCode >= 400) assert.ok(isErrorBody(response), `${what}: error body {statusCode, error, message}: ${response.body.slice(0, 300)}`)
  }

  for (const { path, method, operation } of operations) {
    const queryString = queryStringFor(operation)
    await t.test(`generated requests: ${method.toUpperCase()} ${path} never answers 5xx`, async () => {
      const statuses = new Map<number, number>()
      await fc.assert(
        fc.asyncProperty(queryString, pathValue, auth, reasonHeader, payloadArb, async (query, id, key, reason, { type, payload }) => {
          const url = path.replace(/\{[^}]+\}/g, id) + (query === '' ? '' : `?${query}`)
          const headers: Record<string, string> = { ...key }
          if (reason !== undefined) headers['x-access-reason'] = reason
          if (type !== undefined) headers['content-type'] = type
          const request: InjectOptions = { method: method.toUpperCase() as InjectOptions['method'], url, headers }
          // GET routes get a body too: a body the route does not expect must not break it.
          if (payload !== undefined) request.payload = payload
          const response = await app.inject(request)
          statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
          check(response, `${request.method} ${url} ${JSON.stringify(headers).slice(0, 120)} body=${String(payload).slice(0, 80)}`)
        }),
        // a valid POST /ingest drains the (empty) queue, which takes a second
        { numRuns: method === 'post' ? 40 : 150 },
      )
      // The generator is not vacuous: a share of the requests pass authentication and validation.
      const total = [...statuses.values()].reduce((a, b) => a + b, 0)
      const succeeded = [...statuses].filter(([status]) => status < 300).reduce((a, [, n]) => a + n, 0)
      assert.ok(succeeded >= total * 0.05, `${method.toUpperCase()} ${path}: ${succeeded} of ${total} generated requests succeeded (${JSON.stringify([...statuses])})`)
    })
  }
})
