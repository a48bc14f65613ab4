import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Sql } from 'postgres'
import { refreshDuplicates } from '../src/logins/summary.ts'
import { eraseUserPii, applyRetention } from '../src/pii/erasure.ts'
import { Masker } from '../src/pii/mask.ts'
import { rotateMaskKey } from '../src/pii/rotation.ts'
import { randomKeyring, testDatabase, testKeys, testQueue, testServices } from './helper.ts'
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
      FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY masked_ip
      UNION ALL
      SELECT 'device_id', masked_device_id, count(*), count(DISTINCT user_id),
             to_char(min(create_date), 'YYYY-MM-DD'), to_char(max(create_date), 'YYYY-MM-DD')
      FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY masked_device_id) t
    ORDER BY field, masked_value`
}

/** The whole summary, values seen once included; `dates` false leaves out first/last seen (not undone by deletions). */
async function summary(sql: Sql, dates = true): Promise<Entry[]> {
  return sql<Entry[]>`
    SELECT field::text, masked_value, logins::int AS count, users,
           ${dates ? sql`to_char(first_seen, 'YYYY-MM-DD')` : sql`NULL`} AS first_seen, ${dates ? sql`to_char(last_seen, 'YYYY-MM-DD')` : sql`NULL`} AS last_seen
    FROM login_duplicates ORDER BY field, masked_value`
}

const withoutDates = (entries: Entry[]): Entry[] => entries.map((e) => ({ ...e, first_seen: null, last_seen: null }))

/** Logins over few users, ips and devices, so values repeat across users and batches. */
function bodies(n: number, users: string[]): LoginBody[] {
  return Array.from({ length: n }, (_, i) => loginRecord({
    user_id: users[i % users.length] as string,
    ip: `10.0.0.${i % 7}`,
    device_id: `dev-${i % 11}`,
  }))
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
      while (storing) await refreshDuplicates(services.sql, { wait, maxBatches: 1 })
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
    assert.equal(expected.reduce((n, e) => n + e.count, 0), 1200, 'two values per login')
    assert.deepEqual(await summary(services.sql), expected)
    assert.equal((await services.sql`SELECT 1 FROM login_summary_pending`).length, 0, 'nothing left pending')
  })

  await t.test('erasure keeps rows and masks (counts unchanged); erasure with rows takes them out of counts and users', async () => {
    const before = await summary(services.sql)
    await eraseUserPii(services.sql, 'u-a', { deleteRows: false })
    await applyRetention(services.sql, { days: 0, now: new Date('2030-01-01T00:00:00Z'), dryRun: false })
    await refreshDuplicates(services.sql, { wait: true })
    assert.deepEqual(await summary(services.sql), before, 'originals gone, masked rows and their counts stay')

    await eraseUserPii(services.sql, 'u-b', { deleteRows: true })
    await refreshDuplicates(services.sql, { wait: true })
    const expected = await truth(services.sql)
    assert.ok(expected.every((e) => e.users <= 4))
    assert.deepEqual(withoutDates(await summary(services.sql, false)), withoutDates(expected))
    const [pairs] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_duplicate_pairs WHERE user_id = 'u-b' OR logins <= 0`
    assert.equal(pairs?.n, 0, 'the erased user leaves no pair behind')
  })

  await t.test('mask key rotation: the summary follows the switch to the new masks', async () => {
    // Fresh logins with originals, since retention above destroyed the earlier ones.
    const messages = bodies(200, users).map((b) => queueMessage(b, new Date('2026-03-01T10:00:00Z')))
    await ingestMessages(services, messages, 100)
    await refreshDuplicates(services.sql, { wait: true })
    const masker = new Masker(keys.mask)
    const report = await rotateMaskKey({ sql: services.sql, masker, vault: services.vault, log: { info: () => undefined } }, 'k2', { batchSize: 64 })
    assert.equal(report.switched, true)
    await refreshDuplicates(services.sql, { wait: true })
    const expected = await truth(services.sql)
    assert.ok(expected.some((e) => e.masked_value.startsWith('k2:')), 'new masks are counted')
    assert.deepEqual(withoutDates(await summary(services.sql, false)), withoutDates(expected))
  })
})
