// Lists the monthly partitions of user_logins, or detaches (and drops) an ended month (see --help).
import { detachMonth, listPartitions } from '../logins/partitions.ts'
import { UsageError, cliConfig, integerOption, openDatabase, parseCli, runCli } from './common.ts'

const USAGE = `
usage: npm run partitions -- [--detach YYYY-MM [--drop] [--lock-timeout-ms N]]

Without options, prints the partitions of user_logins as JSON: one per month (name, month,
estimated rows, bytes with indexes) and the default one for rows without a create_date.

  --detach YYYY-MM     detach that month (it must have ended): its logins leave the
                       duplicates summary and their originals the vault; the month's table
                       stays, renamed user_logins_YYYY_MM_detached_<time>, unless --drop
  --drop               drop the detached table in the same transaction
  --lock-timeout-ms N  give up when the lock on user_logins is not had within N ms
                       (default 5000), rather than hold ingestion up behind a long query
  -h, --help           this text

The database: DATABASE_URL, else the embedded PGlite of DATA_DIR (refused while the service
holds DATA_DIR). Exit codes: 0 done, 1 failed, 2 wrong command line.
`

await runCli('partitions', async () => {
  const { values } = parseCli({
    name: 'partitions',
    usage: USAGE,
    options: { detach: { type: 'string' }, drop: { type: 'boolean', default: false }, 'lock-timeout-ms': { type: 'string' } },
  })
  const month = values.detach
  if (month !== undefined && !/^\d{4}-(0[1-9]|1[0-2])$/.test(month)) throw new UsageError('--detach takes a month as YYYY-MM (see npm run partitions -- --help)')
  if (month === undefined && (values.drop || values['lock-timeout-ms'] !== undefined)) {
    throw new UsageError('--drop and --lock-timeout-ms go with --detach (see npm run partitions -- --help)')
  }
  const lockTimeoutMs = integerOption('lock-timeout-ms', values['lock-timeout-ms'], { max: 600_000 }) ?? 5000
  const database = await openDatabase(cliConfig(), 'npm run partitions', { statementTimeoutMs: 0 })
  try {
    const result = month === undefined ? await listPartitions(database.sql) : await detachMonth(database.sql, month, { lockTimeoutMs, drop: values.drop })
    console.log(JSON.stringify(result))
  } finally {
    await database.close()
  }
})
