import { Readable } from 'node:stream'
import { pipeline as streamPipeline } from 'node:stream/promises'
import type { Sql } from 'postgres'
import { round } from './context.ts'
import { backendCpu, cpuDelta } from './db.ts'

export interface CopyResult {
  rows: number
  seconds: number
  rowsPerSecond: number
  /** CPU time of the PostgreSQL backends doing the COPY, per row (user_logins row and its vault row) */
  postgresCpuUsPerRow: number
}

/** One COPY text-format field. */
const copyField = (value: string | null): string =>
  value === null ? '\\N' : value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')

const LOGIN_COLUMNS = ['id', 'message_id', 'user_id', 'device_type', 'masked_ip', 'masked_device_id', 'locale', 'app_version',
  'app_version_text', 'create_date', 'sent_at', 'ingested_at', 'mask_key_id'] as const

/**
 * Reads the rows ingestion wrote (user_logins and pii_vault), empties the tables and writes the
 * very same rows back with a plain text COPY in one transaction, into the same tables with the
 * same indexes: the database's floor for these rows. `application` names the bench's own
 * sessions, whose backends' CPU is read from /proc.
 */
export async function copyStoredRows(sql: Sql, database: string, application: string): Promise<CopyResult> {
  // json, not text[]: postgres.js reads a NULL element of a text array as the string 'NULL'.
  const loginRows = await sql.unsafe<{ line: (string | null)[] }[]>(
    `SELECT json_build_array(${LOGIN_COLUMNS.map((c) => `${c}::text`).join(', ')}) AS line FROM user_logins ORDER BY id`)
  const vaultRows = await sql<{ line: (string | null)[] }[]>`
    SELECT json_build_array(login_id::text, data_key_id::text, '\\x' || encode(ciphertext, 'hex')) AS line FROM pii_vault ORDER BY login_id`
  await sql`TRUNCATE user_logins, pii_vault`
  await sql`VACUUM ANALYZE user_logins`
  const lines = (rows: { line: (string | null)[] }[]) => Readable.from((function* () {
    for (const { line } of rows) yield `${line.map(copyField).join('\t')}\n`
  })())
  const cpu0 = await backendCpu(sql, database, application)
  const started = performance.now()
  // postgres.js never settles a COPY that the server refused: give up after a while instead of hanging.
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('COPY did not finish within 5 minutes (refused data?)')), 300_000)
  })
  await Promise.race([timeout, sql.begin(async (tx) => {
    await streamPipeline(lines(loginRows), await tx.unsafe(`COPY user_logins (${LOGIN_COLUMNS.join(', ')}) FROM STDIN`).writable())
    await streamPipeline(lines(vaultRows), await tx`COPY pii_vault (login_id, data_key_id, ciphertext) FROM STDIN`.writable())
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
