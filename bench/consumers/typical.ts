/**
 * The typical answer to the exercise: one loop that receives ONE message, inserts one row and
 * deletes that message, until COUNT messages are done. It validates, masks and encrypts as the
 * service does (parseLoginMessage, Masker, AES-256-GCM seal with a data key from the Vault), so
 * the comparison is about the shape of the loop, not about skipping work. One statement per
 * message (the login and its sealed originals, or the rejection), autocommitted.
 * Prints one JSON line: messages, seconds, CPU seconds of this process.
 */
import { DeleteMessageCommand, SQSClient } from '@aws-sdk/client-sqs'
import { createSql } from '../../src/db/sql.ts'
import { encodeAppVersion } from '../../src/ingest/app-version.ts'
import { parseLoginMessage } from '../../src/ingest/message.ts'
import { LoginQueue } from '../../src/ingest/queue.ts'
import { parseKeyring } from '../../src/pii/keys.ts'
import { Masker } from '../../src/pii/mask.ts'
import { Vault, keyringProvider, loginAad, periodOf, rejectionAad, seal } from '../../src/pii/vault.ts'

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const client = new SQSClient({ region: env('AWS_REGION'), endpoint: env('AWS_ENDPOINT_URL') })
const queueUrl = env('SQS_QUEUE_URL')
const queue = new LoginQueue(client, queueUrl)
const sql = createSql({ url: env('DATABASE_URL'), max: 1, statementTimeoutMs: 0, applicationName: 'login-ingest-typical' })
const masker = new Masker(parseKeyring('MASK_KEYS', env('MASK_KEYS')))
const vault = new Vault(sql, keyringProvider(parseKeyring('VAULT_MASTER_KEYS', env('VAULT_MASTER_KEYS'))))
const count = Number(env('COUNT'))
// One data key for the whole run: a typical answer has no per-user envelope, and fetching one
// per message would only make it slower.
// A first plain query: postgres.js fetches the array types on it, and the vault's sql.array needs them.
await sql`SELECT 1`
const scope = { subject: 'typical-answer', period: periodOf(new Date()) }
const dataKey = vault.keyFor(await vault.dataKeys([scope]), scope)

let done = 0
const cpu = process.cpuUsage()
const started = performance.now()
while (done < count) {
  const [message] = await queue.receive({ maxMessages: 1, waitTimeSeconds: 20, visibilityTimeoutSeconds: 60 })
  if (message === undefined) continue
  const parsed = parseLoginMessage(message.body)
  if (parsed.ok) {
    const { login } = parsed
    const ciphertext = seal(dataKey.key, Buffer.from(JSON.stringify({ ip: login.ip, device_id: login.device_id }), 'utf8'), loginAad(message.messageId))
    await sql`
      WITH login AS (
        INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
                                 app_version_text, create_date, sent_at, mask_key_id)
        VALUES (${message.messageId}, ${login.user_id}, ${login.device_type}, ${masker.maskIp(login.ip)},
                ${masker.maskDeviceId(login.device_id)}, ${login.locale ?? null}, ${encodeAppVersion(login.app_version)},
                ${login.app_version}, ${message.sentAt.toISOString().slice(0, 10)}, ${message.sentAt}, ${masker.keyId})
        ON CONFLICT (message_id, create_date) DO NOTHING
        RETURNING id)
      INSERT INTO pii_vault (login_id, data_key_id, ciphertext) SELECT id, ${dataKey.id}, ${ciphertext} FROM login`
  } else {
    const ciphertext = seal(dataKey.key, Buffer.from(message.body, 'utf8'), rejectionAad(message.messageId))
    await sql`
      INSERT INTO rejected_messages (message_id, reason, data_key_id, body_ciphertext, sent_at, receive_count)
      VALUES (${message.messageId}, ${parsed.reason}, ${dataKey.id}, ${ciphertext}, ${message.sentAt}, ${message.receiveCount})
      ON CONFLICT (message_id) DO NOTHING`
  }
  await client.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.receiptHandle }))
  done++
}
const seconds = (performance.now() - started) / 1000
const used = process.cpuUsage(cpu)
process.stdout.write(`${JSON.stringify({ result: { messages: done, seconds, cpuSeconds: (used.user + used.system) / 1e6 } })}\n`)
client.destroy()
await sql.end({ timeout: 1 })
