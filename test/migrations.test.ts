import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import type { Sql } from 'postgres'
import { createSql } from '../src/db/sql.ts'
import { loadMigrations, migrate } from '../src/db/migrate.ts'
import { LoginPipeline } from '../src/ingest/pipeline.ts'
import { listLogins } from '../src/logins/store.ts'
import { refreshDuplicates } from '../src/logins/summary.ts'
import type { QueueMessage } from '../src/ingest/queue.ts'
import { Masker } from '../src/pii/mask.ts'
import { Vault, keyringProvider } from '../src/pii/vault.ts'
import { prepareDatabase } from '../src/prepare.ts'
import { needsServer, testDatabase, testKeys } from './helper.ts'
import { testLogins } from './messages.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const versions = (await loadMigrations()).map((m) => m.version)

/** The exercise's pre-created table, exactly as SPEC.md gives it. */
const EXERCISE_DDL = `CREATE TABLE user_logins(user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
  masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)`

const OLD_ROWS = [
  { user_id: '424cdd21-063a-43a7-b91b-7ca1a833afae', device_type: 'android', masked_ip: 'old-mask-ip-1', masked_device_id: 'old-mask-dev-1', locale: 'RU', app_version: 230, create_date: '2020-07-20' },
  { user_id: 'c0173198-76a8-4e67-bfc2-74eaa3bbff57', device_type: 'ios', masked_ip: 'old-mask-ip-2', masked_device_id: 'old-mask-dev-2', locale: null, app_version: null, create_date: '2021-01-02' },
  { user_id: 'x', device_type: null, masked_ip: null, masked_device_id: null, locale: null, app_version: 2, create_date: null },
]

async function appliedVersions(sql: Sql): Promise<string[]> {
  return (await sql<{ version: string }[]>`SELECT version FROM schema_migrations ORDER BY version`).map((r) => r.version)
}

/** Columns and constraints of the public schema, to compare before and after a migration run. */
async function schemaShape(sql: Sql): Promise<string[]> {
  const columns = await sql<{ d: string }[]>`
    SELECT table_name || '.' || column_name || ' ' || data_type || coalesce('(' || character_maximum_length || ')', '') AS d
    FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1`
  const constraints = await sql<{ d: string }[]>`
    SELECT conrelid::regclass::text || ' ' || conname AS d FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace ORDER BY 1`
  const indexes = await sql<{ d: string }[]>`SELECT indexname AS d FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`
  return [...columns, ...constraints, ...indexes].map((r) => r.d)
}

function queueMessage(id: string, body: string): QueueMessage {
  return { messageId: id, receiptHandle: `rh-${id}`, body, sentAt: new Date('2024-05-06T07:08:09Z'), receiveCount: 1 }
}

test('migrations succeed on the exercise\'s user_logins table with rows: old rows keep their values, get ids, and new rows go in', async (t) => {
  const db = await testDatabase(t)
  await db.sql.unsafe(EXERCISE_DDL)
  for (const row of OLD_ROWS) await db.sql`INSERT INTO user_logins ${db.sql(row)}`

  assert.deepEqual(await migrate(db.sql), versions, 'every migration applies')
  assert.deepEqual(await appliedVersions(db.sql), versions)

  const old = await db.sql<(typeof OLD_ROWS[number] & { id: string; message_id: string | null })[]>`
    SELECT id::text, message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
           to_char(create_date, 'YYYY-MM-DD') AS create_date
    FROM user_logins ORDER BY id`
  assert.equal(old.length, OLD_ROWS.length, 'no row lost')
  assert.deepEqual(old.map(({ id: _id, message_id: _m, ...rest }) => rest), OLD_ROWS, 'the old rows keep their values')
  assert.ok(old.every((r) => r.id !== null), 'every old row got an id')
  assert.equal(new Set(old.map((r) => r.id)).size, OLD_ROWS.length, 'the ids are distinct')
  assert.ok(old.every((r) => r.message_id === null), 'old rows have no SQS message id')

  // The exercise's columns keep their names and types.
  const columns = await db.sql<{ column_name: string; data_type: string; len: number | null }[]>`
    SELECT column_name, data_type, character_maximum_length AS len FROM information_schema.columns
    WHERE table_name = 'user_logins' AND column_name IN ('user_id', 'device_type', 'masked_ip', 'masked_device_id', 'locale', 'app_version', 'create_date')
    ORDER BY column_name`
  assert.deepEqual(columns.map((c) => `${c.column_name} ${c.data_type}${c.len === null ? '' : `(${c.len})`}`), [
    'app_version integer', 'create_date date', 'device_type character varying(32)', 'locale character varying(32)',
    'masked_device_id character varying(256)', 'masked_ip character varying(256)', 'user_id character varying(128)',
  ])

  // The service then starts on this database and ingests into the same table.
  const keys = testKeys()
  await prepareDatabase(db.sql, keys)
  const masker = new Masker(keys.mask)
  const pipeline = new LoginPipeline(db.sql, masker, new Vault(db.sql, keyringProvider(keys.master)))
  const batch = testLogins(3).map((l, i) => queueMessage(`m-${i}`, l.body))
  const first = await pipeline.process(batch)
  assert.equal(first.inserted, 3)
  const again = await pipeline.process(batch)
  assert.deepEqual({ inserted: again.inserted, duplicates: again.duplicates }, { inserted: 0, duplicates: 3 }, 'the message id is unique')

  const all = await db.sql<{ id: string; message_id: string | null }[]>`SELECT id::text, message_id FROM user_logins ORDER BY id`
  assert.equal(all.length, OLD_ROWS.length + 3)
  assert.equal(new Set(all.map((r) => r.id)).size, all.length, 'new rows do not reuse the ids of the old ones')
  assert.deepEqual(all.filter((r) => r.message_id !== null).map((r) => r.message_id).sort(), ['m-0', 'm-1', 'm-2'])
  const [vault] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pii_vault`
  assert.equal(vault?.n, 3, 'only the new rows have originals')
})

test('migrations succeed on the exercise\'s table without rows', async (t) => {
  const db = await testDatabase(t)
  await db.sql.unsafe(EXERCISE_DDL)
  assert.deepEqual(await migrate(db.sql), versions)
  const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`
  assert.equal(row?.n, 0)
})

