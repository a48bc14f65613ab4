// Makes originals older than PII_RETENTION_DAYS (or --days) unrecoverable; the masked rows stay (see --help).
import { applyRetention } from '../pii/erasure.ts'
import { ConfigError } from '../config.ts'
import { cliConfig, integerOption, openDatabase, parseCli, runCli } from './common.ts'

const USAGE = `
usage: npm run retention -- [--dry-run] [--days N]

Destroys the data keys of the months that ended more than N days ago (PII_RETENTION_DAYS
unless --days) and wipes their ciphertexts; the masked rows stay. Prints the counts as JSON.

  --days N      retention in days (1-36500), instead of PII_RETENTION_DAYS
  --dry-run     say what would go, change nothing
  -h, --help    this text

The database: DATABASE_URL, else the embedded PGlite of DATA_DIR (refused while the service
holds DATA_DIR). Exit codes: 0 done, 1 failed, 2 wrong command line.
`

await runCli('retention', async () => {
  const { values } = parseCli({ name: 'retention', usage: USAGE, options: { 'dry-run': { type: 'boolean', default: false }, days: { type: 'string' } } })
  const config = cliConfig()
  const days = integerOption('days', values.days, { max: 36_500 }) ?? config.PII_RETENTION_DAYS
  if (days === undefined) throw new ConfigError('PII_RETENTION_DAYS', 'is not set (or pass --days N)')
  const database = await openDatabase(config, 'npm run retention', { statementTimeoutMs: 0 })
  try {
    console.log(JSON.stringify(await applyRetention(database.sql, { days, dryRun: values['dry-run'] })))
  } finally {
    await database.close()
  }
})
