import type { Sql, TransactionSql } from 'postgres'

export type AuditAction = 'pii.read' | 'pii.erase' | 'rejected.resubmit'

export interface AuditEntry {
  action: AuditAction
  keyName: string | null
  target: string | null
  reason: string | null
  status: number
  outcome: string
  requestId: string | null
  /** calls the row stands for (a summary of refusals beyond the rate), 1 by default */
  calls?: number
  /** the first call of a summary row */
  firstAt?: Date
  /** what was done to input the column could not hold as sent, said by the caller (e.g. a URL that is not UTF-8) */
  notes?: readonly string[]
}

export interface AuditRecord {
  id: string
  at: string
  action: string
  key_name: string | null
  target: string | null
  reason: string | null
  status: number
  outcome: string
  request_id: string | null
  calls: number
  first_at: string | null
  note: string | null
}

// PostgreSQL text cannot hold NUL, and a lone UTF-16 surrogate would be replaced on the way in.
// eslint-disable-next-line no-control-regex -- NUL is what must be found
const UNSTORABLE = /[\u0000]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g')

/**
 * `value` as a text column of `max` characters can hold it, whatever the caller sent: NUL and
 * lone surrogates become `\uXXXX` (with backslashes doubled, so the escaped form is unambiguous),
 * then the text is cut to `max` characters (code points, as PostgreSQL counts them).
 */
export function storableText(value: string, max: number): { text: string; escaped: boolean; truncated: boolean } {
  const escaped = UNSTORABLE.test(value)
  const text = escaped
    ? value.replace(/\\/g, '\\\\').replace(UNSTORABLE_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    : value
  const chars = Array.from(text)
  return chars.length > max ? { text: chars.slice(0, max).join(''), escaped, truncated: true } : { text, escaped, truncated: false }
}

/** The columns of an entry as stored, and a note on each field that could not be stored as sent. */
function storable(entry: AuditEntry): { target: string | null; reason: string | null; note: string | null } {
  const notes = [...(entry.notes ?? [])]
  const field = (name: string, value: string | null, max: number): string | null => {
    if (value === null) return null
    const stored = storableText(value, max)
    if (stored.escaped) notes.push(`${name} escaped (NUL or lone surrogate as \\uXXXX, backslash doubled)`)
    if (stored.truncated) notes.push(`${name} truncated to ${max} characters`)
    return stored.text
  }
  const target = field('target', entry.target, 128)
  const reason = field('reason', entry.reason, 500)
  return { target, reason, note: notes.length === 0 ? null : storableText(notes.join('; '), 200).text }
}

/**
 * Appends one entry. Callers that return PII await this first: no audit row, no PII. Whatever
 * the caller sent, the insert does not fail on it: see storableText.
 */
export async function writeAudit(sql: Sql | TransactionSql, entry: AuditEntry): Promise<void> {
  const { target, reason, note } = storable(entry)
  await sql`
    INSERT INTO audit_log (action, key_name, target, reason, status, outcome, request_id, calls, first_at, note)
    VALUES (${entry.action}, ${entry.keyName}, ${target}, ${reason}, ${entry.status}, ${entry.outcome},
            ${entry.requestId?.slice(0, 64) ?? null}, ${entry.calls ?? 1}, ${entry.firstAt ?? null}, ${note})`
}

/** Newest first, keyset-paged by id. */
export async function listAudit(
  sql: Sql,
  query: { limit: number; before?: bigint; action?: AuditAction; keyName?: string },
): Promise<{ items: AuditRecord[]; lastId: string | null }> {
  const rows = await sql<AuditRecord[]>`
    SELECT id::text AS id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, action, key_name,
           target, reason, status, outcome, request_id, calls,
           to_char(first_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS first_at, note
    FROM audit_log
    WHERE ${query.before === undefined ? sql`TRUE` : sql`id < ${query.before.toString()}`}
      AND ${query.action === undefined ? sql`TRUE` : sql`action = ${query.action}`}
      AND ${query.keyName === undefined ? sql`TRUE` : sql`key_name = ${query.keyName}`}
    -- Qualified: a bare id would name the text output column and sort '9' after '25'.
    ORDER BY audit_log.id DESC
    LIMIT ${query.limit + 1}`
  const items = rows.slice(0, query.limit)
  return { items, lastId: rows.length > query.limit ? (items.at(-1)?.id ?? null) : null }
}