test('migrations run twice: the second run applies nothing and changes nothing', async (t) => {
  const db = await testDatabase(t)
  assert.deepEqual(await migrate(db.sql), versions)
  const shape = await schemaShape(db.sql)
  assert.ok(shape.length > 0)
  assert.deepEqual(await migrate(db.sql), [], 'nothing left to apply')
  assert.deepEqual(await migrate(db.sql), [])
  assert.deepEqual(await appliedVersions(db.sql), versions, 'each version recorded once')
  assert.deepEqual(await schemaShape(db.sql), shape, 'the schema is unchanged by the later runs')
})

test('two connections migrating one fresh database at once both succeed, and each version is applied once', { skip: needsServer }, async (t) => {
  const db = await testDatabase(t)
  const others = [0, 1, 2].map(() => createSql({ url: db.url, max: 1, statementTimeoutMs: 0 }))
  t.after(() => Promise.all(others.map((sql) => sql.end({ timeout: 1 }))))
  const results = await Promise.all(others.map((sql) => migrate(sql)))
  assert.deepEqual(results.flat().sort(), [...versions].sort(), 'together they applied every version exactly once')
  assert.equal(results.filter((r) => r.length > 0).length, 1, 'one of them did the work, the others found nothing left')
  assert.deepEqual(await appliedVersions(db.sql), versions)
})

test('two processes running npm run migrate on one fresh database at once both succeed', { skip: needsServer }, async (t) => {
  const db = await testDatabase(t)
  const run = (): Promise<{ code: number | null; output: string }> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/migrate.ts'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, DATABASE_URL: db.url, NODE_ENV: 'test' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      t.after(() => child.kill('SIGKILL'))
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
      child.on('error', reject)
      child.on('exit', (code) => resolve({ code, output }))
    })
  const results = await Promise.all([run(), run()])
  for (const { code, output } of results) assert.equal(code, 0, `migrate exited ${code}: ${output}`)
  const outputs = results.map((r) => r.output).join('\n')
  assert.equal((outputs.match(/migrations applied:/g) ?? []).length, 1, `one process applied the migrations:\n${outputs}`)
  assert.match(outputs, /nothing to apply/)
  assert.deepEqual(await appliedVersions(db.sql), versions)
})

