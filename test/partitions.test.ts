import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Sql } from 'postgres'
import { detachMonth, listPartitions, nextMonth } from '../src/logins/partitions.ts'
import { refreshDuplicates } from '../src/logins/summary.ts'
import { eraseUserPii } from '../src/pii/erasure.ts'
import { testQueue, testServices } from './helper.ts'
import { loginRecord } from './ingest-helpers.ts'
import { ingestMessages, queueMessage } from './routes-helpers.ts'

/*
 * user_logins partitioned by create_date month (migration 011), through the real pipeline:
 * each month's rows in its own partition, redelivery across them, the originals going with
 * deleted rows, and detaching an ended month (summary, vault, lock timeout).
 */

/** Rows per partition, by the partition's name. */
async function rowsByPartition(sql: Sql): Promise<Record<string, number>> {
  const rows = await sql<{ part: string; n: number }[]>`SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM user_logins GROUP BY 1`
  return Object.fromEntries(rows.map((r) => [r.part, r.n]))
}

/**
 * The duplicates summary and the single values (migration 012), and the grouping of user_logins
 * they stand for (values seen twice or more with their counts, values seen once with their login).
 */
async function summaryAndTruth(sql: Sql): Promise<{ summary: string[]; truth: string[] }> {
  const summary = await sql<{ d: string }[]>`
    SELECT d FROM (
      SELECT field || ' ' || masked_value || ' ' || logins || ' ' || users AS d FROM login_duplicates
      UNION ALL
      SELECT concat_ws(' ', field, masked_value, 'once', user_id, seen) FROM login_single_values) t
    ORDER BY 1`
  const truth = await sql<{ d: string }[]>`
    SELECT d FROM (
      SELECT 'ip ' || masked_ip || ' ' || count(*) || ' ' || count(DISTINCT user_id) AS d FROM user_logins GROUP BY masked_ip HAVING count(*) >= 2
      UNION ALL
      SELECT 'device_id ' || masked_device_id || ' ' || count(*) || ' ' || count(DISTINCT user_id) FROM user_logins GROUP BY masked_device_id HAVING count(*) >= 2
      UNION ALL
      SELECT concat_ws(' ', 'ip', masked_ip, 'once', min(user_id), min(create_date)) FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY masked_ip HAVING count(*) = 1
      UNION ALL
      SELECT concat_ws(' ', 'device_id', masked_device_id, 'once', min(user_id), min(create_date)) FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY masked_device_id HAVING count(*) = 1) t
    ORDER BY 1`
  return { summary: summary.map((r) => r.d), truth: truth.map((r) => r.d) }
}

const monthsAgo = (n: number): Date => {
  const now = new Date()
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - n, 15, 12))
}

