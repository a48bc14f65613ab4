import { readFile } from 'node:fs/promises'
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs'
import type { Sql } from 'postgres'

export const SAMPLES_PATH = new URL('../../fixtures/fetch-sample-logins.json', import.meta.url)

/** The exercise's 100 public sample messages, each as the JSON text a producer would send. */
export async function sampleBodies(): Promise<string[]> {
  const records = JSON.parse(await readFile(SAMPLES_PATH, 'utf8')) as unknown[]
  return records.map((record) => JSON.stringify(record))
}

export async function sendBodies(client: SQSClient, queueUrl: string, bodies: readonly string[]): Promise<void> {
  for (let start = 0; start < bodies.length; start += 10) {
    const chunk = bodies.slice(start, start + 10)
    const response = await client.send(
      new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((body, i) => ({ Id: String(i), MessageBody: body })) }),
    )
    if ((response.Failed?.length ?? 0) > 0) throw new Error(`the queue refused ${response.Failed?.length} sample messages`)
  }
}

/**
 * Fills the embedded queue with the samples once per database. The emulator forgets its
 * messages on restart and would hand out new message ids, so a marker row in the database,
 * written first, keeps a restart from ingesting the samples a second time.
 */
export async function seedSamplesOnce(sql: Sql, client: SQSClient, queueUrl: string): Promise<boolean> {
  const [marked] = await sql`
    INSERT INTO service_state (name, value) VALUES ('embedded-samples-seeded', ${sql.json({ at: new Date().toISOString() })})
    ON CONFLICT (name) DO NOTHING RETURNING name`
  if (marked === undefined) return false
  await sendBodies(client, queueUrl, await sampleBodies())
  return true
}
