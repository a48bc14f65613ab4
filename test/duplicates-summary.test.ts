import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Sql } from 'postgres'
import { migrate } from '../src/db/migrate.ts'
import { listDuplicates, listDuplicatesWithPending } from '../src/logins/store.ts'
import { READ_FOLD_LIMIT, duplicatesPending, refreshDuplicates } from '../src/logins/summary.ts'
import { eraseUserPii, applyRetention } from '../src/pii/erasure.ts'
import { Masker } from '../src/pii/mask.ts'
import { rotateMaskKey } from '../src/pii/rotation.ts'
import { SERVER_URL as serverUrl, build, randomKeyring, testDatabase, waitForLockWait, testKeys, testQueue, testServices } from './helper.ts'
import { loginRecord } from './ingest-helpers.ts'
import { ingestMessages, queueMessage, type LoginBody } from './routes-helpers.ts'

/*
 * The duplicates summary of migration 009 against the grouping it replaces, computed from
 * user_logins itself: after concurrent storing and refreshing sessions, redelivery, erasure
 * with and without rows, retention and a mask key rotation.
 */

interface Entry { field: string; masked_value: string; count: number; users: number; first_seen: string | null; last_seen: string | null }

async function truth(sql: Sql): Promise<Entry[]> {
  return sql<Entry[]>`
    SELECT field, masked_value, count::int, users::int, first_seen, last_seen FROM (
      SELECT 'ip' AS field, masked_ip AS masked_value, count(*) AS count, count(DISTINCT user_id) AS users,
             to_char(min(create_date), 'YYYY-MM-DD') AS first_seen, to_char(max(create_date), 'YYYY-MM-DD') AS last_seen
      FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY masked_ip HAVING count(*) >= 2
      UNION ALL
      SELECT 'device_id', masked_device_id, count(*), count(DISTINCT user_id),
             to_char(min(create_date), 'YYYY-MM-DD'), to_char(max(create_date), 'YYYY-MM-DD')
      FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY masked_device_id HAVING count(*) >= 2) t
    ORDER BY field, masked_value`
}

/** The whole summary (values seen at least twice: migration 010); `dates` false leaves out first/last seen (not undone by deletions). */
async function summary(sql: Sql, dates = true): Promise<Entry[]> {
  return sql<Entry[]>`
    SELECT field::text, masked_value, logins::int AS count, users,
           ${dates ? sql`to_char(first_seen, 'YYYY-MM-DD')` : sql`NULL`} AS first_seen, ${dates ? sql`to_char(last_seen, 'YYYY-MM-DD')` : sql`NULL`} AS last_seen
    FROM login_duplicates ORDER BY field, masked_value`
}

/** Values seen exactly once, from user_logins, with that login's user and date. */
async function truthSingles(sql: Sql): Promise<string[]> {
  const rows = await sql<{ d: string }[]>`
    SELECT concat_ws(' ', field, masked_value, user_id, to_char(seen, 'YYYY-MM-DD')) AS d FROM (
      SELECT 'ip' AS field, masked_ip AS masked_value, min(user_id) AS user_id, min(create_date) AS seen
      FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY masked_ip HAVING count(*) = 1
      UNION ALL
      SELECT 'device_id', masked_device_id, min(user_id), min(create_date)
      FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY masked_device_id HAVING count(*) = 1) t
    ORDER BY 1`
  return rows.map((r) => r.d)
}

/** What the fold keeps of values seen once (migration 012). */
async function singles(sql: Sql): Promise<string[]> {
  const rows = await sql<{ d: string }[]>`
    SELECT concat_ws(' ', field, masked_value, user_id, to_char(seen, 'YYYY-MM-DD')) AS d FROM login_single_values ORDER BY 1`
  return rows.map((r) => r.d)
}

const withoutDates = (entries: Entry[]): Entry[] => entries.map((e) => ({ ...e, first_seen: null, last_seen: null }))

