// Rejected messages: list them, or send them back to the queue after a fix (see --help).
import { ResubmitFailedError, listRejected, resubmitRejected, type RejectedSummary, type ResubmitReport } from '../ingest/rejected.ts'
import { parseId } from '../logins/cursor.ts'
import { Vault, keyringProvider } from '../pii/vault.ts'
import { CliError, UsageError, cliConfig, cliSecrets, describe, embeddedService, integerOption, openDatabase, parseCli, resolveQueue, runCli } from './common.ts'

const USAGE = `
usage: npm run rejected -- list [--all] [--limit N]
       npm run rejected -- resubmit [--id N ...] [--limit N] [--dry-run]

  list       rejected messages, newest first, one JSON object a line: id, message id, reason,
             receive count and times (never the body). Pending ones only, unless --all.
  resubmit   send pending rejections (oldest first, or the --id ones) back to the queue after a
             fix; each is marked and never sent twice. Prints {resubmitted, unreadable, dryRun}.

options:
  --all          list resubmitted rejections too
  --limit N      at most N (1-1000, default 100)
  --id N         only this rejection id (repeatable)
  --dry-run      count what resubmit would send, send nothing
  -h, --help     this text

Where it works: with DATABASE_URL on that database (resubmit sends to SQS_QUEUE_URL, or to the
queue of the service running on DATA_DIR). Without DATABASE_URL, on DATA_DIR's embedded
database: through the API of the service running there (GET /rejected, POST /rejected/resubmit,
with the demo key of DATA_DIR/secrets.json), or, when none runs, by opening it itself.
Exit codes: 0 done, 1 failed, 2 wrong command line.
`

await runCli('rejected', async () => {
  const { values, positionals } = parseCli({
    name: 'rejected',
    usage: USAGE,
    allowPositionals: true,
    options: {
      all: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      limit: { type: 'string', default: '100' },
      id: { type: 'string', multiple: true },
    },
  })
  const [command, ...extra] = positionals
  if (command !== 'list' && command !== 'resubmit') throw new UsageError(`the command must be list or resubmit (see npm run rejected -- --help)`)
  if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]?.slice(0, 40)}`)
  const limit = integerOption('limit', values.limit, { max: 1000 }) ?? 100
  const ids = values.id?.map((text) => {
    const id = parseId(text)
    if (id === null) throw new UsageError(`--id ${text.slice(0, 40)} is not a rejection id`)
    return id
  })
  if (command === 'list' && (ids !== undefined || values['dry-run'])) throw new UsageError('--id and --dry-run belong to resubmit')
  if (command === 'resubmit' && values.all) throw new UsageError('--all belongs to list')
  const config = cliConfig()

  const service = await embeddedService(config)
  if (service !== null) {
    // The service holds the embedded database (PGlite serves one process): go through its API.
    if (command === 'list') {
      const page = await service.call<{ items: RejectedSummary[] }>('GET', `/rejected?limit=${limit}&state=${values.all ? 'all' : 'pending'}`)
      for (const row of page.items) console.log(JSON.stringify(row))
    } else {
      const report = await service.call<ResubmitReport>('POST', '/rejected/resubmit', {
        limit,
        dryRun: values['dry-run'],
        ...(ids === undefined ? {} : { ids: ids.map(String) }),
      })
      console.log(JSON.stringify(report))
    }
    return
  }

  const database = await openDatabase(config, 'npm run rejected')
  try {
    if (command === 'list') {
      for (const row of await listRejected(database.sql, { limit, pendingOnly: !values.all })) console.log(JSON.stringify(row))
      return
    }
    const secrets = await cliSecrets(config)
    const queue = await resolveQueue(config)
    try {
      const report = await resubmitRejected(database.sql, new Vault(database.sql, keyringProvider(secrets.master)), queue.client, {
        queueUrl: queue.queueUrl,
        limit,
        dryRun: values['dry-run'],
        ...(ids === undefined ? {} : { ids }),
      })
      console.log(JSON.stringify(report))
    } catch (error) {
      if (!(error instanceof ResubmitFailedError)) throw error
      throw new CliError(`stopped (${describe(error.cause)}): ${error.partial.resubmitted} resubmitted before it (marked, never sent twice)`)
    } finally {
      queue.close()
    }
  } finally {
    await database.close()
  }
})
