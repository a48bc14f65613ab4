import assert from 'node:assert/strict'
import { test } from 'node:test'
import postgres from 'postgres'
import { migrate } from '../src/db/migrate.ts'
import { listDuplicates, listDuplicatesWithPending, listLogins, type LoginQuery } from '../src/logins/store.ts'
import { Vault, keyringProvider } from '../src/pii/vault.ts'
import { testDatabase, testKeys } from './helper.ts'

/*
 * Every filter of GET /logins (and the duplicates report) is served by an index on a table of
 * realistic shape: the exact statements the store sends, captured from postgres.js, are
 * explained with their parameters, as a custom plan and as the generic plan a prepared
 * statement may switch to after five runs. A sequential scan of user_logins fails the test.
 * The vault's lookup of a batch's data keys likewise, on a table without statistics.
 */

const ROWS = 60_000

test('GET /logins, the duplicates report and the vault\'s key lookup read indexes (no sequential scan), in custom and generic plans', { skip: process.env.DATABASE_URL === undefined ? 'needs a second session to capture the statements (PostgreSQL server; PGlite serves one)' : false }, async (t) => {
  const db = await testDatabase(t, { max: 2 })
  await migrate(db.sql)
  // 60,000 logins: 15,000 users, android/ios, a dozen locales and NULL, 20 versions, 120 days,
  // masks shared by a few rows each, half the rows with an ip pseudonym.
  // The months' partitions, as ingestion makes them (migration 011): plans read every month.
  await db.sql`SELECT login_partition_ensure(m::date) FROM generate_series('2026-08-01'::date, '2026-12-01'::date, interval '1 month') m`
  await db.sql`ALTER TABLE user_logins DISABLE TRIGGER user_logins_summary_insert`
  await db.sql`
    INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, app_version_text,
                             create_date, sent_at, mask_key_id, masked_ip_prefix, ip_prefix_net)
    SELECT 'm-' || i, 'u-' || (i % 15000), CASE WHEN i % 5 < 3 THEN 'android' ELSE 'ios' END,
           'k1:ip-' || (hashint4(i) % 30000), 'k1:dev-' || (hashint4(i + 7) % 15000),
           (ARRAY['US', 'DE', 'FR', 'RU', 'BR', 'IN', 'JP', 'GB', 'ES', 'IT', 'PL', 'NL', NULL])[1 + i % 13],
           (2 * 65536 + (i % 20) * 256), '2.' || (i % 20) || '.0',
           DATE '2026-08-01' + (i * 120 / ${ROWS}), TIMESTAMPTZ '2026-08-01' + i * interval '3 minutes', 'k1',
           CASE WHEN i % 2 = 0 THEN 'p1:' || host(('10.' || (i % 250) || '.' || (i % 199) || '.1')::inet) END,
           CASE WHEN i % 2 = 0 THEN ('10.' || (i % 250) || '.' || (i % 199) || '.1')::inet END
    FROM generate_series(1, ${ROWS}) AS i`
  await db.sql`ALTER TABLE user_logins ENABLE TRIGGER user_logins_summary_insert`
  await db.sql`VACUUM ANALYZE user_logins`

  // A sequential scan is allowed only of a partition with no rows (the months made ahead, the
  // default partition), where the planner rightly prefers it: there is nothing to read.
  const assertNoScanOfRows = async (plan: string, what: string) => {
    for (const [, relation] of plan.matchAll(/Seq Scan on (\w+)/g)) {
      assert.match(relation ?? '', /^user_logins_/, `${what}: a sequential scan of ${relation}:\n${plan}`)
      const [{ n } = { n: -1 }] = await db.sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${relation}`)
      assert.equal(n, 0, `${what}: a sequential scan of ${relation}, which holds rows:\n${plan}`)
    }
  }

  const captured: { query: string; params: unknown[] }[] = []
  const capture = postgres(db.url, { max: 1, onnotice: () => {}, debug: (_c, query, params) => { captured.push({ query, params: [...params] }) } })
  t.after(() => capture.end())
  /** A captured statement's plan as a custom plan and as the generic plan a prepared statement may switch to. */
  const plans = async (statement: { query: string; params: unknown[] }) => {
    const out: [string, string][] = []
    for (const mode of ['auto', 'force_generic_plan'] as const) {
      const plan = await db.sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL plan_cache_mode = ${mode}`)
        const rows = await tx.unsafe<{ 'QUERY PLAN': string }[]>(`EXPLAIN ${statement.query}`, statement.params as never[])
        return rows.map((r) => r['QUERY PLAN']).join('\n')
      })
      out.push([mode, plan])
    }
    return out
  }

  const shapes: [string, Omit<LoginQuery, 'limit'>][] = [
    ['no filter', {}],
    ['user_id', { user_id: 'u-42' }],
    ['masked_ip', { masked_ip: 'k1:ip-17' }],
    ['masked_device_id', { masked_device_id: 'k1:dev-17' }],
    ['device_type', { device_type: 'ios' }],
    ['locale', { locale: 'RU' }],
    ['app_version', { app_version: '2.7.0' }],
    ['version range', { version_min: 2 * 65536 + 3 * 256, version_max: 2 * 65536 + 4 * 256 }],
    ['one day', { date_from: '2026-09-10', date_to: '2026-09-10' }],
    ['a week, device type and locale', { date_from: '2026-09-10', date_to: '2026-09-16', device_type: 'ios', locale: 'RU' }],
    ['ip network', { ip_network: { keyId: 'p1', first: '10.7.0.0', last: '10.7.255.255' } }],
    ['user_id, next page', { user_id: 'u-42', before: 30_000n }],
    ['no filter, next page', { before: 30_000n }],
  ]
  for (const [name, filters] of shapes) {
    captured.length = 0
    await listLogins(capture, { limit: 100, ...filters })
    const statement = captured.at(-1)
    assert.ok(statement !== undefined, name)
    for (const [mode, plan] of await plans(statement)) {
      await assertNoScanOfRows(plan, `${name} (${mode})`)
      assert.match(plan, /Index (Only )?Scan|Bitmap Index Scan/, `${name} (${mode}):\n${plan}`)
    }
  }

  // The duplicates report: a range of the summary's report index, not a scan of either table
  // nor a sort of the summary. Both fields (the dashboards' default) also before the summary has
  // statistics, as right after a bulk load: the planner then guesses a handful of rows, and with
  // a field predicate it sorted all of them.
  await db.sql`INSERT INTO login_duplicates (field, masked_value, logins, users) SELECT 'ip', 'k1:v' || i, 2 + i % 50, 1 FROM generate_series(1, 20000) i`
  const explainReport = async (what: string, run: () => Promise<unknown>) => {
    captured.length = 0
    await run()
    const report = captured.find((c) => /FROM login_duplicates/.test(c.query))
    assert.ok(report !== undefined, what)
    for (const [mode, plan] of await plans(report)) {
      assert.doesNotMatch(plan, /Seq Scan on login_duplicates|Bitmap Heap Scan on login_duplicates/, `${what} (${mode}):\n${plan}`)
      assert.match(plan, /Index (Only )?Scan using login_duplicates_report_idx/, `${what} (${mode}):\n${plan}`)
    }
  }
  const all = { fields: ['ip', 'device_id'] as ('ip' | 'device_id')[], minCount: 2, limit: 100 }
  await explainReport('duplicates, both fields, no statistics', () => listDuplicates(capture, all))
  await explainReport('duplicates with the pending count, both fields, no statistics', () => listDuplicatesWithPending(capture, all, 10_000))
  await db.sql`ANALYZE login_duplicates`
  await explainReport('duplicates, both fields', () => listDuplicates(capture, all))
  await explainReport('duplicates, ip', () => listDuplicates(capture, { ...all, fields: ['ip'] }))
  await explainReport('duplicates with the pending count, ip, after a cursor', () => listDuplicatesWithPending(capture, { ...all, fields: ['ip'], after: { count: 30, field: 'ip', masked_value: 'k1:v5' } }, 10_000))

  // The vault's lookup of a batch's data keys: one probe of the unique (subject, period) index a
  // key, also before the table has statistics (a new database). As a join, the generic plan read
  // the whole table for every batch; as probes, the planner could pick the index on period alone
  // (dropped by migration 015), which every key of the month matches.
  await db.sql`INSERT INTO pii_data_keys (subject, period, master_key_id, wrapped_key)
    SELECT 'u-' || i, DATE '2026-09-01', 'm1', '\\x00'::bytea FROM generate_series(1, 5000) AS i`
  captured.length = 0
  const vault = new Vault(capture, keyringProvider(testKeys().master))
  await vault.dataKeys(Array.from({ length: 10 }, (_, i) => ({ subject: `new-${i}`, period: '2026-09-01' })))
  const lookup = captured.find((c) => /^\s*SELECT/.test(c.query) && /unnest/.test(c.query) && /pii_data_keys/.test(c.query))
  assert.ok(lookup !== undefined, 'the data keys lookup')
  for (const [mode, plan] of await plans(lookup)) {
    assert.doesNotMatch(plan, /Seq Scan on pii_data_keys|Bitmap Heap Scan on pii_data_keys/, `data keys lookup (${mode}):\n${plan}`)
    assert.match(plan, /Index Scan using pii_data_keys_scope_key/, `data keys lookup (${mode}):\n${plan}`)
  }
})
