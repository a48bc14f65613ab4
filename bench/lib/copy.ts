import { Readable } from 'node:stream'
import { pipeline as streamPipeline } from 'node:stream/promises'
import type { Sql } from 'postgres'
import { round } from './context.ts'
import { backendCpu, cpuDelta } from './db.ts'

export interface CopyResult {
  rows: number
  seconds: number
  rowsPerSecond: number
  /** CPU time of the PostgreSQL backends doing the COPY, per user_logins row (with its vault row, and the data keys and rejections of the run) */
  postgresCpuUsPerRow: number
}

/** One COPY text-format field. */
const copyField = (value: string | null): string =>
  value === null ? '\\N' : value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')

/**
 * The tables ingestion writes, parents first (the foreign keys point up this list): the rows, the
 * originals, the rejections and the duplicates summary the worker folds them into (a COPY of
 * user_logins queues its rows for the summary too, as ingestion does).
 */
const TABLES = ['pii_data_keys', 'user_logins', 'pii_vault', 'rejected_messages', 'login_duplicates', 'login_duplicate_pairs', 'login_single_values'] as const

/**
 * Reads the rows ingestion wrote (data keys, logins, vault, rejections, summary), empties those tables and
 * writes the very same rows back with a plain text COPY in one transaction, into the same tables
 * with the same indexes and foreign keys: the database's floor for these rows. `application`
 * names the bench's own sessions, whose backends' CPU is read from /proc.
 */
export async function copyStoredRows(sql: Sql, database: string, application: string): Promise<CopyResult> {
  const columns = new Map<string, string[]>()
  const data = new Map<string, { line: (string | null)[] }[]>()
  for (const table of TABLES) {
    const names = (await sql<{ name: string }[]>`
      SELECT column_name AS name FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = ${table} ORDER BY ordinal_position`).map((c) => c.name)
    columns.set(table, names)
    // json, not text[]: postgres.js reads a NULL element of a text array as the string 'NULL'.
    data.set(table, await sql.unsafe<{ line: (string | null)[] }[]>(
      `SELECT json_build_array(${names.map((c) => `${c}::text`).join(', ')}) AS line FROM ${table} ORDER BY ${names[0] ?? '1'}`))
  }
  await sql.unsafe(`TRUNCATE ${TABLES.join(', ')}, login_summary_pending`)
  await sql`VACUUM ANALYZE user_logins`
  const lines = (rows: { line: (string | null)[] }[]) => Readable.from((function* () {
    for (const { line } of rows) yield `${line.map(copyField).join('\t')}\n`
  })())
  const loginRows = data.get('user_logins') ?? []
  const cpu0 = await backendCpu(sql, database, application)
  const started = performance.now()
  // postgres.js never settles a COPY that the server refused: give up after a while instead of hanging.
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('COPY did not finish within 5 minutes (refused data?)')), 300_000)
  })
  await Promise.race([timeout, sql.begin(async (tx) => {
    for (const table of TABLES) {
      await streamPipeline(lines(data.get(table) ?? []), await tx.unsafe(`COPY ${table} (${(columns.get(table) ?? []).join(', ')}) FROM STDIN`).writable())
    }
  })]).finally(() => clearTimeout(timer))
  const seconds = (performance.now() - started) / 1000
  const cpu1 = await backendCpu(sql, database, application)
  return {
    rows: loginRows.length,
    seconds: round(seconds, 3),
    rowsPerSecond: round(loginRows.length / seconds, 0),
    postgresCpuUsPerRow: round((cpuDelta(cpu0, cpu1) / Math.max(1, loginRows.length)) * 1e6, 1),
  }
}
