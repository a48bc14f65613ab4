// Applies the database migrations and exits (see --help).
import { migrate } from '../db/migrate.ts'
import { cliConfig, openDatabase, parseCli, runCli } from './common.ts'

const USAGE = `
usage: npm run migrate

Applies the pending migrations (src/db/migrations) in one transaction under an advisory lock,
and prints what it applied. The database: DATABASE_URL, else the embedded PGlite of DATA_DIR
(refused while the service or another tool holds DATA_DIR; npm start migrates it itself).
Exit codes: 0 done, 1 failed, 2 wrong command line.
`

await runCli('migrate', async () => {
  parseCli({ name: 'migrate', usage: USAGE, options: {} })
  const database = await openDatabase(cliConfig(), 'npm run migrate', { statementTimeoutMs: 0, create: true })
  try {
    const applied = await migrate(database.sql)
    console.log(applied.length === 0 ? 'migrations: nothing to apply' : `migrations applied: ${applied.join(', ')}`)
  } finally {
    await database.close()
  }
})