test('migrations 009 and 010 count the rows already in the exercise\'s table into the duplicates summary, values seen twice or more', async (t) => {
  const db = await testDatabase(t)
  await db.sql.unsafe(EXERCISE_DDL)
  for (const row of [...OLD_ROWS, { ...OLD_ROWS[0], user_id: 'another' }, { ...OLD_ROWS[0] }, { ...OLD_ROWS[1], user_id: null }, { ...OLD_ROWS[0], masked_ip: 'old-mask-ip-once', masked_device_id: 'old-mask-dev-once' }]) {
    await db.sql`INSERT INTO user_logins ${db.sql(row)}`
  }
  await migrate(db.sql)
  const summary = await db.sql<{ field: string; masked_value: string; logins: number; users: number; first_seen: string | null }[]>`
    SELECT field::text, masked_value, logins::int, users, to_char(first_seen, 'YYYY-MM-DD') AS first_seen FROM login_duplicates ORDER BY field, masked_value`
  assert.deepEqual([...summary], [
    { field: 'device_id', masked_value: 'old-mask-dev-1', logins: 3, users: 2, first_seen: '2020-07-20' },
    { field: 'device_id', masked_value: 'old-mask-dev-2', logins: 2, users: 1, first_seen: '2021-01-02' },
    { field: 'ip', masked_value: 'old-mask-ip-1', logins: 3, users: 2, first_seen: '2020-07-20' },
    { field: 'ip', masked_value: 'old-mask-ip-2', logins: 2, users: 1, first_seen: '2021-01-02' },
  ], 'rows without masks are not counted; a NULL user_id is a login, not a user; values seen once are left out')
  const pairs = await db.sql<{ masked_value: string }[]>`SELECT DISTINCT masked_value FROM login_duplicate_pairs ORDER BY 1`
  assert.deepEqual(pairs.map((p) => p.masked_value), ['old-mask-dev-1', 'old-mask-dev-2', 'old-mask-ip-1', 'old-mask-ip-2'], 'pairs only for values in the summary')
  assert.equal((await db.sql`SELECT 1 FROM login_summary_pending`).length, 0, 'the rows already there are counted once, not also queued')
})

test('migrations after 012 on a database with rows in several months: rows, pages and the summary unchanged, the mask indexes without user_id', async (t) => {
  const db = await testDatabase(t)
  const sql = db.sql
  const all = await loadMigrations()
  await migrate(sql, all.filter((m) => m.version < '013'))
  // Three months with their partitions, as ingestion makes them.
  await sql`SELECT login_partition_ensure(d) FROM unnest(ARRAY['2026-01-15', '2026-02-15', '2026-03-18']::date[]) AS d`
  await sql`
    INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, create_date, mask_key_id)
    SELECT 'r-' || i, 'u-' || (i % 5), 'ios', 'k1:ip-' || (i % 7), 'k1:dev-' || (i % 11), DATE '2026-01-15' + (i % 3) * 31, 'k1'
    FROM generate_series(1, 300) AS i`
  // Folded as the service of 012 folded it (refreshDuplicates now also calls 014's function).
  await sql`SELECT login_duplicates_refresh()`
  const rows = async () => sql<{ id: string; masked_ip: string }[]>`SELECT id::text, masked_ip FROM user_logins ORDER BY id`
  const summary = async () => sql<{ v: string }[]>`SELECT field || ' ' || masked_value || ' ' || logins || ' ' || users AS v FROM login_duplicates ORDER BY 1`
  const before = { rows: await rows(), summary: await summary(), page: await listLogins(sql, { limit: 50, masked_ip: 'k1:ip-3' }) }

  assert.deepEqual(await migrate(sql), all.filter((m) => m.version >= '013').map((m) => m.version))
  assert.deepEqual(await rows(), before.rows)
  assert.deepEqual(await summary(), before.summary)
  assert.deepEqual(await listLogins(sql, { limit: 50, masked_ip: 'k1:ip-3' }), before.page, 'the masked_ip page reads the rebuilt index')
  await sql`INSERT INTO user_logins (message_id, user_id, masked_ip, create_date) VALUES ('r-after', 'u-0', 'k1:ip-3', '2026-02-20')`
  assert.equal(await refreshDuplicates(sql, { wait: true }), 1, 'the fold of the migrated schema')
  const [ip3] = await sql<{ logins: number }[]>`SELECT logins::int FROM login_duplicates WHERE masked_value = 'k1:ip-3'`
  assert.equal(ip3?.logins, 44, '43 logins before the migrations, one after')
  // The partitioned index and each month's: (mask, id), nothing included.
  const shapes = await sql<{ name: string; keys: number; columns: number }[]>`
    SELECT c.relname AS name, i.indnkeyatts::int AS keys, i.indnatts::int AS columns FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid IN (SELECT 'user_logins'::regclass UNION ALL SELECT inhrelid FROM pg_inherits WHERE inhparent = 'user_logins'::regclass)
      AND pg_get_indexdef(i.indexrelid) ~ '\(masked_(ip|device_id), id\)'`
  const [parts] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'user_logins'::regclass`
  assert.ok((parts?.n ?? 0) >= 4, 'the three months and the default partition at least')
  assert.equal(shapes.length, 2 * (1 + (parts?.n ?? 0)), 'both indexes on user_logins and on each of its partitions')
  assert.ok(shapes.every((s) => s.keys === 2 && s.columns === 2), JSON.stringify(shapes))
})
