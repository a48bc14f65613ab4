import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { build } from './helper.ts'
import { bearer, ingestBodies, isErrorBody, loginBody, type LoginBody } from './routes-helpers.ts'
import type { AuditRecord } from '../src/audit/store.ts'

/*
 * GET /logins/{id}/pii and its audit trail: the right originals for the right row, every call
 * audited (allowed or refused) with the key's name and never its secret, GET /audit newest first
 * and paged, an append-only audit table, no PII when the audit write fails, and no originals in
 * the logs of the whole file. One app and one database.
 */

type AuditItem = AuditRecord

interface Page<T> {
  items: T[]
  next: string | null
}

const REASON = 'INC-2041 account takeover review'

test('PII recovery and its audit log', async (t) => {
  const { app, services, tokens, logs } = await build(t)
  const secrets = Object.values(tokens)

  // Originals the test knows, including IPv6 spellings that share a mask but are returned as sent.
  const bodies: LoginBody[] = [
    loginBody({ user_id: 'pii-user-1', ip: '192.0.2.44', device_id: 'pii-device-aaa-111' }),
    loginBody({ user_id: 'pii-user-2', ip: '2001:DB8:0:0:0:0:0:2a', device_id: 'pii-device-bbb-222' }),
    loginBody({ user_id: 'pii-user-3', ip: '2001:db8::2a', device_id: 'pii-device-ccc-333' }),
    loginBody({ user_id: 'pii-user-4', ip: '::ffff:192.0.2.44', device_id: 'pii-device-ddd-444' }),
    loginBody({ user_id: 'pii-user-5', ip: 'not-an-ip but kept', device_id: 'pii-device-eee-555' }),
    loginBody({ user_id: 'pii-user-6', ip: '198.51.100.77', device_id: 'pii-device-fff-666' }),
  ]
  await ingestBodies(services, bodies, (i) => new Date(Date.UTC(2026, i % 3, 10)))

  /** The row id of a user's (only) row, found through the API as a caller would. */
  const rowOf = async (userId: string): Promise<string> => {
    const response = await app.inject({ url: `/logins?user_id=${userId}`, headers: bearer(tokens['logins:read']) })
    const items = response.json<Page<{ id: string }>>().items
    assert.equal(items.length, 1, `one row for ${userId}`)
    return (items[0] as { id: string }).id
  }

  const lastAuditId = async (): Promise<bigint> => {
    const [row] = await services.sql<{ id: string | null }[]>`SELECT max(id)::text AS id FROM audit_log`
    return BigInt(row?.id ?? '0')
  }

  /** Runs one call and returns its answer with the audit rows it left. */
  const call = async (request: InjectOptions): Promise<{ response: LightMyRequestResponse; audit: AuditItem[] }> => {
    const before = await lastAuditId()
    const response = await app.inject(request)
    const audit = await services.sql<AuditItem[]>`
      SELECT id::text AS id, at::text AS at, action, key_name, target, reason, status, outcome, request_id
      FROM audit_log WHERE id > ${before.toString()} ORDER BY id`
    return { response, audit: [...audit] }
  }

  const piiRequest = (id: string, headers: Record<string, string>): InjectOptions => ({ url: `/logins/${id}/pii`, headers })

  await t.test('the right originals come back for the right row, never cached', async () => {
    for (const body of bodies) {
      const id = await rowOf(body.user_id)
      const { response, audit } = await call(piiRequest(id, bearer(tokens['pii:read'], { 'x-access-reason': REASON })))
      assert.equal(response.statusCode, 200, response.body)
      assert.deepEqual(response.json(), { id, ip: body.ip, device_id: body.device_id }, `originals of ${body.user_id}, as sent`)
      assert.equal(response.headers['cache-control'], 'no-store')
      assert.equal(audit.length, 1, 'one audit row per call')
      assert.deepEqual(
        { ...audit[0], id: '', at: '', request_id: '', outcome: '' },
        { id: '', at: '', action: 'pii.read', key_name: 'pii-read', target: id, reason: REASON, status: 200, outcome: '', request_id: '' },
      )
      assert.ok(audit[0]?.outcome, 'an outcome is recorded')
      assert.ok(audit[0]?.request_id, 'the request id is recorded')
      assert.ok(logs.lines.some((line) => line.reqId === audit[0]?.request_id), 'the audit row points at the request in the logs')
    }
    // the all-scopes key may read too, and is named as itself
    const id = await rowOf('pii-user-1')
    const { response, audit } = await call(piiRequest(id, bearer(tokens.all, { 'x-access-reason': REASON })))
    assert.equal(response.statusCode, 200)
    assert.equal(audit[0]?.key_name, 'all')
  })

  await t.test('a ciphertext copied to another row does not open there', async () => {
    const victim = await rowOf('pii-user-6')
    const source = await rowOf('pii-user-1')
    await services.sql`
      UPDATE pii_vault SET ciphertext = (SELECT ciphertext FROM pii_vault WHERE login_id = ${source}), data_key_id = (SELECT data_key_id FROM pii_vault WHERE login_id = ${source})
      WHERE login_id = ${victim}`
    const { response, audit } = await call(piiRequest(victim, bearer(tokens['pii:read'], { 'x-access-reason': REASON })))
    assert.notEqual(response.statusCode, 200, 'no originals from another row')
    assert.ok(isErrorBody(response), response.body)
    for (const body of bodies) assert.ok(!response.body.includes(body.ip) && !response.body.includes(body.device_id), response.body)
    assert.equal(audit.length, 1, 'the failed call is audited')
    assert.equal(audit[0]?.status, response.statusCode)
  })

  await t.test('every call, allowed or refused, leaves one audit row with the key name, target, reason and status', async () => {
    const id = await rowOf('pii-user-2')
    const erased = await rowOf('pii-user-3')
    await services.sql`DELETE FROM pii_data_keys WHERE id = (SELECT data_key_id FROM pii_vault WHERE login_id = ${erased})`
    const cases: { what: string; request: InjectOptions; status: number; key: string | null; target: string; reason: string | null }[] = [
      { what: 'allowed', request: piiRequest(id, bearer(tokens['pii:read'], { 'x-access-reason': REASON })), status: 200, key: 'pii-read', target: id, reason: REASON },
      { what: 'no reason', request: piiRequest(id, bearer(tokens['pii:read'])), status: 400, key: 'pii-read', target: id, reason: null },
      { what: 'short reason', request: piiRequest(id, bearer(tokens['pii:read'], { 'x-access-reason': 'why' })), status: 400, key: 'pii-read', target: id, reason: 'why' },
      { what: 'bad id', request: piiRequest('12abc', bearer(tokens['pii:read'], { 'x-access-reason': REASON })), status: 400, key: 'pii-read', target: '12abc', reason: REASON },
      { what: 'no key', request: piiRequest(id, { 'x-access-reason': REASON }), status: 401, key: null, target: id, reason: REASON },
      { what: 'unknown key', request: piiRequest(id, bearer('lik_guessing-a-key', { 'x-access-reason': REASON })), status: 401, key: null, target: id, reason: REASON },
      { what: 'key without pii:read', request: piiRequest(id, bearer(tokens['logins:read'], { 'x-access-reason': REASON })), status: 403, key: 'logins-read', target: id, reason: REASON },
      { what: 'no such row', request: piiRequest('987654321', bearer(tokens['pii:read'], { 'x-access-reason': REASON })), status: 404, key: 'pii-read', target: '987654321', reason: REASON },
      { what: 'erased', request: piiRequest(erased, bearer(tokens['pii:read'], { 'x-access-reason': REASON })), status: 410, key: 'pii-read', target: erased, reason: REASON },
    ]
    const outcomes = new Map<number, string>()
    for (const c of cases) {
      const { response, audit } = await call(c.request)
      assert.equal(response.statusCode, c.status, `${c.what}: ${response.body}`)
      if (c.status !== 200) assert.ok(isErrorBody(response), `${c.what}: error body`)
      assert.equal(audit.length, 1, `${c.what}: one audit row`)
      const row = audit[0] as AuditItem
      assert.deepEqual(
        { action: row.action, key_name: row.key_name, target: row.target, reason: row.reason, status: row.status },
        { action: 'pii.read', key_name: c.key, target: c.target, reason: c.reason, status: c.status },
        c.what,
      )
      assert.ok(row.outcome.length > 0 && row.request_id)
      if (outcomes.has(c.status)) assert.equal(outcomes.get(c.status), row.outcome, `one outcome name per status (${c.status})`)
      outcomes.set(c.status, row.outcome)
      for (const secret of secrets) assert.ok(!JSON.stringify(row).includes(secret), `${c.what}: the key's secret is not in the audit log`)
    }
    assert.equal(new Set(outcomes.values()).size, outcomes.size, `different statuses, different outcomes: ${JSON.stringify([...outcomes])}`)

    // The audit table holds no secret and no original anywhere.
    const everything = JSON.stringify(await services.sql`SELECT * FROM audit_log`)
    for (const secret of secrets) assert.ok(!everything.includes(secret))
    for (const body of bodies) assert.ok(!everything.includes(body.device_id))
  })

  await t.test('erasing a user (DELETE /users/{user_id}/pii) makes their rows 410, other users keep theirs', async () => {
    const mine = await rowOf('pii-user-4')
    const theirs = await rowOf('pii-user-5')
    const erase = await app.inject({ method: 'DELETE', url: '/users/pii-user-4/pii', headers: bearer(tokens['pii:erase'], { 'x-access-reason': 'DSR-77 erasure request' }) })
    assert.equal(erase.statusCode, 200, erase.body)
    const gone = await call(piiRequest(mine, bearer(tokens['pii:read'], { 'x-access-reason': REASON })))
    assert.equal(gone.response.statusCode, 410)
    assert.ok(!gone.response.body.includes('pii-device-ddd-444'))
    const kept = await call(piiRequest(theirs, bearer(tokens['pii:read'], { 'x-access-reason': REASON })))
    assert.equal(kept.response.statusCode, 200)
    assert.equal(kept.response.json<{ device_id: string }>().device_id, 'pii-device-eee-555')
    const [row] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE id = ${mine}`
    assert.equal(row?.n, 1, 'the masked row stays')
  })

  await t.test('GET /audit: newest first, paged, filtered, equal to the table', async () => {
    const table = await services.sql<AuditItem[]>`
      SELECT id::text AS id, action, key_name, target, reason, status, outcome, request_id, calls,
             to_char(first_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS first_at, note
      FROM audit_log ORDER BY audit_log.id DESC`
    assert.ok(table.length >= 15)

    const walk = async (query: string, limit: number): Promise<AuditItem[]> => {
      const items: AuditItem[] = []
      let cursor: string | null = null
      for (let i = 0; i < 1000; i++) {
        const response: LightMyRequestResponse = await app.inject({ url: `/audit?limit=${limit}${query}${cursor === null ? '' : `&cursor=${cursor}`}`, headers: bearer(tokens['audit:read']) })
        assert.equal(response.statusCode, 200, response.body)
        const page: Page<AuditItem> = response.json<Page<AuditItem>>()
        assert.ok(page.items.length <= limit)
        items.push(...page.items)
        if (page.next === null) return items
        assert.equal(page.items.length, limit)
        cursor = page.next
      }
      throw new Error('audit walk did not end')
    }
    const strip = (items: AuditItem[]) => items.map(({ at: _at, ...rest }) => rest)

    const all = await walk('', 4)
    assert.deepEqual(strip(all), [...table], 'pages of 4 give the whole table, newest first')
    for (let i = 1; i < all.length; i++) {
      const [a, b] = [all[i - 1] as AuditItem, all[i] as AuditItem]
      assert.ok(BigInt(a.id) > BigInt(b.id), 'ids descending')
      assert.ok(a.at >= b.at, 'times descending')
    }
    assert.ok(all.every((item) => !Number.isNaN(Date.parse(item.at))), 'at is a timestamp')
    assert.deepEqual(strip(await walk('', 1000)), [...table])
    assert.deepEqual(strip(await walk('&key_name=logins-read', 2)), table.filter((r) => r.key_name === 'logins-read'))
    assert.deepEqual(strip(await walk('&action=pii.erase', 2)), table.filter((r) => r.action === 'pii.erase'))
    assert.equal(table.filter((r) => r.action === 'pii.erase').length, 1, 'the erasure is audited')
    assert.deepEqual(strip(await walk('&action=pii.read&key_name=pii-read', 3)), table.filter((r) => r.action === 'pii.read' && r.key_name === 'pii-read'))
    assert.deepEqual(await walk('&key_name=nobody', 5), [])

    // The answer is the newest row first right after a new call.
    const id = await rowOf('pii-user-1')
    await app.inject(piiRequest(id, bearer(tokens['pii:read'], { 'x-access-reason': 'newest entry check' })))
    const first = await app.inject({ url: '/audit?limit=1', headers: bearer(tokens['audit:read']) })
    assert.equal(first.json<Page<AuditItem>>().items[0]?.reason, 'newest entry check')
    // GET /audit shows no PII
    for (const body of bodies) assert.ok(!first.body.includes(body.device_id))
  })

  await t.test('the audit table refuses UPDATE, DELETE and TRUNCATE', async () => {
    const [before] = await services.sql<{ n: number; reasons: string }[]>`SELECT count(*)::int AS n, string_agg(reason, ',' ORDER BY id) AS reasons FROM audit_log`
    assert.ok((before?.n ?? 0) > 0)
    await assert.rejects(services.sql`UPDATE audit_log SET reason = 'rewritten'`, /append-only/)
    await assert.rejects(services.sql`UPDATE audit_log SET status = 200 WHERE status <> 200`, /append-only/)
    await assert.rejects(services.sql`DELETE FROM audit_log`, /append-only/)
    await assert.rejects(services.sql`DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)`, /append-only/)
    await assert.rejects(services.sql`TRUNCATE audit_log`, /append-only/)
    const [after] = await services.sql<{ n: number; reasons: string }[]>`SELECT count(*)::int AS n, string_agg(reason, ',' ORDER BY id) AS reasons FROM audit_log`
    assert.deepEqual(after, before, 'nothing changed')
  })

  await t.test('when the audit write fails, no PII is returned (503)', async () => {
    const id = await rowOf('pii-user-1')
    const body = bodies[0] as LoginBody
    await services.sql`ALTER TABLE audit_log ADD CONSTRAINT no_more CHECK (false) NOT VALID`
    try {
      const before = await lastAuditId()
      const response = await app.inject(piiRequest(id, bearer(tokens['pii:read'], { 'x-access-reason': REASON })))
      assert.equal(response.statusCode, 503, response.body)
      assert.ok(isErrorBody(response))
      assert.ok(!response.body.includes(body.ip) && !response.body.includes(body.device_id), `no PII in ${response.body}`)
      assert.equal(await lastAuditId(), before, 'nothing was audited, and nothing disclosed')
      // A 404 is withheld too (it would tell whether the row exists), and refusals still answer.
      assert.equal((await app.inject(piiRequest('987654321', bearer(tokens['pii:read'], { 'x-access-reason': REASON })))).statusCode, 503)
      assert.equal((await app.inject(piiRequest(id, bearer(tokens['logins:read'], { 'x-access-reason': REASON })))).statusCode, 403)
      assert.ok(logs.lines.some((line) => line.level === 50 && /audit/.test(String(line.msg))), 'the failed audit write is logged as an error')
    } finally {
      await services.sql`ALTER TABLE audit_log DROP CONSTRAINT no_more`
    }
    const again = await app.inject(piiRequest(id, bearer(tokens['pii:read'], { 'x-access-reason': REASON })))
    assert.equal(again.statusCode, 200, 'back once the audit log can be written')
  })

  await t.test('no original ip or device_id, and no API key secret, appears in the logs of the whole file', async () => {
    const text = logs.text()
    assert.ok(text.length > 0 && logs.lines.length > 20, 'the app did log')
    for (const body of bodies) {
      assert.ok(!text.includes(body.ip), `ip ${body.ip} not in logs`)
      assert.ok(!text.includes(body.device_id), `device_id ${body.device_id} not in logs`)
    }
    for (const secret of secrets) assert.ok(!text.includes(secret), 'no API key secret in logs')
    assert.ok(!text.includes(REASON), 'the stated reason stays in the audit log, not the request log')
  })
})
