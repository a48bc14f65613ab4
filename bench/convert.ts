// Times migrations 011 (user_logins to monthly partitions), 012 (the single values, built by
// grouping every row) and the later ones (013 rebuilds the two mask indexes) on a table that
// already holds rows:
// `node --import tsx bench/convert.ts [rows]` (default 1,000,000). Creates and drops a database
// of its own on DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432/postgres).
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import { loadMigrations, migrate } from '../src/db/migrate.ts'

const rows = Number(process.argv[2] ?? 1_000_000)
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const name = `li_convert_${randomBytes(4).toString('hex')}`
const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
await admin.unsafe(`CREATE DATABASE ${name}`)
const url = new URL(serverUrl)
url.pathname = `/${name}`
const sql = postgres(url.toString(), { max: 1, onnotice: () => {} })
try {
  const all = await loadMigrations()
  const before = all.filter((m) => m.version < '011')
  const conversion = all.filter((m) => m.version.startsWith('011'))
  const singles = all.filter((m) => m.version.startsWith('012'))
  const later = all.filter((m) => m.version > '013')
  await migrate(sql, before)
  // Rows as the service writes them, over a year (twelve months to make), with a vault row each.
  await sql`ALTER TABLE user_logins DISABLE TRIGGER user_logins_summary_insert`
  await sql`
    INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, app_version_text,
                             create_date, sent_at, mask_key_id)
    SELECT gen_random_uuid()::text, md5('u' || (i % ${Math.ceil(rows / 4)}))::uuid::text, 'android',
           'k1:' || md5('ip' || hashint4(i) % ${Math.ceil(rows / 3)}), 'k1:' || md5('dev' || hashint4(i + 7) % ${Math.ceil(rows / 3)}),
           'RU', 131584, '2.2.0', DATE '2025-04-01' + (i * 365 / ${rows}), TIMESTAMPTZ '2025-04-01' + (i * 365 / ${rows}) * interval '1 day', 'k1'
    FROM generate_series(1, ${rows}) AS i`
  await sql`INSERT INTO pii_vault (login_id, ciphertext) SELECT id, '\\x00'::bytea FROM user_logins`
  await sql`ALTER TABLE user_logins ENABLE TRIGGER user_logins_summary_insert`
  await sql`VACUUM ANALYZE user_logins`
  await sql`CHECKPOINT`
  const started = performance.now()
  await migrate(sql, conversion)
  const seconds = (performance.now() - started) / 1000
  const [parts] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'user_logins'::regclass`
  await sql`CHECKPOINT`
  const built = performance.now()
  await migrate(sql, singles)
  const singleSeconds = (performance.now() - built) / 1000
  await sql`CHECKPOINT`
  const rebuilt = performance.now()
  await migrate(sql, later)
  const laterSeconds = (performance.now() - rebuilt) / 1000
  const perMillion = (s: number) => Math.round((s / rows) * 1e7) / 10
  console.log(JSON.stringify({
    rows,
    seconds: Math.round(seconds * 10) / 10, secondsPerMillion: perMillion(seconds), partitions: parts?.n,
    singleValuesSeconds: Math.round(singleSeconds * 10) / 10, singleValuesSecondsPerMillion: perMillion(singleSeconds),
    laterMigrations: later.map((m) => m.version), laterSeconds: Math.round(laterSeconds * 10) / 10, laterSecondsPerMillion: perMillion(laterSeconds),
  }))
} finally {
  await sql.end({ timeout: 5 })
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await admin.end({ timeout: 5 })
}
