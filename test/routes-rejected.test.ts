import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RejectedSummary } from '../src/ingest/rejected.ts'
import { receiveMessages } from './ingest-helpers.ts'
import { inspectQueue, sendMessages } from './messages.ts'
import { build } from './helper.ts'
import { bearer, isErrorBody } from './routes-helpers.ts'

type Rejection = RejectedSummary

test('GET /rejected and POST /rejected/resubmit', async (t) => {
  const { app, tokens, queue } = await build(t)
  // 25 messages that are not logins, each with a value that must never be shown.
  const marker = (i: number) => `198.51.100.${i + 1}`
  const bodies = Array.from({ length: 25 }, (_, i) => JSON.stringify({ ip: marker(i), device_id: `secret-device-${i}`, note: 'no user_id' }))
  // Which body each message id carries: the queue may hand them out in any order.
  const sent = await sendMessages(queue.client, queue.queueUrl, bodies)
  const bodyOf = new Map(sent.map((messageId, i) => [messageId, bodies[i] as string]))
  const drained = await app.inject({ method: 'POST', url: '/ingest', headers: bearer(tokens['ingest:run']) })
  assert.equal(drained.json<{ rejected: number }>().rejected, 25, drained.body)
  const read = bearer(tokens['rejected:read'])
  const page = async (query: string) => {
    const response = await app.inject({ url: `/rejected?${query}`, headers: read })
    assert.equal(response.statusCode, 200, response.body)
    for (let i = 0; i < 25; i++) assert.ok(!response.body.includes(marker(i)) && !response.body.includes('secret-device'), 'never the body')
    return response.json<{ items: Rejection[]; next: string | null }>()
  }

  await t.test('pages with a cursor, newest first, every rejection once', async () => {
    const seen: Rejection[] = []
    let query = 'limit=10'
    for (;;) {
      const { items, next } = await page(query)
      seen.push(...items)
      if (next === null) break
      query = `limit=10&cursor=${encodeURIComponent(next)}`
    }
    assert.equal(seen.length, 25)
    assert.equal(new Set(seen.map((r) => r.id)).size, 25)
    assert.deepEqual(seen.map((r) => BigInt(r.id)), seen.map((r) => BigInt(r.id)).sort((a, b) => (a < b ? 1 : -1)), 'newest (highest id) first')
    for (const row of seen) {
      assert.deepEqual(Object.keys(row), ['id', 'message_id', 'reason', 'receive_count', 'rejected_at', 'resubmitted_at'])
      assert.equal(row.reason, 'user_id is required')
      assert.equal(row.receive_count, 1)
      assert.ok(!Number.isNaN(Date.parse(row.rejected_at)))
      assert.equal(row.resubmitted_at, null)
    }
  })

  await t.test('resubmit: audited, sends the bodies back once, and the states follow', async () => {
    const resubmit = (payload: unknown, headers: Record<string, string> = {}) =>
      app.inject({ method: 'POST', url: '/rejected/resubmit', headers: { ...bearer(tokens['rejected:resubmit']), ...headers }, payload: payload as object })
    const pending = (await page('limit=1000&state=pending')).items.reverse()
    const oldest = pending.map((r) => r.id)
    const dry = await resubmit({ dryRun: true, limit: 5 })
    assert.deepEqual(dry.json(), { resubmitted: 5, unreadable: 0, dryRun: true })
    assert.equal((await inspectQueue(queue.endpoint, 'login-queue')).ready, 0, 'a dry run sends nothing')

    const chosen = [oldest[3] as string, oldest[7] as string]
    const some = await resubmit({ ids: chosen }, { 'x-access-reason': 'INC-7 user_id made optional' })
    assert.deepEqual(some.json(), { resubmitted: 2, unreadable: 0, dryRun: false })
    const back = await receiveMessages(queue.queue, 2)
    const expected = chosen.map((id) => bodyOf.get(pending.find((r) => r.id === id)?.message_id ?? ''))
    assert.deepEqual(back.map((m) => m.body).sort(), expected.sort(), 'the chosen bodies, as they came')
    assert.deepEqual((await resubmit({ ids: chosen })).json(), { resubmitted: 0, unreadable: 0, dryRun: false }, 'never twice')

    const resubmitted = await page('state=resubmitted')
    assert.deepEqual(resubmitted.items.map((r) => r.id).sort(), [...chosen].sort())
    for (const row of resubmitted.items) assert.ok(row.resubmitted_at !== null && !Number.isNaN(Date.parse(row.resubmitted_at)))
    assert.equal((await page('state=pending&limit=1000')).items.length, 23)
    assert.equal((await page('state=all&limit=1000')).items.length, 25)

    const audit = await app.inject({ url: '/audit?action=rejected.resubmit', headers: bearer(tokens['audit:read']) })
    const entries = audit.json<{ items: { key_name: string; target: string | null; reason: string | null; status: number; outcome: string }[] }>().items
    assert.equal(entries.length, 3, 'every resubmission call is audited')
    assert.deepEqual(entries[1], { ...entries[1], key_name: 'rejected-resubmit', target: chosen.join(','), reason: 'INC-7 user_id made optional', status: 200, outcome: 'allowed' })

    const refused = await app.inject({ method: 'POST', url: '/rejected/resubmit', headers: bearer(tokens['rejected:read']), payload: {} })
    assert.equal(refused.statusCode, 403)
    const after = await app.inject({ url: '/audit?action=rejected.resubmit', headers: bearer(tokens['audit:read']) })
    assert.equal(after.json<{ items: { status: number }[] }>().items[0]?.status, 403, 'a refused call is audited too')
  })

  await t.test('bad input: 400 naming the parameter', async () => {
    const all = await page('limit=1&state=all')
    assert.ok(all.next)
    const cases: [string, string, unknown, RegExp][] = [
      ['GET', '/rejected?state=done', undefined, /state/],
      ['GET', '/rejected?limit=0', undefined, /limit/],
      ['GET', '/rejected?cursor=abc', undefined, /cursor/],
      ['GET', `/rejected?state=pending&cursor=${encodeURIComponent(all.next)}`, undefined, /cursor .* this state/],
      ['GET', '/rejected?unknown=1', undefined, /unknown/],
      ['POST', '/rejected/resubmit', { ids: ['x'] }, /ids/],
      ['POST', '/rejected/resubmit', { ids: [] }, /ids/],
      ['POST', '/rejected/resubmit', { limit: 1001 }, /limit/],
      ['POST', '/rejected/resubmit', { dryRun: 'maybe' }, /dryRun/],
      ['POST', '/rejected/resubmit', { everything: true }, /everything/],
    ]
    for (const [method, url, payload, pattern] of cases) {
      const response = await app.inject({ method: method as 'GET', url, headers: bearer(tokens.all), ...(payload === undefined ? {} : { payload: payload as object }) })
      assert.equal(response.statusCode, 400, `${method} ${url} ${JSON.stringify(payload)}: ${response.body}`)
      assert.ok(isErrorBody(response))
      assert.match(response.json<{ message: string }>().message, pattern)
    }
  })
})