test('partitions: each month in its own partition, the next one made ahead, redelivery across months, originals deleted with rows', async (t) => {
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue)
  const { sql } = services
  const dates = [new Date('2024-01-31T23:59:59Z'), new Date('2024-02-01T00:00:00Z'), new Date('2024-03-10T10:00:00Z')]
  const messages = dates.flatMap((sentAt, i) => [
    queueMessage(loginRecord({ user_id: `user-${i}`, ip: '10.9.9.9', device_id: `dev-${i}` }), sentAt),
    queueMessage(loginRecord({ user_id: `user-${i}`, ip: `10.8.8.${i}`, device_id: 'shared-device' }), sentAt),
  ])
  await ingestMessages(services, messages)
  // One more delivery of each: nothing new, in whichever month the message is.
  const again = await services.pipeline.process(messages.map((m) => ({ ...m, receiptHandle: `${m.receiptHandle}-2`, receiveCount: 2 })))
  assert.equal(again.inserted, 0, 'a redelivery inserts nothing')
  assert.equal(again.duplicates, messages.length)

  assert.deepEqual(await rowsByPartition(sql), { user_logins_2024_01: 2, user_logins_2024_02: 2, user_logins_2024_03: 2 })
  const months = (await listPartitions(sql)).map((p) => p.month)
  for (const month of ['2024-01', '2024-02', '2024-03', '2024-04']) assert.ok(months.includes(month), `a partition for ${month} (the month after the last one written is made ahead)`)
  assert.equal(months.at(-1), null, 'the default partition, for rows without a date, comes last')
  assert.equal(nextMonth('2024-12-01'), '2025-01-01')

  // A row of the pre-created kind, without a date, goes to the default partition, and so does a
  // row written directly for a month without a partition; making that month's partition takes it over.
  await sql`INSERT INTO user_logins (user_id, device_type) VALUES ('legacy', 'ios')`
  const [stray] = await sql<{ id: string }[]>`INSERT INTO user_logins (user_id, create_date) VALUES ('x', '1999-01-05') RETURNING id::text AS id`
  assert.deepEqual((await rowsByPartition(sql)).user_logins_default, 2)
  await sql`SELECT login_partition_ensure('1999-01-20')`
  const parts = await rowsByPartition(sql)
  assert.equal(parts.user_logins_default, 1, 'only the undated row stays in the default partition')
  assert.equal(parts.user_logins_1999_01, 1, 'the 1999-01 row moved to its month')
  assert.equal((await sql<{ id: string }[]>`SELECT id::text AS id FROM user_logins WHERE user_id = 'x'`)[0]?.id, stray?.id, 'with its id')
  await sql`DELETE FROM user_logins WHERE user_id IN ('x', 'legacy')`

  // The function runs as the owner: a caller's temporary table named user_logins does not stand in for the table.
  const session = await sql.reserve()
  await session`CREATE TEMPORARY TABLE user_logins (create_date date) PARTITION BY RANGE (create_date)`
  await session`SELECT login_partition_ensure('1998-06-01')`
  await session`DROP TABLE pg_temp.user_logins`
  session.release()
  assert.ok((await listPartitions(sql)).some((p) => p.month === '1998-06'), 'the month was attached to public.user_logins')

  // Erasing a user's rows takes their originals (the vault has no foreign key any more: a trigger does it).
  const vaultBefore = (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_vault`)[0]?.n
  assert.equal(vaultBefore, messages.length)
  await eraseUserPii(sql, 'user-1', { deleteRows: true })
  const [{ n } = { n: -1 }] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pii_vault v WHERE NOT EXISTS (SELECT 1 FROM user_logins l WHERE l.id = v.login_id)`
  assert.equal(n, 0, 'no original outlives its row')
  assert.equal((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_vault`)[0]?.n, messages.length - 2)
  await sql`DELETE FROM user_logins WHERE user_id = 'user-0'`
  assert.equal((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_vault`)[0]?.n, messages.length - 4, 'a plain DELETE takes the originals too')
  await sql`TRUNCATE user_logins`
  assert.equal((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_vault`)[0]?.n, 0, 'TRUNCATE empties the vault')
  await ingestMessages(services, [queueMessage(loginRecord(), dates[0])])
  await sql`TRUNCATE user_logins, pii_vault`
  assert.equal((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_vault`)[0]?.n, 0, 'both in one TRUNCATE')
})

