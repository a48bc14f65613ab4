import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { CursorCodec } from '../src/logins/cursor.ts'
import { build } from './helper.ts'
import { ingestBodies, loginRecord } from './ingest-helpers.ts'

/*
 * The HTTP API through app.inject, on the real app, database and queue. One app and one
 * database serve every subtest; rows come in through the real pipeline.
 */

interface Page {
  items: { id: string; user_id: string; masked_ip: string; masked_device_id: string; [column: string]: unknown }[]
  next: string | null
}

interface ErrorBody {
  statusCode: number
  error: string
  message: string
}

test('the HTTP API', async (t) => {
  const { app, services, tokens } = await build(t)
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
  const reader = bearer(tokens['logins:read'])

  await t.test('GET /healthz answers 200 without a key', async () => {
    const response = await app.inject({ url: '/healthz' })
    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json(), { status: 'ok' })
  })

  await t.test('GET /readyz answers 200 with its checks and the worker state, without a key', async () => {
    const response = await app.inject({ url: '/readyz' })
    assert.equal(response.statusCode, 200)
    const body = response.json<{ status: string; failing: string[]; checks: Record<string, { ok: boolean }>; queue: { status: string } }>()
    assert.equal(body.status, 'ready')
    assert.deepEqual(body.failing, [])
    assert.equal(body.checks.database?.ok, true)
    assert.equal(body.checks.migrations?.ok, true)
    assert.equal(body.queue.status, 'idle', 'WORKER_ENABLED=false in tests: the worker never started')
  })

  await t.test('GET /logins: 401 without a known key, 403 without the scope, 200 with it', async () => {
    const missing = await app.inject({ url: '/logins' })
    assert.equal(missing.statusCode, 401)
    assert.equal(missing.headers['www-authenticate'], 'Bearer')
    assert.equal(missing.json<ErrorBody>().error, 'Unauthorized')

    const stranger = `lik_${randomBytes(32).toString('base64url')}`
    for (const authorization of [`Bearer ${stranger}`, `Basic ${Buffer.from(`user:${tokens['logins:read']}`).toString('base64')}`, 'Bearer', tokens['logins:read']]) {
      const response = await app.inject({ url: '/logins', headers: { authorization } })
      assert.equal(response.statusCode, 401, authorization.slice(0, 12))
      assert.equal(response.headers['www-authenticate'], 'Bearer')
      assert.ok(!response.body.includes(stranger), 'the presented key is not echoed')
    }

    // Authentication comes before validation: a stranger learns nothing about the inputs.
    assert.equal((await app.inject({ url: '/logins?limit=0' })).statusCode, 401)

    const forbidden = await app.inject({ url: '/logins', headers: bearer(tokens['pii:read']) })
    assert.equal(forbidden.statusCode, 403)
    assert.match(forbidden.json<ErrorBody>().message, /logins:read/)
    for (const scope of ['ingest:run', 'pii:erase', 'audit:read'] as const) {
      assert.equal((await app.inject({ url: '/logins', headers: bearer(tokens[scope]) })).statusCode, 403, scope)
    }

    for (const headers of [reader, bearer(tokens.all), { authorization: `bearer ${tokens['logins:read']}` }]) {
      const response = await app.inject({ url: '/logins', headers })
      assert.equal(response.statusCode, 200)
      assert.deepEqual(response.json(), { items: [], next: null }, 'an empty table is an empty page')
    }
  })

  await t.test('bad query values answer 400 with a message naming the parameter', async () => {
    for (const limit of ['0', '1001', 'abc', '-1', '1.5', '']) {
      const response = await app.inject({ url: `/logins?limit=${limit}`, headers: reader })
      assert.equal(response.statusCode, 400, `limit=${limit}`)
      const body = response.json<ErrorBody>()
      assert.equal(body.error, 'Bad Request')
      assert.match(body.message, /limit/, body.message)
    }
    const unknown = await app.inject({ url: '/logins?colour=red', headers: reader })
    assert.equal(unknown.statusCode, 400)
    assert.match(unknown.json<ErrorBody>().message, /querystring/)

    const foreign = new CursorCodec(randomBytes(32)).encode('logins', ['5'])
    for (const cursor of ['not-a-cursor', 'djE6NQ', `${'A'.repeat(40)}.${'B'.repeat(22)}`, foreign, 'x'.repeat(1001)]) {
      const response = await app.inject({ url: `/logins?cursor=${encodeURIComponent(cursor)}`, headers: reader })
      assert.equal(response.statusCode, 400, cursor.slice(0, 20))
      assert.match(response.json<ErrorBody>().message, /cursor/)
    }
  })

  await t.test('pages of 10 walk 25 rows newest first, each exactly once, with no raw PII', async () => {
    const records = Array.from({ length: 25 }, () => loginRecord())
    const { outcomes } = await ingestBodies(services, records.map((r) => JSON.stringify(r)))
    assert.equal(outcomes.reduce((n, o) => n + o.inserted, 0), 25)
    const expected = (await services.sql<{ id: string }[]>`SELECT id::text AS id FROM user_logins ORDER BY user_logins.id DESC`).map((r) => r.id)
    assert.equal(expected.length, 25)

    const seen: string[] = []
    const sizes: number[] = []
    const bodies: string[] = []
    let next: string | null = null
    do {
      const query: string = next === null ? 'limit=10' : `limit=10&cursor=${encodeURIComponent(next)}`
      const response = await app.inject({ url: `/logins?${query}`, headers: reader })
      assert.equal(response.statusCode, 200)
      bodies.push(response.body)
      const page = response.json<Page>()
      assert.ok(page.items.length <= 10, 'never more than the limit')
      sizes.push(page.items.length)
      seen.push(...page.items.map((item) => item.id))
      next = page.next
    } while (next !== null && sizes.length < 10)

    assert.deepEqual(sizes, [10, 10, 5])
    assert.deepEqual(seen, expected, 'every row once, newest (highest id) first')
    assert.equal(new Set(seen).size, 25)

    const items = bodies.flatMap((body) => JSON.parse(body) as Page).flatMap((page) => page.items)
    const byUser = new Map(items.map((item) => [item.user_id, item]))
    for (const record of records) {
      const item = byUser.get(record.user_id)
      assert.ok(item, 'each record is on a page')
      assert.equal(item.masked_ip, services.masker.maskIp(record.ip))
      assert.equal(item.masked_device_id, services.masker.maskDeviceId(record.device_id))
      assert.ok(!('ip' in item) && !('device_id' in item), 'no original columns')
    }
    const text = bodies.join('\n')
    for (const record of records) {
      assert.ok(!text.includes(record.ip), 'raw ip not in responses')
      assert.ok(!text.includes(record.device_id), 'raw device_id not in responses')
    }

    // A page that ends exactly at the last row says so, instead of promising an empty page.
    const whole = (await app.inject({ url: '/logins?limit=25', headers: reader })).json<Page>()
    assert.equal(whole.items.length, 25)
    assert.equal(whole.next, null)
    const most = (await app.inject({ url: '/logins?limit=24', headers: reader })).json<Page>()
    assert.ok(most.next !== null)
    const rest = (await app.inject({ url: `/logins?limit=24&cursor=${encodeURIComponent(most.next)}`, headers: reader })).json<Page>()
    assert.deepEqual(rest.items.map((i) => i.id), [expected.at(-1)])
    assert.equal(rest.next, null)

    // An edited cursor is refused, not read as another page.
    const first = (await app.inject({ url: '/logins?limit=10', headers: reader })).json<Page>()
    assert.ok(first.next !== null)
    const edited = `${first.next.slice(0, 2)}${first.next[2] === 'A' ? 'B' : 'A'}${first.next.slice(3)}`
    const refused = await app.inject({ url: `/logins?limit=10&cursor=${encodeURIComponent(edited)}`, headers: reader })
    assert.equal(refused.statusCode, 400)
  })
})
