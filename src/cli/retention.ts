// Makes originals older than PII_RETENTION_DAYS (or --days) unrecoverable; the masked rows stay.
//   npm run retention -- [--dry-run] [--days N]      (reads DATABASE_URL)
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../config.ts'
import { createSql } from '../db/sql.ts'
import { applyRetention } from '../pii/erasure.ts'

try {
  const { values } = parseArgs({ options: { 'dry-run': { type: 'boolean', default: false }, days: { type: 'string' } } })
  const config = loadConfig()
  const days = values.days === undefined ? config.PII_RETENTION_DAYS : Number(values.days)
  if (days === undefined) throw new ConfigError('PII_RETENTION_DAYS', 'is not set (or pass --days N)')
  if (!Number.isInteger(days) || days < 1) throw new ConfigError('--days', 'must be a positive integer')
  if (config.DATABASE_URL === undefined) throw new ConfigError('DATABASE_URL', 'is required by npm run retention')
  const sql = createSql({ url: config.DATABASE_URL, max: 1, statementTimeoutMs: 0 })
  try {
    console.log(JSON.stringify(await applyRetention(sql, { days, dryRun: values['dry-run'] })))
  } finally {
    await sql.end({ timeout: 5 })
  }
} catch (error) {
  console.error(`login-ingest retention: ${error instanceof ConfigError ? error.message : (error as Error).message}`)
  process.exit(1)
}
