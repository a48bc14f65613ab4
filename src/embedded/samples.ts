import { readFile } from 'node:fs/promises'
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs'
import type { Sql } from 'postgres'
import { parseLoginMessage } from '../ingest/message.ts'
import type { Masker } from '../pii/mask.ts'
import { rejectionAad, type Vault } from '../pii/vault.ts'

export const SAMPLES_PATH = new URL('../../fixtures/fetch-sample-logins.json', import.meta.url)

/** The exercise's 100 public sample messages, each as the JSON text a producer would send. */
export async function sampleBodies(): Promise<string[]> {
  const records = JSON.parse(await readFile(SAMPLES_PATH, 'utf8')) as unknown[]
  return records.map((record) => JSON.stringify(record))
}

/** Sends bodies 10 per SendMessageBatch; `onBatch` hears how many were sent so far. */
export async function sendBodies(
  client: SQSClient,
  queueUrl: string,
  bodies: readonly string[],
  onBatch: (sent: number) => void = () => {},
): Promise<void> {
  for (let start = 0; start < bodies.length; start += 10) {
    const chunk = bodies.slice(start, start + 10)
    const response = await client.send(
      new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((body, i) => ({ Id: String(i), MessageBody: body })) }),
    )
    if ((response.Failed?.length ?? 0) > 0) throw new Error(`the queue refused ${response.Failed?.length} sample messages`)
    onBatch(start + chunk.length)
  }
}

const MARKER = 'embedded-samples'

export interface SeedReport {
  /** samples sent to the queue by this call */
  sent: number
  /** every sample was already stored (as a row or a rejection): nothing to do, now or later */
  complete: boolean
}

export interface SeedParts {
  sql: Sql
  masker: Masker
  vault: Vault
  client: SQSClient
  queueUrl: string
  onBatch?: (sent: number) => void
}

/**
 * Makes sure every sample ends up stored, whatever happened to earlier starts. The embedded
 * queue keeps nothing across a restart, so a sample that is not in the database when the
 * service starts was lost with an earlier process (killed while sending, while storing, or
 * stopped by a taken port): it is sent again. A sample already stored is never sent twice.
 * Once all are stored, a marker row ends these checks for good.
 */
export async function seedMissingSamples({ sql, masker, vault, client, queueUrl, onBatch }: SeedParts): Promise<SeedReport> {
  const [done] = await sql`SELECT 1 FROM service_state WHERE name = ${MARKER} AND value @> '{"complete": true}'`
  if (done !== undefined) return { sent: 0, complete: true }
  const missing = await missingSamples(sql, masker, vault, await sampleBodies())
  if (missing.length === 0) {
    await sql`
      INSERT INTO service_state (name, value) VALUES (${MARKER}, ${sql.json({ complete: true, at: new Date().toISOString() })})
      ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`
    return { sent: 0, complete: true }
  }
  await sendBodies(client, queueUrl, missing, onBatch)
  return { sent: missing.length, complete: false }
}

/** The samples with neither a row (found by device id mask, under any configured key) nor a rejection record. */
export async function missingSamples(sql: Sql, masker: Masker, vault: Vault, bodies: readonly string[]): Promise<string[]> {
  const parsed = bodies.map((body) => ({ body, result: parseLoginMessage(body) }))
  const masksOf = new Map<string, string[]>()
  for (const { body, result } of parsed) {
    if (result.ok) masksOf.set(body, masker.keyIds().map((keyId) => masker.maskDeviceId(result.login.device_id, keyId)))
  }
  const allMasks = [...masksOf.values()].flat()
  const storedMasks = new Set(
    (await sql<{ mask: string }[]>`
      SELECT masked_device_id AS mask FROM user_logins WHERE masked_device_id = ANY(${sql.array(allMasks)}::text[])`).map((r) => r.mask),
  )
  const rejectedBodies = new Set<string>()
  const reasons = [...new Set(parsed.flatMap(({ result }) => (result.ok ? [] : [result.reason])))]
  if (reasons.length > 0) {
    const rows = await sql<{ message_id: string; data_key_id: string | null; body_ciphertext: Buffer }[]>`
      SELECT message_id, data_key_id::text AS data_key_id, body_ciphertext FROM rejected_messages
      WHERE reason = ANY(${sql.array(reasons)}::text[]) ORDER BY id LIMIT 1000`
    for (const row of rows) {
      const body = await vault.open(row.data_key_id, row.body_ciphertext, rejectionAad(row.message_id))
      if (body !== null) rejectedBodies.add(body.toString('utf8'))
    }
  }
  return parsed
    .filter(({ body, result }) => (result.ok ? !(masksOf.get(body) ?? []).some((m) => storedMasks.has(m)) : !rejectedBodies.has(body)))
    .map(({ body }) => body)
}
