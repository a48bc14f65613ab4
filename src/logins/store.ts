import type { Sql } from 'postgres'
import type { Login } from '../schemas/logins.ts'

export interface LoginQuery {
  limit: number
  /** id of the last row of the previous page; the page holds smaller ids */
  before?: bigint
}

/** Newest first by id, keyset-paged. Fetches one row more than asked to learn whether a next page exists. */
export async function listLogins(sql: Sql, query: LoginQuery): Promise<{ items: Login[]; lastId: string | null }> {
  const rows = await sql<Login[]>`
    SELECT id::text AS id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
           app_version_text, to_char(create_date, 'YYYY-MM-DD') AS create_date, message_id, mask_key_id,
           to_char(ingested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ingested_at
    FROM user_logins
    WHERE ${query.before === undefined ? sql`TRUE` : sql`id < ${query.before.toString()}`}
    ORDER BY id DESC
    LIMIT ${query.limit + 1}`
  const items = rows.slice(0, query.limit)
  return { items, lastId: rows.length > query.limit ? (items.at(-1)?.id ?? null) : null }
}

export async function countLogins(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`
  return row?.n ?? 0
}
