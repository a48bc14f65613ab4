import type { Sql } from 'postgres'
import type { Login } from '../schemas/logins.ts'
import { loginAad, type Vault } from '../pii/vault.ts'

export interface LoginFilters {
  user_id?: string
  device_type?: string
  locale?: string
  masked_ip?: string
  masked_device_id?: string
  app_version?: string
  /** inclusive bounds on the integer encoding of app_version */
  version_min?: number
  version_max?: number
  /** inclusive bounds on create_date, YYYY-MM-DD */
  date_from?: string
  date_to?: string
  /** pseudonyms (ipcrypt-pfx) under `keyId` from `first` to `last`, the bounds of one network */
  ip_network?: { keyId: string; first: string; last: string }
}

export interface LoginQuery extends LoginFilters {
  limit: number
  /** id of the last row of the previous page; the page holds smaller ids */
  before?: bigint
}

const LOGIN_COLUMNS = `id::text AS id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
  app_version_text, to_char(create_date, 'YYYY-MM-DD') AS create_date, message_id, mask_key_id, masked_ip_prefix,
  to_char(ingested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ingested_at`

/**
 * Newest first by id, keyset-paged on the primary key (or on a filter's (column, id) index), so
 * a walk through the pages sees every row that existed when it began exactly once. Fetches one
 * row more than asked to learn whether there is a next page.
 */
export async function listLogins(sql: Sql, query: LoginQuery): Promise<{ items: Login[]; lastId: string | null }> {
  const conditions = [
    query.before === undefined ? null : sql`id < ${query.before.toString()}`,
    query.user_id === undefined ? null : sql`user_id = ${query.user_id}`,
    query.device_type === undefined ? null : sql`device_type = ${query.device_type}`,
    query.locale === undefined ? null : sql`locale = ${query.locale}`,
    query.masked_ip === undefined ? null : sql`masked_ip = ${query.masked_ip}`,
    query.masked_device_id === undefined ? null : sql`masked_device_id = ${query.masked_device_id}`,
    query.app_version === undefined ? null : sql`app_version_text = ${query.app_version}`,
    query.version_min === undefined ? null : sql`app_version >= ${query.version_min}`,
    query.version_max === undefined ? null : sql`app_version <= ${query.version_max}`,
    query.date_from === undefined ? null : sql`create_date >= ${query.date_from}::date`,
    query.date_to === undefined ? null : sql`create_date <= ${query.date_to}::date`,
    // The network's bounds rather than `<<= $1`: PostgreSQL turns `<<=` into an index range only
    // for a constant, so a prepared statement's generic plan would read the whole index. The
    // stored values are host addresses (/32, /128), for which the two comparisons are exact.
    query.ip_network === undefined
      ? null
      : sql`ip_prefix_net >= ${query.ip_network.first}::inet AND ip_prefix_net <= ${query.ip_network.last}::inet
            AND starts_with(masked_ip_prefix, ${`${query.ip_network.keyId}:`})`,
  ].filter((c) => c !== null)
  const where = conditions.reduce((acc, c) => sql`${acc} AND ${c}`, sql`TRUE`)
  // The LIMIT is written into the statement rather than sent as a parameter. postgres.js
  // prepares its statements, and after five runs PostgreSQL may plan one generically, without
  // the parameter values: with an unknown LIMIT such a plan walks the primary key and filters
  // (75 ms on 200,000 rows for a one-day date range, growing with the table); with a known
  // LIMIT it reads the filter's index (under 1 ms).
  const limit = query.limit + 1
  if (!Number.isSafeInteger(limit) || limit < 2) throw new RangeError('limit must be a positive integer')
  const rows = await sql<Login[]>`
    SELECT ${sql.unsafe(LOGIN_COLUMNS)} FROM user_logins
    WHERE ${where}
    -- Qualified: a bare id would name the text output column and sort '9' after '25'.
    ORDER BY user_logins.id DESC
    LIMIT ${sql.unsafe(String(limit))}`
  const items = rows.slice(0, query.limit)
  return { items, lastId: rows.length > query.limit ? (items.at(-1)?.id ?? null) : null }
}

export type DuplicateField = 'ip' | 'device_id' | 'ip_network'

export interface Duplicate {
  field: DuplicateField
  masked_value: string
  count: number
  users: number
  /** create_date bounds of the logins counted (null when none had one) */
  first_seen: string | null
  last_seen: string | null
}

export interface DuplicateQuery {
  fields: ('ip' | 'device_id')[]
  /** networks of ip pseudonyms instead of exact masks: `bits`-long prefixes of one family, under one key */
  networks?: { keyId: string; family: 4 | 6; bits: number }
  minCount: number
  limit: number
  /** the last entry of the previous page */
  after?: { count: number; field: DuplicateField; masked_value: string }
}

/**
 * The exact-mask report, one statement over the summary of migration 009: one range of its
 * report index, whatever the table's size. The summary holds only ip and device_id, so both
 * fields need no predicate, and without one the index's order is the only sensible plan even
 * before the table has statistics (right after a bulk load the planner guessed a handful of rows
 * and sorted 20,000 instead). `logins >= 2` is written out so a generic plan can still use the
 * partial index; the cursor bounds the uncast columns, as the index orders them. With
 * `pendingLimit`, the same statement also counts the changes waiting to be folded (up to
 * `pendingLimit` + 1), so a read that finds none costs one round trip, not two.
 */
