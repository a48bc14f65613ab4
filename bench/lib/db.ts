import { randomBytes } from 'node:crypto'
import postgres, { type Sql } from 'postgres'
import { createSql } from '../../src/db/sql.ts'
import { cpuSeconds } from './proc.ts'

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres'

export interface BenchDatabase {
  name: string
  url: string
  sql: Sql
  drop(): Promise<void>
}

/** The databases created and not dropped yet, for an interrupted run to drop. */
const undropped = new Set<BenchDatabase>()

/** Drops every bench database not dropped yet (an interrupted run: section 8 makes one per size). */
export async function dropBenchDatabases(): Promise<void> {
  await Promise.all([...undropped].map((db) => db.drop()))
}

/** A database of the bench's own (`li_bench_<random>`), dropped at the end. */
export async function createBenchDatabase(serverUrl: string): Promise<BenchDatabase> {
  const name = `li_bench_${randomBytes(5).toString('hex')}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`CREATE DATABASE ${name}`)
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  const sql = createSql({ url: url.toString(), max: 10, statementTimeoutMs: 0, applicationName: 'login-ingest-bench' })
  let dropped = false
  const db: BenchDatabase = {
    name,
    url: url.toString(),
    sql,
    async drop() {
      if (dropped) return
      dropped = true
      undropped.delete(db)
      await sql.end({ timeout: 1 }).catch(() => {})
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await admin.end({ timeout: 1 })
    },
  }
  undropped.add(db)
  return db
}

/** Empties the tables ingestion writes; keeps the schema, the key registry and the mask key state. */
export async function resetTables(sql: Sql): Promise<void> {
  await sql`TRUNCATE user_logins, pii_vault, rejected_messages, pii_data_keys, login_duplicates, login_duplicate_pairs, login_single_values, login_summary_pending RESTART IDENTITY`
}

export async function storedCounts(sql: Sql): Promise<{ rows: number; rejected: number; vault: number }> {
  const [row] = await sql<{ rows: number; rejected: number; vault: number }[]>`
    SELECT (SELECT count(*) FROM user_logins)::int AS rows,
           (SELECT count(*) FROM rejected_messages)::int AS rejected,
           (SELECT count(*) FROM pii_vault)::int AS vault`
  return row ?? { rows: 0, rejected: 0, vault: 0 }
}

export async function serverVersion(sql: Sql): Promise<string> {
  const [row] = await sql<{ server_version: string }[]>`SHOW server_version`
  return row?.server_version ?? 'unknown'
}

/**
 * CPU seconds of the server processes (backends) connected to this database, by pid. A
 * difference of two snapshots is the database's CPU for the work between them, as far as
 * backends do it (the WAL writer and checkpointer are not counted).
 */
export async function backendCpu(sql: Sql, database: string, application: string): Promise<Map<number, number>> {
  const rows = await sql<{ pid: number }[]>`
    SELECT pid FROM pg_stat_activity WHERE datname = ${database} AND application_name = ${application}`
  const out = new Map<number, number>()
  for (const { pid } of rows) {
    try {
      out.set(pid, cpuSeconds(pid))
    } catch {
      // gone meanwhile, or not readable (another host): not counted
    }
  }
  return out
}

export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0)
  return total
}

/**
 * The duplicates summary of migrations 009, 010 and 012 rebuilt from user_logins by grouping
 * (faster than folding a bulk load's pending rows): values seen at least twice, with their
 * pairs, and values seen once, with their login's user and date. Each table is written once by
 * one INSERT, so its sizes are those of rows written once (an UPDATE of every summary row and
 * a DELETE of the pairs of values seen once, as the bench did until 6 December 2026, left the summary
 * and its indexes about a third larger than the fold ever makes them).
 */
export async function rebuildSummary(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SET LOCAL work_mem = '256MB'`
    await tx`TRUNCATE login_duplicate_pairs, login_duplicates, login_single_values, login_summary_pending`
    await tx`
      CREATE TEMPORARY TABLE bench_values ON COMMIT DROP AS
        SELECT 'ip'::varchar(16) AS field, masked_ip AS masked_value, user_id, create_date FROM user_logins WHERE masked_ip IS NOT NULL
        UNION ALL
        SELECT 'device_id', masked_device_id, user_id, create_date FROM user_logins WHERE masked_device_id IS NOT NULL`
    await tx`
      CREATE TEMPORARY TABLE bench_counts ON COMMIT DROP AS
        SELECT field, masked_value, count(*) AS logins, count(DISTINCT user_id)::int AS users, min(user_id) AS user_id,
               min(create_date) AS first_seen, max(create_date) AS last_seen
        FROM bench_values GROUP BY 1, 2`
    await tx`
      INSERT INTO login_duplicates (field, masked_value, logins, users, first_seen, last_seen)
        SELECT field, masked_value, logins, users, first_seen, last_seen FROM bench_counts WHERE logins >= 2`
    await tx`
      INSERT INTO login_duplicate_pairs (field, masked_value, user_id, logins)
        SELECT v.field, v.masked_value, v.user_id, count(*) FROM bench_values v
        WHERE EXISTS (SELECT 1 FROM login_duplicates d WHERE d.field = v.field AND d.masked_value = v.masked_value)
        GROUP BY 1, 2, 3`
    await tx`
      INSERT INTO login_single_values (field, masked_value, user_id, seen)
        SELECT field, masked_value, user_id, first_seen FROM bench_counts WHERE logins = 1`
  })
  // The report's plan depends on the summary's statistics (an unanalysed summary is sorted whole).
  await sql`VACUUM ANALYZE login_duplicates`
  await sql`VACUUM ANALYZE login_duplicate_pairs`
  await sql`VACUUM ANALYZE login_single_values`
}