/**
 * Logins over few users: of every six, two share an ip seen by nobody else (a value that enters
 * the summary when its second login is folded in, often stored by the other session), three use
 * a few common ips, one an ip seen once; devices likewise, shifted.
 */
function bodies(n: number, users: string[], tag = 'a'): LoginBody[] {
  return Array.from({ length: n }, (_, i) => {
    const group = Math.floor(i / 6)
    const slot = i % 6
    const ip = slot < 2 ? `10.2.${group >> 8}.${group & 255}` : slot < 5 ? `10.0.0.${i % 7}` : `10.3.${i >> 8}.${i & 255}`
    const device = slot === 1 || slot === 2 ? `pair-${tag}-${group}` : slot === 0 ? `once-${tag}-${i}` : `dev-${i % 11}`
    return loginRecord({ user_id: users[i % users.length] as string, ip, device_id: device })
  })
}

test('duplicates summary: exact under concurrent storing and refreshing, redelivery, erasure, retention and mask key rotation', async (t) => {
  const db = await testDatabase(t, { max: 8 })
  const queue = await testQueue(t)
  const keys = testKeys(`${randomKeyring('k1')},${randomKeyring('k2')}`)
  const services = await testServices(t, queue.queue, { db, keys })
  const users = ['u-a', 'u-b', 'u-c', 'u-d', 'u-e']

  await t.test('two sessions storing overlapping values while two sessions refresh: no deadlock, exact counts', async () => {
    const day = (i: number) => new Date(Date.UTC(2026, 0, 1 + (i % 40)))
    const messages = bodies(600, users).map((b, i) => queueMessage(b, day(i)))
    const halves = [messages.filter((_, i) => i % 2 === 0), messages.filter((_, i) => i % 2 === 1)]
    let storing = true
    const refresher = async (wait: boolean) => {
      while (storing) await refreshDuplicates(services.sql, { wait })
    }
    const refreshers = [refresher(true), refresher(false)]
    await Promise.all(halves.map((half) => ingestMessages(services, half, 50)))
    storing = false
    await Promise.all(refreshers)
    // Redelivery of every message: nothing inserted, so nothing counted.
    const again = await services.pipeline.process(messages.slice(0, 100))
    assert.equal(again.inserted, 0)
    await refreshDuplicates(services.sql, { wait: true })
    const expected = await truth(services.sql)
    assert.ok(expected.some((e) => e.count === 2), 'values seen exactly twice are in')
    const [once] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM (SELECT masked_ip FROM user_logins GROUP BY 1 HAVING count(*) = 1) o`
    assert.ok((once?.n ?? 0) > 50, 'values seen once are stored, and stay out of the summary')
    assert.deepEqual(await summary(services.sql), expected)
    assert.deepEqual(await singles(services.sql), await truthSingles(services.sql), 'values seen once, each with its login')
    assert.equal((await services.sql`SELECT 1 FROM login_summary_pending`).length, 0, 'nothing left pending')
  })

  await t.test('one batch delivered to two replicas at once, in opposite orders: no deadlock, each message stored once', async () => {
    // A visibility timeout that expires mid-batch hands the same messages to another replica,
    // in another order; each insert waits on the rows the other has inserted but not committed.
    const messages = bodies(400, users, 'twice').map((b) => queueMessage(b, new Date(Date.UTC(2026, 1, 3))))
    const outcomes = await Promise.all([services.pipeline.process(messages), services.pipeline.process([...messages].reverse())])
    assert.equal(outcomes.reduce((n, o) => n + o.inserted, 0), messages.length, 'each message inserted by one of the two')
    const [rows] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE message_id = ANY(${messages.map((m) => m.messageId)}::text[])`
    assert.equal(rows?.n, messages.length)
    await refreshDuplicates(services.sql, { wait: true })
    assert.deepEqual(await summary(services.sql), await truth(services.sql))
  })

  await t.test('erasure keeps rows and masks (counts unchanged); erasure with rows takes them out of counts and users', async () => {
    const before = await summary(services.sql)
    await eraseUserPii(services.sql, 'u-a', { deleteRows: false })
    await applyRetention(services.sql, { days: 0, now: new Date('2030-01-01T00:00:00Z'), dryRun: false })
    await refreshDuplicates(services.sql, { wait: true })
    assert.deepEqual(await summary(services.sql), before, 'originals gone, masked rows and their counts stay')
    assert.deepEqual(await singles(services.sql), await truthSingles(services.sql))

    await eraseUserPii(services.sql, 'u-b', { deleteRows: true })
    await refreshDuplicates(services.sql, { wait: true })
    const expected = await truth(services.sql)
    assert.ok(expected.every((e) => e.users <= 4))
    const after = withoutDates(await summary(services.sql, false))
    assert.deepEqual(after, withoutDates(expected))
    const left = before.filter((b) => !after.some((a) => a.field === b.field && a.masked_value === b.masked_value))
    assert.ok(left.length > 0, 'values the erasure brought under two logins left the summary')
    const [pairs] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_duplicate_pairs WHERE user_id = 'u-b' OR logins <= 0`
    assert.equal(pairs?.n, 0, 'the erased user leaves no pair behind')
    assert.deepEqual(await singles(services.sql), await truthSingles(services.sql), 'values brought down to one login keep the one left')
  })

  await t.test('mask key rotation: the summary follows the switch to the new masks', async () => {
    // Fresh logins with originals, since retention above destroyed the earlier ones.
    const messages = bodies(200, users, 'b').map((b) => queueMessage(b, new Date('2026-03-01T10:00:00Z')))
    await ingestMessages(services, messages, 100)
    await refreshDuplicates(services.sql, { wait: true })
    const masker = new Masker(keys.mask)
    const report = await rotateMaskKey({ sql: services.sql, masker, vault: services.vault, log: { info: () => undefined } }, 'k2', { batchSize: 64 })
    assert.equal(report.switched, true)
    await refreshDuplicates(services.sql, { wait: true })
    const expected = await truth(services.sql)
    assert.ok(expected.some((e) => e.masked_value.startsWith('k2:')), 'new masks are counted')
    assert.deepEqual(withoutDates(await summary(services.sql, false)), withoutDates(expected))
    const once = await singles(services.sql)
    assert.ok(once.some((v) => v.includes(' k2:')), 'the single values follow the switch too')
    assert.deepEqual(once, await truthSingles(services.sql))
  })
})

test('duplicates summary: a value entering while its next login commits mid-fold is counted once', { skip: serverUrl === undefined ? 'needs two sessions (PostgreSQL server; PGlite serves one)' : false }, async (t) => {
  const db = await testDatabase(t, { max: 4 })
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue, { db })
  const at = new Date('2026-02-01T10:00:00Z')
  const login = (ip: string, device_id: string) => queueMessage(loginRecord({ user_id: 'u-1', ip, device_id }), at)
  // A value already in the summary (to hold the fold inside it), and one device seen once.
  await ingestMessages(services, [login('10.7.0.1', 'd-held-1'), login('10.7.0.1', 'd-held-2'), login('10.7.0.2', 'd-new')])
  await refreshDuplicates(services.sql, { wait: true })
  const [{ v: heldIp } = { v: '' }] = await services.sql<{ v: string }[]>`
    SELECT masked_value AS v FROM login_duplicates WHERE field = 'ip'`
  assert.notEqual(heldIp, '')

  // Another session locks the held value's summary row: the fold takes its batch, then waits there.
  // Released before the pool ends (after hooks run in order, the database's first): a reserved
  // connection released into an ended pool keeps the process alive for a minute.
  const blocker = await services.sql.reserve()
  let held = true
  const release = () => { if (held) { held = false; blocker.release() } }
  t.after(release)
  await blocker`BEGIN`
  await blocker`SELECT 1 FROM login_duplicates WHERE field = 'ip' AND masked_value = ${heldIp} FOR UPDATE`
  await ingestMessages(services, [login('10.7.0.1', 'd-new')])
  const fold = refreshDuplicates(services.sql, { wait: true })
  await waitForLockWait(services.sql, 'login_duplicates_refresh', 'the fold on the held row')
  // The device's third login commits while the fold holds its batch, which has the second.
  await ingestMessages(services, [login('10.7.0.3', 'd-new')])
  await blocker`COMMIT`
  release()
  await fold
  await refreshDuplicates(services.sql, { wait: true })
  const [device] = await services.sql<{ logins: number; users: number }[]>`
    SELECT d.logins::int, d.users FROM login_duplicates d
    WHERE d.field = 'device_id' AND d.masked_value = (SELECT masked_device_id FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY 1 HAVING count(*) = 3)`
  assert.deepEqual(device, { logins: 3, users: 1 }, 'three logins, not four: the one committed mid-fold is counted when its own pending row is folded')
  assert.deepEqual(await summary(services.sql), await truth(services.sql))
  assert.deepEqual(await singles(services.sql), await truthSingles(services.sql))
})

test('GET /logins/duplicates: a backlog above READ_FOLD_LIMIT is not folded by the read (it answers from the last fold) but set to fold in the background', async (t) => {
  const { app, services, tokens } = await build(t, { env: { DUPLICATES_REFRESH_MS: '100' } })
  // A bulk insert outside ingestion (the trigger queues every row): one more than a read folds.
  await services.sql`
    INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, create_date, mask_key_id)
    SELECT 'bulk-' || i, 'u-' || (i % 7), 'ios', 'k1:ip-' || (i % 3), 'k1:dev-' || i, DATE '2026-05-01', 'k1'
    FROM generate_series(1, ${READ_FOLD_LIMIT + 1}) AS i`
  const read = async () => {
    const response = await app.inject({ url: '/logins/duplicates?field=ip', headers: { authorization: `Bearer ${tokens['logins:read']}` } })
    assert.equal(response.statusCode, 200)
    return response.json<{ items: Entry[] }>().items
  }
  assert.deepEqual(await read(), [], 'the last fold (none yet): the read did not fold the backlog itself')
  for (let i = 0; (await duplicatesPending(services.sql)) > 0; i++) {
    assert.ok(i < 400, 'the background fold never took the backlog')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const items = await read()
  assert.deepEqual(items.map((e) => [e.masked_value, e.count, e.users]), [['k1:ip-1', 3334, 7], ['k1:ip-2', 3334, 7], ['k1:ip-0', 3333, 7]])
})

test('duplicates summary: a value moves between seen once, the summary and gone, keeping its logins\' users and dates', async (t) => {
  const db = await testDatabase(t)
  const sql = db.sql
  await migrate(sql)
  let n = 0
  const login = async (user: string | null, ip: string, device: string, day: string) => {
    const [row] = await sql<{ id: string }[]>`
      INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, create_date, mask_key_id)
      VALUES (${`m-${++n}`}, ${user}, 'ios', ${`k1:${ip}`}, ${`k1:${device}`}, ${day}::date, 'k1') RETURNING id`
    return row?.id ?? ''
  }
  const drop = (id: string) => sql`DELETE FROM user_logins WHERE id = ${id}`
  const exact = async (what: string) => {
    await refreshDuplicates(sql, { wait: true })
    assert.deepEqual(await summary(sql), await truth(sql), `summary: ${what}`)
    assert.deepEqual(await singles(sql), await truthSingles(sql), `single values: ${what}`)
  }

  await login('u-1', 'a', 'd-1', '2026-01-05')
  await login(null, 'n', 'd-2', '2026-01-06')
  await exact('first logins are single values, a NULL user too')
  const second = await login('u-2', 'a', 'd-3', '2026-01-09')
  await exact('a second login takes the value into the summary with the first one\'s user and date')
  await drop(second)
  await exact('a deletion brings it back to one login: the one left is its single login')
  await login('u-3', 'a', 'd-4', '2026-01-02')
  await login(null, 'n', 'd-5', '2026-01-07')
  await exact('it enters again, first seen from the single login kept')

  // One fold over a value both added to and taken from: counted from user_logins.
  const kept = await login('u-4', 'b', 'd-6', '2026-01-10')
  await exact('b seen once')
  await drop(kept)
  await login('u-5', 'b', 'd-7', '2026-01-11')
  const fleeting = await login('u-6', 'c', 'd-8', '2026-01-12')
  await drop(fleeting)
  await exact('b\'s login replaced by another user\'s in one fold, c stored and deleted before any fold')
  const [b] = await sql<{ user_id: string }[]>`SELECT user_id FROM login_single_values WHERE field = 'ip' AND masked_value = 'k1:b'`
  assert.equal(b?.user_id, 'u-5')

  // Two logins of a new value in one fold, and a summary value losing every login at once.
  await login('u-7', 'e', 'd-9', '2026-01-13')
  await login('u-8', 'e', 'd-10', '2026-01-14')
  await sql`DELETE FROM user_logins WHERE masked_ip = 'k1:a'`
  await exact('a value seen twice in one fold enters at once; one losing all its logins is gone from both')
  const gone = await sql`SELECT 1 FROM login_single_values WHERE masked_value = 'k1:a' UNION ALL SELECT 1 FROM login_duplicates WHERE masked_value = 'k1:a'`
  assert.equal(gone.length, 0)
})

test('the report with its pending count: the same rows and order as listDuplicates, one row-less answer when empty, pending counted up to the limit + 1', async (t) => {
  const db = await testDatabase(t)
  const sql = db.sql
  await migrate(sql)
  const query = { fields: ['ip', 'device_id'] as ('ip' | 'device_id')[], minCount: 2, limit: 3 }
  assert.deepEqual(await listDuplicatesWithPending(sql, query, 5), { rows: [], pending: 0 }, 'an empty summary: no rows, nothing pending')

  // 5 logins, so 5 pending changes: ip a 3 times (users 1, 2, 1), ip b twice, device x twice, device y once.
  await sql`
    INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, create_date, mask_key_id)
    VALUES ('m1', 'u1', 'ios', 'k1:a', 'k1:x', '2026-01-01', 'k1'), ('m2', 'u2', 'ios', 'k1:a', 'k1:x', '2026-01-02', 'k1'),
           ('m3', 'u1', 'ios', 'k1:a', 'k1:y', '2026-01-03', 'k1'), ('m4', 'u3', 'ios', 'k1:b', NULL, '2026-01-04', 'k1'),
           ('m5', 'u3', 'ios', 'k1:b', NULL, '2026-01-05', 'k1')`
  assert.deepEqual(await listDuplicatesWithPending(sql, query, 3), { rows: [], pending: 4 }, 'not folded yet: counted up to the limit + 1')
  assert.equal((await listDuplicatesWithPending(sql, query, 100)).pending, 5)
  await refreshDuplicates(sql, { wait: true })

  for (const fields of [['ip', 'device_id'], ['ip'], ['device_id']] as ('ip' | 'device_id')[][]) {
    const all = await listDuplicates(sql, { ...query, fields, limit: 10 })
    const first = await listDuplicatesWithPending(sql, { ...query, fields, limit: 1 }, 10)
    assert.equal(first.pending, 0)
    assert.deepEqual(first.rows, all.slice(0, 2), `${fields.join('+')}: the first page (limit + 1 rows), as listDuplicates orders them`)
    const last = first.rows[0]
    assert.ok(last !== undefined)
    const rest = await listDuplicatesWithPending(sql, { ...query, fields, limit: 10, after: { count: last.count, field: last.field, masked_value: last.masked_value } }, 10)
    assert.deepEqual(rest.rows, all.slice(1), `${fields.join('+')}: after the cursor`)
  }
  assert.deepEqual((await listDuplicates(sql, { ...query, limit: 10 })).map((d) => [d.field, d.masked_value, d.count, d.users, d.first_seen, d.last_seen]), [
    ['ip', 'k1:a', 3, 2, '2026-01-01', '2026-01-03'],
    ['device_id', 'k1:x', 2, 2, '2026-01-01', '2026-01-02'],
    ['ip', 'k1:b', 2, 1, '2026-01-04', '2026-01-05'],
  ])
})

/** Pages of the pending queue on disk (0 once truncated). */
async function queuePages(sql: Sql): Promise<number> {
  const [row] = await sql<{ pages: number }[]>`SELECT (pg_relation_size('login_summary_pending') / 8192)::int AS pages`
  return row?.pages ?? -1
}

const insertLogin = (sql: Sql, messageId: string, ip: string) => sql`
  INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, create_date, mask_key_id)
  VALUES (${messageId}, 'u-q', 'ios', ${ip}, NULL, '2026-02-03', 'k1')`

test('duplicates summary: a fold that empties its queue truncates it; a change committed after the fold\'s snapshot keeps it', async (t) => {
  const db = await testDatabase(t)
  const sql = db.sql
  await migrate(sql)
  for (let i = 0; i < 300; i++) await insertLogin(sql, `q-${i}`, `k1:q-${i % 50}`)
  assert.ok((await queuePages(sql)) > 0)
  assert.equal(await refreshDuplicates(sql, { wait: true }), 300)
  assert.equal(await queuePages(sql), 0, 'the deleted changes are gone from the queue\'s pages, not left for autovacuum')
  assert.deepEqual(await summary(sql), await truth(sql))

  // The fold's DELETE saw nothing of a change committed after its snapshot; the check under the
  // lock does, and leaves the queue as it is.
  await insertLogin(sql, 'q-late', 'k1:q-1')
  const [compacted] = await sql<{ done: boolean }[]>`SELECT login_summary_pending_compact() AS done`
  assert.equal(compacted?.done, false)
  assert.equal(await duplicatesPending(sql), 1, 'the late change is still pending')
  assert.equal(await refreshDuplicates(sql, { wait: true }), 1)
  assert.equal(await queuePages(sql), 0)
  assert.deepEqual(await summary(sql), await truth(sql))
  assert.deepEqual(await singles(sql), await truthSingles(sql))
})

test('duplicates summary: the fold does not truncate its queue while another transaction writes it, and that transaction\'s changes are folded after it commits', { skip: serverUrl === undefined ? 'needs two sessions (PostgreSQL server; PGlite serves one)' : false }, async (t) => {
  const db = await testDatabase(t, { max: 4 })
  const sql = db.sql
  await migrate(sql)
  for (let i = 0; i < 100; i++) await insertLogin(sql, `w-${i}`, `k1:w-${i % 10}`)
  // An ingesting transaction in flight: its row and its pending change are not committed yet.
  const writer = await sql.reserve()
  let open = true
  const finish = async (how: 'COMMIT' | 'ROLLBACK') => { if (open) { open = false; await writer.unsafe(how); writer.release() } }
  t.after(() => finish('ROLLBACK'))
  await writer`BEGIN`
  await insertLogin(writer, 'w-open', 'k1:w-3')
  assert.equal(await refreshDuplicates(sql, { wait: true }), 100)
  assert.ok((await queuePages(sql)) > 0, 'not truncated: a writer held the queue')
  await finish('COMMIT')
  assert.equal(await refreshDuplicates(sql, { wait: true }), 1, 'the writer\'s change, folded once it committed')
  assert.equal(await queuePages(sql), 0)
  assert.deepEqual(await summary(sql), await truth(sql))
  assert.deepEqual(await singles(sql), await truthSingles(sql))
})
