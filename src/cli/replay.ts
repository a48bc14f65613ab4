// Moves messages from the dead-letter queue back to the main queue:
//   npm run replay -- [--dry-run] [--limit N]     (reads SQS_QUEUE_URL, SQS_DLQ_URL, AWS_*)
import { parseArgs } from 'node:util'
import { SQSClient } from '@aws-sdk/client-sqs'
import { ConfigError, loadConfig } from '../config.ts'
import { LoginQueue } from '../ingest/queue.ts'
import { replayDeadLetters } from '../ingest/replay.ts'

try {
  const { values } = parseArgs({ options: { 'dry-run': { type: 'boolean', default: false }, limit: { type: 'string', default: '1000' } } })
  const limit = Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1) throw new ConfigError('--limit', 'must be a positive integer')
  const config = loadConfig()
  if (config.SQS_QUEUE_URL === undefined) throw new ConfigError('SQS_QUEUE_URL', 'is required by npm run replay')
  if (config.SQS_DLQ_URL === undefined) throw new ConfigError('SQS_DLQ_URL', 'is required by npm run replay')
  const client = new SQSClient({ region: config.AWS_REGION, ...(config.AWS_ENDPOINT_URL ? { endpoint: config.AWS_ENDPOINT_URL } : {}) })
  const dlq = new LoginQueue(client, config.SQS_DLQ_URL)
  const report = await replayDeadLetters(client, {
    dlqUrl: config.SQS_DLQ_URL,
    queueUrl: config.SQS_QUEUE_URL,
    limit,
    dryRun: values['dry-run'],
    depth: async () => (await dlq.depth()).visible,
  })
  console.log(JSON.stringify(report))
  client.destroy()
  if (report.failed > 0) process.exitCode = 1
} catch (error) {
  console.error(`login-ingest replay: ${error instanceof ConfigError ? error.message : (error as Error).message}`)
  process.exit(1)
}
