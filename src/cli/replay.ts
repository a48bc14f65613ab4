// Moves messages from the dead-letter queue back to the main queue (see --help).
import { CliError, cliConfig, integerOption, parseCli, resolveQueue, runCli } from './common.ts'
import { LoginQueue } from '../ingest/queue.ts'
import { replayDeadLetters } from '../ingest/replay.ts'

const USAGE = `
usage: npm run replay -- [--dry-run] [--limit N]

Moves up to N messages (default 1000) from the dead-letter queue back to the main queue and
prints {waiting, moved, failed, dryRun}.

  --limit N     at most N messages (1-1000000)
  --dry-run     count, move nothing
  -h, --help    this text

The queues: SQS_QUEUE_URL and SQS_DLQ_URL (with AWS_ENDPOINT_URL and the AWS SDK's
credentials), else the embedded ones of the service running on DATA_DIR. Exit codes: 0 done,
1 failed (or a message could not be moved), 2 wrong command line.
`

await runCli('replay', async () => {
  const { values } = parseCli({ name: 'replay', usage: USAGE, options: { 'dry-run': { type: 'boolean', default: false }, limit: { type: 'string', default: '1000' } } })
  const limit = integerOption('limit', values.limit, { max: 1_000_000 }) ?? 1000
  const queue = await resolveQueue(cliConfig())
  try {
    if (queue.dlqUrl === undefined) throw new CliError('SQS_DLQ_URL: is required by npm run replay')
    const dlq = new LoginQueue(queue.client, queue.dlqUrl)
    const report = await replayDeadLetters(queue.client, {
      dlqUrl: queue.dlqUrl,
      queueUrl: queue.queueUrl,
      limit,
      dryRun: values['dry-run'],
      depth: async () => (await dlq.depth()).visible,
    })
    console.log(JSON.stringify(report))
    if (report.failed > 0) process.exitCode = 1
  } finally {
    queue.close()
  }
})
