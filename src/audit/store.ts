import type { Sql, TransactionSql } from 'postgres'

export type AuditAction = 'pii.read' | 'pii.erase' | 'rejected.resubmit'

export interface AuditEntry {
  action: AuditAction
  keyName: string | null
  target: string | null
  reason: string | null
  status: number
  outcome: string
  requestId: string
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
}

/** Appends one entry. Callers that return PII await this first: no audit row, no PII. */
export async function writeAudit(sql: Sql | TransactionSql, entry: AuditEntry): Promise<void> {
  await sql`
    INSERT INTO audit_log (action, key_name, target, reason, status, outcome, request_id)
    VALUES (${entry.action}, ${entry.keyName}, ${entry.target?.slice(0, 128) ?? null}, ${entry.reason?.slice(0, 500) ?? null},
            ${entry.status}, ${entry.outcome}, ${entry.requestId.slice(0, 64)})`
}

/** Newest first, keyset-paged by id. */
export async function listAudit(
  sql: Sql,
  query: { limit: number; before?: bigint; action?: AuditAction; keyName?: string },
): Promise<{ items: AuditRecord[]; lastId: string | null }> {
  const rows = await sql<AuditRecord[]>`
    SELECT id::text AS id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, action, key_name,
           target, reason, status, outcome, request_id
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
