import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs'
import { sendBodies } from '../src/embedded/samples.ts'
import { replayDeadLetters } from '../src/ingest/replay.ts'
import { listRejected, resubmitRejected } from '../src/ingest/rejected.ts'
import { testLogins } from './messages.ts'
import { build, testQueue } from './helper.ts'

const run = promisify(execFile)

async function depth(client: Parameters<typeof replayDeadLetters>[0], url: string): Promise<number> {
  const { Attributes } = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }))
  return Number(Attributes?.ApproximateNumberOfMessages ?? 0) + Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
}

test('npm run replay moves dead letters back to the main queue, with a dry run and a limit', async (t) => {
  const queue = await testQueue(t)
  const bodies = testLogins(25).map((l) => l.body)
  await sendBodies(queue.client, queue.dlqUrl, bodies)
  const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', 'src/cli/replay.ts', ...args], {
    env: {
      PATH: process.env.PATH,
      SQS_QUEUE_URL: queue.queueUrl,
      SQS_DLQ_URL: queue.dlqUrl,
      AWS_ENDPOINT_URL: queue.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    },
  })

  const dry = JSON.parse((await cli(['--dry-run', '--limit', '10'])).stdout) as { waiting: number; moved: number; dryRun: boolean }
  assert.deepEqual(dry, { waiting: 25, moved: 10, failed: 0, dryRun: true })
  assert.equal(await depth(queue.client, queue.dlqUrl), 25, 'a dry run moves nothing')

  const partial = JSON.parse((await cli(['--limit', '10'])).stdout) as { moved: number }
  assert.equal(partial.moved, 10)
  assert.equal(await depth(queue.client, queue.queueUrl), 10)

  const rest = await replayDeadLetters(queue.client, {
    dlqUrl: queue.dlqUrl, queueUrl: queue.queueUrl, limit: 1000, dryRun: false, depth: () => depth(queue.client, queue.dlqUrl),
  })
  assert.equal(rest.moved, 15)
  assert.equal(await depth(queue.client, queue.dlqUrl), 0)
  assert.equal(await depth(queue.client, queue.queueUrl), 25, 'every dead letter is back exactly once')

  await assert.rejects(cli(['--limit', 'many']), (error: { code?: number; stderr?: string }) => error.code === 2 && /--limit/.test(error.stderr ?? ''))
})

test('rejected messages can be listed and, after a fix, resubmitted once', async (t) => {
  const { app, services, tokens, queue } = await build(t)
  // The database refuses locale 'ZZ' for now: those messages become rejections.
  await services.sql`ALTER TABLE user_logins ADD CONSTRAINT no_zz CHECK (locale IS DISTINCT FROM 'ZZ')`
  const bodies = testLogins(6).map((l, i) => (i < 2 ? JSON.stringify({ ...(JSON.parse(l.body) as object), locale: 'ZZ' }) : l.body))
  await sendBodies(queue.client, queue.queueUrl, bodies)
  const ingest = async () => (await app.inject({ method: 'POST', url: '/ingest', headers: { authorization: `Bearer ${tokens['ingest:run']}` } })).json<{ inserted: number; rejected: number }>()
  const first = await ingest()
  assert.equal(first.inserted, 4)
  assert.equal(first.rejected, 2)

  const pending = await listRejected(services.sql, { limit: 10, pendingOnly: true })
  assert.equal(pending.length, 2)
  for (const row of pending) {
    assert.match(row.reason, /SQLSTATE 23514/)
    assert.ok(!JSON.stringify(row).includes('ZZ'), 'the listing shows no body')
  }

  // The fix: the constraint goes; the rejections are sent back and become rows.
  await services.sql`ALTER TABLE user_logins DROP CONSTRAINT no_zz`
  const dry = await resubmitRejected(services.sql, services.vault, queue.client, { queueUrl: queue.queueUrl, limit: 10, dryRun: true })
  assert.deepEqual(dry, { resubmitted: 2, unreadable: 0, dryRun: true })
  assert.equal(await depth(queue.client, queue.queueUrl), 0, 'a dry run sends nothing')
  const report = await resubmitRejected(services.sql, services.vault, queue.client, { queueUrl: queue.queueUrl, limit: 10, dryRun: false })
  assert.deepEqual(report, { resubmitted: 2, unreadable: 0, dryRun: false })
  const again = await resubmitRejected(services.sql, services.vault, queue.client, { queueUrl: queue.queueUrl, limit: 10, dryRun: false })
  assert.equal(again.resubmitted, 0, 'a second run sends nothing twice')

  const second = await ingest()
  assert.equal(second.inserted, 2)
  const [count] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE locale = 'ZZ'`
  assert.equal(count?.n, 2)
  assert.equal((await listRejected(services.sql, { limit: 10, pendingOnly: true })).length, 0)
})
