import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { test } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import { sendBodies } from '../src/embedded/samples.ts'
import { build } from './helper.ts'
import { bearer, ingestBodies, isErrorBody, loginBody, proxiedApp } from './routes-helpers.ts'

/*
 * Issue 11, an outside attacker's view: a flood of refused calls costs bounded audit storage,
 * refused PII calls are audited whatever the caller sends, requests must arrive in time, one
 * rate-limit bucket per key, reasons decoded from UTF-8, and query integers in decimal digits.
 */

const LONG_REASON = 'U'.repeat(500)

async function auditRows(app: Awaited<ReturnType<typeof build>>['app']) {
  return app.services.sql<{ key_name: string | null; target: string | null; reason: string | null; status: number; calls: number; note: string | null }[]>`
    SELECT key_name, target, reason, status, calls, note FROM audit_log ORDER BY id`
}

test('a flood of unauthenticated PII calls adds at most (allowed per window + 1) rows per window, and the counts add up', async (t) => {
  const perWindow = 5
  const windowMs = 400
  const { app } = await build(t, { env: { AUDIT_REFUSALS_PER_WINDOW: String(perWindow), AUDIT_REFUSAL_WINDOW_MS: String(windowMs), AUTH_FAILURES_PER_MINUTE: '1000000' } })
  const calls = 300
  const started = Date.now()
  for (let i = 0; i < calls; i++) {
    const response = await app.inject({ url: '/logins/1/pii', headers: { 'x-access-reason': LONG_REASON } })
    assert.equal(response.statusCode, 401)
  }
  const windows = Math.ceil((Date.now() - started) / windowMs) + 1
  const [{ n } = { n: -1 }] = await app.services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM audit_log`
  assert.ok(n <= windows * (perWindow + 1), `${calls} refused calls over ${windows} windows wrote ${n} rows (at most ${windows * (perWindow + 1)})`)
  // The timer writes the summaries (no shutdown needed, so a kill -9 loses one window at most).
  let rows = await auditRows(app)
  const deadline = Date.now() + 5000
  while (rows.reduce((sum, r) => sum + r.calls, 0) < calls && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, windowMs))
    rows = await auditRows(app)
  }
  assert.equal(rows.reduce((sum, r) => sum + r.calls, 0), calls, 'the recorded counts add up to the calls')
  assert.ok(rows.length <= (Math.ceil((Date.now() - started) / windowMs) + 1) * (perWindow + 1), `${rows.length} rows`)
  const summaries = rows.filter((r) => r.calls > 1)
  assert.ok(summaries.length > 0, 'refusals beyond the rate are summarised')
  for (const s of summaries) assert.deepEqual({ status: s.status, key_name: s.key_name, target: s.target, reason: s.reason }, { status: 401, key_name: null, target: null, reason: null })
  assert.ok(rows.every((r) => r.reason === null || r.reason === LONG_REASON))
})

test('failed authentications are limited per client address; a valid key from that address is not', async (t) => {
  const { app, tokens } = await build(t, { env: { AUTH_FAILURES_PER_MINUTE: '3' } })
  const from = (remoteAddress: string, headers: Record<string, string> = {}) => app.inject({ url: '/logins', remoteAddress, headers })
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await from('192.0.2.10', bearer('lik_wrong'))).statusCode)
  assert.deepEqual(statuses, [401, 401, 401, 429, 429])
  const limited = await from('192.0.2.10')
  assert.equal(limited.statusCode, 429)
  assert.ok(isErrorBody(limited) && limited.headers['retry-after'], limited.body)
  assert.equal((await from('192.0.2.10', bearer(tokens['logins:read']))).statusCode, 200, 'a valid key is admitted from a limited address')
  assert.equal((await from('192.0.2.11')).statusCode, 401, 'another address has its own count')
})

test('refused PII calls are audited whatever the caller sends, in the error shape, without echoing input', async (t) => {
  const { app, tokens } = await build(t)
  const reason = { 'x-access-reason': 'PENTEST-1 hardening' }
  const longId = 'u'.repeat(1001)
  const cases: { method: 'GET' | 'DELETE'; url: string; key?: string; status: number; target: string; note: RegExp | null }[] = [
    { method: 'GET', url: '/logins/1%00/pii', status: 401, target: '1\\u0000', note: /target escaped/ },
    { method: 'DELETE', url: '/users/x%00/pii', status: 401, target: 'x\\u0000', note: /target escaped/ },
    { method: 'DELETE', url: '/users/x%00/pii', key: tokens['pii:erase'], status: 400, target: 'x\\u0000', note: /target escaped/ },
    { method: 'DELETE', url: '/users/%ED%A0%80/pii', status: 401, target: '%ED%A0%80', note: /not UTF-8/ },
    { method: 'DELETE', url: '/users/%ED%A0%80/pii', key: tokens['pii:erase'], status: 400, target: '%ED%A0%80', note: /not UTF-8/ },
    { method: 'GET', url: '/logins/%C0%AF/pii', key: tokens['pii:read'], status: 400, target: '%C0%AF', note: /not UTF-8/ },
    { method: 'DELETE', url: `/users/${longId}/pii`, status: 401, target: 'u'.repeat(128), note: /truncated/ },
    { method: 'DELETE', url: `/users/${longId}/pii`, key: tokens['pii:erase'], status: 400, target: 'u'.repeat(128), note: /truncated/ },
  ]
  for (const c of cases) {
    const before = (await auditRows(app)).length
    const response: LightMyRequestResponse = await app.inject({ method: c.method, url: c.url, headers: { ...reason, ...(c.key ? bearer(c.key) : {}) } })
    const what = `${c.method} ${c.url.slice(0, 40)} ${c.key ? 'with' : 'without'} a key`
    assert.equal(response.statusCode, c.status, `${what}: ${response.body.slice(0, 200)}`)
    assert.ok(isErrorBody(response), `${what}: error shape: ${response.body.slice(0, 200)}`)
    assert.ok(!response.body.includes('%ED') && !response.body.includes('uuuuuuuuuu') && !response.body.includes('x\\u0000'), `${what}: no input echoed: ${response.body.slice(0, 200)}`)
    const rows = (await auditRows(app)).slice(before)
    assert.equal(rows.length, 1, `${what}: one audit row`)
    assert.equal(rows[0]?.status, c.status)
    assert.equal(rows[0]?.target, c.target, `${what}: target as stored`)
    assert.match(rows[0]?.note ?? '', c.note ?? /^$/, `${what}: the note says how the target was stored`)
  }
})

test('X-Access-Reason is read as UTF-8; bytes that are not UTF-8 get a 400 that says so', async (t) => {
  const { app, services, tokens } = await build(t)
  const [id] = await ingestBodies(services, [loginBody()])
  const sent = 'PENTEST 🙂 ünïcode'
  // What Node's HTTP parser hands over: each byte of the header as one Latin-1 character.
  const onTheWire = (text: string) => Buffer.from(text, 'utf8').toString('latin1')
  const ok = await app.inject({ url: `/logins/${id}/pii`, headers: { ...bearer(tokens['pii:read']), 'x-access-reason': onTheWire(sent) } })
  assert.equal(ok.statusCode, 200, ok.body)
  const refused = await app.inject({ url: `/logins/${id}/pii`, headers: { 'x-access-reason': onTheWire(sent) } })
  assert.equal(refused.statusCode, 401)
  const latin1 = await app.inject({ url: `/logins/${id}/pii`, headers: { ...bearer(tokens['pii:read']), 'x-access-reason': 'caf\u00e9 review' } })
  assert.equal(latin1.statusCode, 400)
  assert.match(latin1.json<{ message: string }>().message, /x-access-reason must be UTF-8/)
  const rows = (await auditRows(app)).slice(-3)
  assert.deepEqual(rows.map((r) => [r.status, r.reason]), [[200, sent], [401, sent], [400, 'caf\\xe9 review']])
  assert.match(rows[2]?.note ?? '', /reason not UTF-8/)
})

test('one rate-limit bucket per key across the API routes', async (t) => {
  const { app, tokens } = await build(t, { env: { RATE_LIMIT_PER_MINUTE: '3' } })
  const h = bearer(tokens['logins:read'])
  const statuses = []
  for (const url of ['/logins', '/logins/duplicates', '/logins', '/logins/duplicates']) statuses.push((await app.inject({ url, headers: h })).statusCode)
  assert.deepEqual(statuses, [200, 200, 200, 429])
  assert.equal((await app.inject({ url: '/audit', headers: bearer(tokens.all) })).statusCode, 200, 'another key has its own bucket')
})

test('query integers are decimal digits; bodies are not coerced', async (t) => {
  const { app, tokens } = await build(t)
  const h = bearer(tokens.all)
  for (const value of ['0x10', '1e3', '%2010', '10%20', '+10', '0b11', '1.0']) {
    const response = await app.inject({ url: `/logins?limit=${value}`, headers: h })
    assert.equal(response.statusCode, 400, `limit=${value}: ${response.body}`)
    assert.match(response.json<{ message: string }>().message, /querystring\/limit/)
  }
  assert.equal((await app.inject({ url: '/logins?limit=16', headers: h })).statusCode, 200)
  assert.equal((await app.inject({ url: '/logins/duplicates?min_count=0x2', headers: h })).statusCode, 400)
  for (const payload of ['null', '{"maxSeconds":"1"}', '{"maxMessages":"10"}', '{"maxSeconds":true}']) {
    const response = await app.inject({ method: 'POST', url: '/ingest', headers: { ...h, 'content-type': 'application/json' }, payload })
    assert.equal(response.statusCode, 400, `POST /ingest ${payload}: ${response.body}`)
    assert.ok(isErrorBody(response))
  }
  assert.equal((await app.inject({ method: 'POST', url: '/ingest', headers: h })).statusCode, 200, 'no body at all is still all defaults')
  assert.equal((await app.inject({ method: 'POST', url: '/ingest', headers: h, payload: { maxSeconds: 1 } })).statusCode, 200)
})

/** Writes `head` on a raw socket and resolves with what the server answered and when it closed. */
function slowClient(port: number, head: string): Promise<{ answer: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = connect(port, '127.0.0.1', () => socket.write(head))
    let answer = ''
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')))
    socket.on('error', reject)
    socket.on('close', () => resolve({ answer, ms: Date.now() - started }))
    setTimeout(() => {
      socket.destroy()
      resolve({ answer: 'still open after 20 s', ms: Date.now() - started })
    }, 20_000).unref()
  })
}

test('requests must arrive within HTTP_REQUEST_TIMEOUT_MS; a long POST /ingest drain is an answer and keeps working', async (t) => {
  const { app, proxy, queue, tokens } = await proxiedApp(t, { HTTP_REQUEST_TIMEOUT_MS: '1000' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port

  const body = await slowClient(port, 'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"a')
  // (an unknown route is answered 404 at once; the unfinished body then costs the socket)
  assert.match(body.answer, /HTTP\/1\.1 408/, `a body that never arrives: ${body.answer.slice(-80)}`)
  assert.ok(body.ms < 10_000, `closed after ${body.ms} ms`)
  const headers = await slowClient(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ')
  assert.match(headers.answer, /^HTTP\/1\.1 408/, `headers that never end: ${headers.answer.slice(0, 80)}`)

  // The database stalls for three request timeouts while the drain stores: the answer waits, the request is not cut.
  await sendBodies(queue.client, queue.queueUrl, Array.from({ length: 5 }, () => JSON.stringify(loginBody())))
  proxy.stall()
  const restore = setTimeout(() => void proxy.restore(), 3000)
  t.after(() => clearTimeout(restore))
  const started = Date.now()
  const drained = await fetch(`http://127.0.0.1:${port}/ingest`, {
    method: 'POST',
    headers: { ...bearer(tokens['ingest:run']), 'content-type': 'application/json' },
    body: JSON.stringify({ maxSeconds: 20 }),
  })
  const report = await drained.json() as { inserted: number }
  assert.equal(drained.status, 200, JSON.stringify(report))
  assert.ok(Date.now() - started >= 2500, `the drain took ${Date.now() - started} ms, longer than the request timeout`)
  assert.equal(report.inserted, 5)
})
