// Rejected messages: list them, or send them back to the queue after a fix.
//   npm run rejected -- list [--all] [--limit N]
//   npm run rejected -- resubmit [--id N ...] [--limit N] [--dry-run]
// Reads DATABASE_URL, SQS_QUEUE_URL, AWS_* and the vault keys (VAULT_MASTER_KEYS).
import { parseArgs } from 'node:util'
import { SQSClient } from '@aws-sdk/client-sqs'
import pino from 'pino'
import { ConfigError, loadConfig } from '../config.ts'
import { createSql } from '../db/sql.ts'
import { listRejected, resubmitRejected } from '../ingest/rejected.ts'
import { parseId } from '../logins/cursor.ts'
import { Vault, keyringProvider } from '../pii/vault.ts'
import { resolveSecrets } from '../services.ts'

try {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      all: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      limit: { type: 'string', default: '100' },
      id: { type: 'string', multiple: true },
    },
  })
  const command = positionals[0]
  const limit = Number(values.limit)
  if (command !== 'list' && command !== 'resubmit') throw new ConfigError('command', 'must be list or resubmit')
  if (!Number.isInteger(limit) || limit < 1) throw new ConfigError('--limit', 'must be a positive integer')
  const ids = values.id?.map((text) => {
    const id = parseId(text)
    if (id === null) throw new ConfigError('--id', `${text} is not a rejection id`)
    return id
  })
  const config = loadConfig()
  if (config.DATABASE_URL === undefined) throw new ConfigError('DATABASE_URL', 'is required by npm run rejected')
  const sql = createSql({ url: config.DATABASE_URL, max: 1, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS })
  try {
    if (command === 'list') {
      for (const row of await listRejected(sql, { limit, pendingOnly: !values.all })) console.log(JSON.stringify(row))
    } else {
      if (config.SQS_QUEUE_URL === undefined) throw new ConfigError('SQS_QUEUE_URL', 'is required to resubmit')
      const secrets = await resolveSecrets(config, pino({ level: 'warn' }))
      const client = new SQSClient({ region: config.AWS_REGION, ...(config.AWS_ENDPOINT_URL ? { endpoint: config.AWS_ENDPOINT_URL } : {}) })
      const report = await resubmitRejected(sql, new Vault(sql, keyringProvider(secrets.master)), client, {
        queueUrl: config.SQS_QUEUE_URL,
        limit,
        dryRun: values['dry-run'],
        ...(ids === undefined ? {} : { ids }),
      })
      console.log(JSON.stringify(report))
      client.destroy()
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
} catch (error) {
  console.error(`login-ingest rejected: ${error instanceof ConfigError ? error.message : (error as Error).message}`)
  process.exit(1)
}