test('partitions: detaching an ended month takes its rows out of the summary and the vault, refuses the current month, and gives up on a held lock', async (t) => {
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue)
  const { sql } = services
  const old = monthsAgo(2)
  const recent = monthsAgo(1)
  const month = old.toISOString().slice(0, 7)
  // Values shared across the two months, so that detaching one moves values in and out of the summary.
  const messages = [old, old, old, recent, recent].map((sentAt, i) =>
    queueMessage(loginRecord({ user_id: `user-${i % 2}`, ip: i < 2 ? '10.1.1.1' : '10.2.2.2', device_id: i === 0 || i === 3 ? 'dev-a' : `dev-${i}` }), sentAt))
  await ingestMessages(services, messages)
  await refreshDuplicates(sql, { wait: true })
  const before = await summaryAndTruth(sql)
  assert.deepEqual(before.summary, before.truth)
  assert.equal(before.summary.filter((d) => !d.includes(' once ')).length, 3, 'ip 10.1.1.1 and 10.2.2.2 and device dev-a are seen twice or more')

  if (services.db.server) {
    // A query holding user_logins: the detach waits no longer than its lock timeout, and changes nothing.
    const held = await sql.reserve()
    await held`BEGIN`
    await held`SELECT count(*) FROM user_logins`
    await assert.rejects(detachMonth(sql, month, { lockTimeoutMs: 200, drop: false }), (error: Error & { code?: string }) => error.code === '55P03')
    await held`COMMIT`
    held.release()
    assert.equal((await listPartitions(sql)).filter((p) => p.month === month).length, 1, 'still attached')
    assert.equal((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_summary_pending`)[0]?.n, 0, 'nothing queued by the attempt')
  }

  await assert.rejects(detachMonth(sql, new Date().toISOString().slice(0, 7), { lockTimeoutMs: 5000, drop: false }), /only months that have ended/)
  await assert.rejects(detachMonth(sql, '1999-01', { lockTimeoutMs: 5000, drop: false }), /no partition for 1999-01/)

  const report = await detachMonth(sql, month, { lockTimeoutMs: 5000, drop: false })
  assert.equal(report.rows, 3)
  assert.match(report.detached_table ?? '', new RegExp(`^user_logins_${month.replace('-', '_')}_detached_\\d{8}_\\d{12}$`))
  assert.equal((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`)[0]?.n, 2)
  assert.equal((await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_vault`)[0]?.n, 2, 'the month\'s originals are gone')
  assert.equal((await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${report.detached_table}`))[0]?.n, 3, 'its rows are in the detached table')
  await refreshDuplicates(sql, { wait: true })
  const after = await summaryAndTruth(sql)
  assert.deepEqual(after.summary, after.truth, 'the summary counts what is left')
  assert.ok(after.summary.some((d) => d.startsWith('device_id ') && d.includes(' once user-1 ')), 'dev-a, down to its recent login, is a single value again')
  assert.equal(after.summary.filter((d) => !d.includes(' once ')).length, 1, 'only 10.2.2.2 is still seen twice')

  // A late message of the detached month, stored by a process that made its partition before
  // (the detach ran elsewhere): the row goes to the default partition, not lost; making the
  // month's partition again moves it there, and the detached table is untouched.
  await ingestMessages(services, [queueMessage(loginRecord({ user_id: 'late' }), old)])
  assert.equal((await rowsByPartition(sql)).user_logins_default, 1)
  await sql`SELECT login_partition_ensure(${`${month}-01`}::date)`
  assert.equal((await rowsByPartition(sql))[`user_logins_${month.replace('-', '_')}`], 1)
  assert.equal((await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${report.detached_table}`))[0]?.n, 3)
  const dropped = await detachMonth(sql, month, { lockTimeoutMs: 5000, drop: true })
  assert.deepEqual({ ...dropped, detached_table: null }, { month, detached_table: null, rows: 1, dropped: true })
  const [{ exists } = { exists: true }] = await sql<{ exists: boolean }[]>`SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname LIKE ${`user_logins_${month.replace('-', '_')}_detached_%`} AND relname <> ${report.detached_table}) AS exists`
  assert.equal(exists, false, '--drop leaves no table behind')
})

test('partitions: ingestion waits for no lock while a month is attached', async (t) => {
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue)
  if (!services.db.server) return t.skip('needs a server: PGlite serves one session')
  const { sql } = services
  // A storing transaction left open (as a slow batch would be) while another month is attached.
  const storing = await sql.reserve()
  await storing`BEGIN`
  await storing`INSERT INTO user_logins (user_id, create_date) VALUES ('open', ${new Date().toISOString().slice(0, 10)}::date)`
  const attach = sql`SELECT login_partition_ensure('2031-05-01'::date)`
  const attached = await Promise.race([attach.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 5000))])
  await storing`COMMIT`
  storing.release()
  assert.equal(attached, true, 'attaching a month does not wait for an open storing transaction')
})