async function exactDuplicates(sql: Sql, query: DuplicateQuery, pendingLimit: number | null): Promise<{ rows: Duplicate[]; pending: number }> {
  const wanted = new Set(query.fields)
  if (wanted.size === 0) return { rows: [], pending: 0 }
  const field = wanted.size === 1 ? ([...wanted][0] ?? null) : null
  const after = query.after
  const report = sql<Duplicate[]>`
    SELECT field::text AS field, masked_value::text AS masked_value, logins::int AS count, users,
           to_char(first_seen, 'YYYY-MM-DD') AS first_seen, to_char(last_seen, 'YYYY-MM-DD') AS last_seen
    FROM login_duplicates
    WHERE logins >= 2 AND logins >= ${query.minCount}${field === null ? sql`` : sql` AND field = ${field}::varchar`}${after === undefined
      ? sql``
      : sql` AND logins <= ${after.count} AND NOT (logins = ${after.count} AND (field, masked_value) <= (${after.field}::varchar, ${after.masked_value}::varchar))`}
    ORDER BY logins DESC, field, masked_value
    LIMIT ${query.limit + 1}`
  if (pendingLimit === null) return { rows: await report, pending: 0 }
  // One row even when the report is empty (its columns NULL then); the outer ORDER BY sorts at
  // most limit + 1 rows, in the order of the index.
  const rows = await sql<(Duplicate & { pending: number })[]>`
    SELECT p.pending, r.field, r.masked_value, r.count, r.users, r.first_seen, r.last_seen
    FROM (SELECT count(*)::int AS pending FROM (SELECT 1 FROM login_summary_pending LIMIT ${pendingLimit + 1}) x) p
    LEFT JOIN LATERAL (${report}) r ON TRUE
    ORDER BY r.count DESC, r.field, r.masked_value`
  const pending = rows[0]?.pending ?? 0
  return {
    pending,
    rows: rows.flatMap(({ pending: _, ...row }) => (row.field === null ? [] : [row])),
  }
}

/**
 * The exact-mask report (no `networks`) and the number of changes waiting to be folded into the
 * summary, counted up to `pendingLimit` + 1, from one statement: a read catches the summary up
 * only when that number says it must.
 */
export async function listDuplicatesWithPending(sql: Sql, query: Omit<DuplicateQuery, 'networks'>, pendingLimit: number): Promise<{ rows: Duplicate[]; pending: number }> {
  return exactDuplicates(sql, query, pendingLimit)
}

/**
 * Masked values seen at least `minCount` times, most frequent first (then by field and value,
 * so pages are stable), with the number of distinct users behind each.
 */
export async function listDuplicates(sql: Sql, query: DuplicateQuery): Promise<Duplicate[]> {
  const after = query.after
  const limit = query.limit + 1
  if (query.networks === undefined) return (await exactDuplicates(sql, query, null)).rows
  const groups = query.fields.length === 0
    ? []
    : [sql`
      SELECT field, masked_value, logins AS count, users,
             to_char(first_seen, 'YYYY-MM-DD') AS first_seen, to_char(last_seen, 'YYYY-MM-DD') AS last_seen
      FROM login_duplicates WHERE logins >= 2 AND logins >= ${query.minCount} AND field IN ${sql(query.fields)}`]
  const networks = query.networks
  // Only networks behind more than one user: the report is about addresses users share.
  const prefix = `${networks.keyId}:`
  groups.push(sql`
    SELECT 'ip_network'::varchar AS field, ${prefix}::text || net::text AS masked_value, count(*) AS count, count(DISTINCT user_id)::int AS users,
      to_char(min(create_date), 'YYYY-MM-DD') AS first_seen, to_char(max(create_date), 'YYYY-MM-DD') AS last_seen
    FROM (
      SELECT network(set_masklen(ip_prefix_net, ${networks.bits}::int)) AS net, user_id, create_date FROM user_logins
      WHERE ip_prefix_net IS NOT NULL AND family(ip_prefix_net) = ${networks.family}::int AND starts_with(masked_ip_prefix, ${prefix})
    ) n
    GROUP BY net HAVING count(*) >= ${query.minCount} AND count(DISTINCT user_id) > 1`)
  const union = groups.slice(1).reduce((acc, g) => sql`${acc} UNION ALL ${g}`, groups[0] as (typeof groups)[number])
  return sql<Duplicate[]>`
    SELECT d.field::text AS field, d.masked_value::text AS masked_value, d.count::int AS count, d.users::int AS users, d.first_seen, d.last_seen
    FROM (${union}) d
    WHERE ${after === undefined
      ? sql`TRUE`
      : sql`d.count <= ${after.count} AND NOT (d.count = ${after.count} AND (d.field, d.masked_value) <= (${after.field}::varchar, ${after.masked_value}::varchar))`}
    ORDER BY d.count DESC, d.field, d.masked_value
    LIMIT ${limit}`
}

export type PiiLookup =
  | { status: 'found'; ip: string; device_id: string }
  | { status: 'no-row' }
  | { status: 'no-originals' }
  | { status: 'erased' }

/** The originals of one row, decrypted from the vault; says why when there are none. */
export async function readOriginals(sql: Sql, vault: Vault, id: bigint): Promise<PiiLookup> {
  const [row] = await sql<{ message_id: string | null; data_key_id: string | null; ciphertext: Buffer | null; in_vault: boolean }[]>`
    SELECT l.message_id, v.data_key_id::text AS data_key_id, v.ciphertext, v.login_id IS NOT NULL AS in_vault
    FROM user_logins l LEFT JOIN pii_vault v ON v.login_id = l.id
    WHERE l.id = ${id.toString()}`
  if (row === undefined) return { status: 'no-row' }
  if (!row.in_vault || row.message_id === null || row.ciphertext === null) return { status: 'no-originals' }
  const plain = await vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id))
  if (plain === null) return { status: 'erased' }
  const originals = JSON.parse(plain.toString('utf8')) as { ip: string; device_id: string }
  return { status: 'found', ip: originals.ip, device_id: originals.device_id }
}
