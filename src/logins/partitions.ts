import type { Sql } from 'postgres'
import { isDataError } from '../db/errors.ts'

/** The first day of the month after `month` (YYYY-MM-01), as YYYY-MM-01. */
export function nextMonth(month: string): string {
  const [year, m] = month.split('-').map(Number) as [number, number]
  return m === 12 ? `${year + 1}-01-01` : `${year}-${String(m + 1).padStart(2, '0')}-01`
}

/**
 * Makes sure user_logins has the partition of every month a batch will write (migration 011),
 * and the next month's ahead of time, so that the first logins of a month do not wait for one.
 * Runs outside the storing transaction (creating a partition there could hold ingestion up).
 * Remembers the months it made sure of: the common case costs nothing.
 */
export class MonthPartitions {
  private readonly known = new Set<string>()

  constructor(private readonly sql: Sql) {}

  /** `dates` are YYYY-MM-DD create_dates. */
  async ensure(dates: Iterable<string>): Promise<void> {
    const missing = new Set<string>()
    for (const date of dates) {
      const month = `${date.slice(0, 7)}-01`
      if (!this.known.has(month)) missing.add(month)
      if (!this.known.has(nextMonth(month))) missing.add(nextMonth(month))
    }
    if (missing.size === 0) return
    const months = [...missing].sort()
    try {
      await this.sql`SELECT login_partition_ensure(m) FROM unnest(${this.sql.array(months)}::date[]) AS m`
    } catch (error) {
      // A date PostgreSQL cannot hold: the insert refuses that row, and the pipeline records it as rejected.
      if (isDataError(error)) return
      throw error
    }
    for (const month of months) this.known.add(month)
  }

  /** Forgets what it made sure of (after a month was detached, say). */
  forget(): void {
    this.known.clear()
  }
}

export interface MonthPartition {
  /** the partition's table */
  name: string
  /** YYYY-MM, or null for the default partition (rows without a create_date) */
  month: string | null
  /** the planner's estimate (pg_class.reltuples, as of the last ANALYZE); -1 when never analysed */
  estimated_rows: number
  /** table and indexes, bytes */
  bytes: number
}

/** The partitions of user_logins, oldest month first, the default one last. */
export async function listPartitions(sql: Sql): Promise<MonthPartition[]> {
  const rows = await sql<{ name: string; bound: string; estimated_rows: number; bytes: number }[]>`
    SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
           c.reltuples::float8 AS estimated_rows, pg_total_relation_size(c.oid)::float8 AS bytes
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'user_logins'::regclass`
  // "FOR VALUES FROM ('2026-04-01') TO ('2026-05-01')", or "DEFAULT"
  const partitions = rows.map(({ bound, ...rest }) => ({ ...rest, month: /FROM \('(\d{4}-\d{2})-01'\)/.exec(bound)?.[1] ?? null }))
  return partitions.sort((a, b) => (a.month === null ? 1 : b.month === null ? -1 : a.month.localeCompare(b.month)))
}

export interface DetachReport {
  month: string
  /** the detached table's name now (it holds the month's rows) or null once dropped */
  detached_table: string | null
  rows: number
  dropped: boolean
}

/**
 * Detaches an ended month from user_logins (login_partition_detach, migration 011): its logins
 * leave the duplicates summary and their originals the vault, and the table leaves
 * user_logins under a lock held for the catalog change only. `lockTimeoutMs` bounds the wait
 * for that lock (a long query on user_logins makes it fail rather than queue ingestion behind
 * it); `drop` drops the table in the same transaction.
 */
export async function detachMonth(sql: Sql, month: string, options: { lockTimeoutMs: number; drop: boolean }): Promise<DetachReport> {
  return sql.begin(async (tx) => {
    await tx`SELECT set_config('lock_timeout', ${`${options.lockTimeoutMs}ms`}, true)`
    const [{ name } = { name: '' }] = await tx<{ name: string }[]>`SELECT login_partition_detach(${`${month}-01`}::date) AS name`
    const [{ rows } = { rows: 0 }] = await tx.unsafe<{ rows: number }[]>(`SELECT count(*)::int AS rows FROM "${name.replace(/"/g, '""')}"`)
    if (options.drop) await tx.unsafe(`DROP TABLE "${name.replace(/"/g, '""')}"`)
    return { month, detached_table: options.drop ? null : name, rows, dropped: options.drop }
  })
}
