import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs'
import type { Sql } from 'postgres'
import { rejectionAad, type Vault } from '../pii/vault.ts'

export interface RejectedSummary {
  id: string
  message_id: string
  reason: string
  receive_count: number | null
  rejected_at: string
  resubmitted_at: string | null
}

export type RejectedState = 'pending' | 'resubmitted' | 'all'

/** Rejections, newest first, without their bodies (those hold PII and stay encrypted). */
export async function listRejected(sql: Sql, options: { limit: number; pendingOnly: boolean }): Promise<RejectedSummary[]> {
  return (await pageRejected(sql, { limit: options.limit, state: options.pendingOnly ? 'pending' : 'all' })).items
}

/** One page of rejections, newest first, keyset-paged by id (`before`: the previous page's last id). */
export async function pageRejected(
  sql: Sql,
  options: { limit: number; state: RejectedState; before?: bigint },
): Promise<{ items: RejectedSummary[]; lastId: string | null }> {
  const state = {
    pending: sql`resubmitted_at IS NULL`,
    resubmitted: sql`resubmitted_at IS NOT NULL`,
    all: sql`TRUE`,
  }[options.state]
  const rows = await sql<RejectedSummary[]>`
    SELECT id::text AS id, message_id, reason, receive_count,
           to_char(rejected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS rejected_at,
           to_char(resubmitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS resubmitted_at
    FROM rejected_messages
    WHERE ${state} AND ${options.before === undefined ? sql`TRUE` : sql`id < ${options.before.toString()}`}
    -- Qualified: a bare id would name the text output column and sort '9' after '25'.
    ORDER BY rejected_messages.id DESC
    LIMIT ${options.limit + 1}`
  const items = rows.slice(0, options.limit)
  return { items, lastId: rows.length > options.limit ? (items.at(-1)?.id ?? null) : null }
}

export interface ResubmitReport {
  resubmitted: number
  /** bodies whose data key was erased or expired: nothing left to send */
  unreadable: number
  dryRun: boolean
}

/** Thrown when the queue or the database fails part-way; `partial` counts what was done before. */
export class ResubmitFailedError extends Error {
  constructor(
    readonly partial: ResubmitReport,
    override readonly cause: unknown,
  ) {
    super(`resubmission stopped after ${partial.resubmitted} resubmitted`)
  }
}

/**
 * Sends rejected bodies back to the main queue after a fix (decrypted in this process only),
 * each in its own transaction: the row is locked, the body sent, the row marked, then commit.
 * Marked rows are never sent again, so running it twice is harmless.
 */
export async function resubmitRejected(
  sql: Sql,
  vault: Vault,
  client: SQSClient,
  options: { queueUrl: string; ids?: readonly bigint[]; limit: number; dryRun: boolean },
): Promise<ResubmitReport> {
  const report: ResubmitReport = { resubmitted: 0, unreadable: 0, dryRun: options.dryRun }
  try {
    await resubmitEach(sql, vault, client, options, report)
  } catch (error) {
    throw new ResubmitFailedError({ ...report }, error)
  }
  return report
}

async function resubmitEach(
  sql: Sql,
  vault: Vault,
  client: SQSClient,
  options: { queueUrl: string; ids?: readonly bigint[]; limit: number; dryRun: boolean },
  report: ResubmitReport,
): Promise<void> {
  const ids = options.ids?.map(String)
  const candidates = await sql<{ id: string }[]>`
    SELECT id::text AS id FROM rejected_messages
    WHERE resubmitted_at IS NULL AND ${ids === undefined ? sql`TRUE` : sql`id IN ${sql(ids)}`}
    ORDER BY rejected_messages.id LIMIT ${options.limit}`
  for (const { id } of candidates) {
    // Decrypt before the transaction: the vault reads key rows through the pool, and a pool of
    // one connection (PGlite) would wait on itself inside it.
    const [stored] = await sql<{ message_id: string; data_key_id: string | null; body_ciphertext: Buffer }[]>`
      SELECT message_id, data_key_id::text AS data_key_id, body_ciphertext FROM rejected_messages WHERE id = ${id}`
    if (stored === undefined) continue
    const body = await vault.open(stored.data_key_id, stored.body_ciphertext, rejectionAad(stored.message_id))
    if (body === null) {
      report.unreadable++
      continue
    }
    if (options.dryRun) {
      report.resubmitted++
      continue
    }
    await sql.begin(async (tx) => {
      const [row] = await tx`SELECT id FROM rejected_messages WHERE id = ${id} AND resubmitted_at IS NULL FOR UPDATE SKIP LOCKED`
      if (row === undefined) return
      const sent = await client.send(new SendMessageCommand({ QueueUrl: options.queueUrl, MessageBody: body.toString('utf8') }))
      await tx`UPDATE rejected_messages SET resubmitted_at = now(), resubmitted_message_id = ${sent.MessageId ?? null} WHERE id = ${id}`
      report.resubmitted++
    })
  }
}
