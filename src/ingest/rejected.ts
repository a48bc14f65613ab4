import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs'
import type { Sql } from 'postgres'
import { rejectionAad, type Vault } from '../pii/vault.ts'

export interface RejectedSummary {
  id: string
  message_id: string
  reason: string
  rejected_at: string
  receive_count: number | null
  resubmitted_at: string | null
}

/** Rejections, newest first, without their bodies (those hold PII and stay encrypted). */
export async function listRejected(sql: Sql, options: { limit: number; pendingOnly: boolean }): Promise<RejectedSummary[]> {
  return sql<RejectedSummary[]>`
    SELECT id::text AS id, message_id, reason, rejected_at::text AS rejected_at, receive_count, resubmitted_at::text AS resubmitted_at
    FROM rejected_messages
    WHERE ${options.pendingOnly ? sql`resubmitted_at IS NULL` : sql`TRUE`}
    ORDER BY rejected_messages.id DESC
    LIMIT ${options.limit}`
}

export interface ResubmitReport {
  resubmitted: number
  /** bodies whose data key was erased or expired: nothing left to send */
  unreadable: number
  dryRun: boolean
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
  const ids = options.ids?.map(String)
  const candidates = await sql<{ id: string }[]>`
    SELECT id::text AS id FROM rejected_messages
    WHERE resubmitted_at IS NULL AND ${ids === undefined ? sql`TRUE` : sql`id = ANY(${sql.array(ids)}::bigint[])`}
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
  return report
}
