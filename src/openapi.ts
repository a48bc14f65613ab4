import { randomBytes } from 'node:crypto'
import { SQSClient } from '@aws-sdk/client-sqs'
import pino from 'pino'
import postgres from 'postgres'
import { buildApp } from './app.ts'
import { loadConfig } from './config.ts'
import { LoginPipeline } from './ingest/pipeline.ts'
import { LoginQueue } from './ingest/queue.ts'
import { CursorCodec } from './logins/cursor.ts'
import { parseKeyring } from './pii/keys.ts'
import { Masker } from './pii/mask.ts'
import { Vault, keyringProvider } from './pii/vault.ts'

/**
 * The OpenAPI document exactly as the app serves it at /docs/json, built without connecting
 * to anything (postgres.js and the SQS client connect on first use, and nothing is used).
 */
export async function openApiDocument(): Promise<unknown> {
  const config = loadConfig({ NODE_ENV: 'test', WORKER_ENABLED: 'false' })
  const keys = parseKeyring('MASK_KEYS', `k1:${randomBytes(32).toString('base64')}`)
  const sql = postgres('postgres://openapi@127.0.0.1:1/none', { max: 1 })
  const masker = new Masker(keys)
  const vault = new Vault(sql, keyringProvider(keys))
  const app = await buildApp({
    config,
    logger: pino({ level: 'silent' }),
    services: {
      sql,
      queue: new LoginQueue(new SQSClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:1' }), 'http://127.0.0.1:1/q'),
      dlq: null,
      masker,
      ipPrefixer: null,
      vault,
      pipeline: new LoginPipeline(sql, masker, vault),
      apiKeys: [],
      cursors: new CursorCodec(keys.active.secret),
      schemaVersion: '',
      embedded: { database: false, queue: null, demoApiKey: null },
    },
  })
  await app.ready()
  const document = app.swagger()
  await app.close()
  await sql.end({ timeout: 0 })
  return document
}

export const renderOpenApi = (document: unknown): string => `${JSON.stringify(document, null, 2)}\n`
