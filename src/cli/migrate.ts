// Applies the database migrations and exits: npm run migrate (reads DATABASE_URL).
import { ConfigError, loadConfig } from '../config.ts'
import { createSql } from '../db/sql.ts'
import { migrate } from '../db/migrate.ts'

try {
  const config = loadConfig()
  if (config.DATABASE_URL === undefined) {
    throw new ConfigError('DATABASE_URL', 'is required by npm run migrate (the embedded database migrates itself at npm start)')
  }
  const sql = createSql({ url: config.DATABASE_URL, max: 1, statementTimeoutMs: 0 })
  try {
    const applied = await migrate(sql)
    console.log(applied.length === 0 ? 'migrations: nothing to apply' : `migrations applied: ${applied.join(', ')}`)
  } finally {
    await sql.end({ timeout: 5 })
  }
} catch (error) {
  console.error(`login-ingest migrate: ${error instanceof ConfigError ? error.message : (error as Error).message}`)
  process.exit(1)
}
