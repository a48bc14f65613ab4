import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EMBEDDED_QUEUE_NAME } from '../src/embedded/queue.ts'
import { needsServer, testDatabase, testKeys, testQueue, waitFor } from './helper.ts'
import { serviceEnv, startService, type ServiceProcess } from './service-process.ts'
import { inspectQueue, sendMessages, testLogins } from './messages.ts'

test('SIGKILL in the middle of a batch, then a restart, three times: exactly one row per message sent', { skip: needsServer, timeout: 120_000 }, async (t) => {
  const queue = await testQueue(t, { visibilityTimeoutSeconds: 5 })
  const db = await testDatabase(t)
  const keys = testKeys()
  const env = await serviceEnv(t, { db, queue, keys }, { WORKER_CONCURRENCY: '2', SQS_VISIBILITY_TIMEOUT_SECONDS: '5' })
  // Enough that the group commit cannot drain them all between the thresholds and a kill.
  const logins = testLogins(1500)
  const sent = await sendMessages(queue.client, queue.queueUrl, logins.map((l) => l.body))
  // Zero until the service has migrated the fresh database.
  const rows = async (): Promise<number> =>
    (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`.catch(() => []))[0]?.n ?? 0

  /** Waits until `threshold` rows are stored and the service reports a batch in flight, then SIGKILLs it. */
  const killMidBatch = async (service: ServiceProcess, threshold: number): Promise<number> => {
    await waitFor(async () => (await rows()) >= threshold, 60_000, `${threshold} rows stored`)
    await waitFor(async () => {
      const address = service.address()
      if (address === null) return false
      const ready = (await (await fetch(`${address}/readyz`)).json()) as { queue: { batchesInFlight: number } }
      return ready.queue.batchesInFlight > 0
    }, 30_000, 'a batch in flight')
    service.kill('SIGKILL')
    assert.equal((await service.exit).signal, 'SIGKILL')
    const stored = await rows()
    const depth = await queue.queue.depth()
    t.diagnostic(`killed with ${stored} rows stored, ${depth.inFlight} messages in flight, ${depth.visible} waiting`)
    assert.ok(stored < sent.length, `killed before the queue was drained (${stored} of ${sent.length} stored); the test proves nothing otherwise`)
    // A message is either stored or still on the queue (both when its row was committed but the
    // process died before deleting it); never deleted without its row.
    const ids = new Set((await db.sql<{ message_id: string }[]>`SELECT message_id FROM user_logins`).map((r) => r.message_id))
    const onQueue = (await inspectQueue(queue.endpoint, EMBEDDED_QUEUE_NAME)).receiveCounts
    const lost = sent.filter((id) => !ids.has(id) && !onQueue.has(id))
    assert.deepEqual(lost, [], 'no message deleted from the queue without its row')
    return depth.inFlight
  }

  // Killed three times in the middle of a batch, each time started again.
  const services: ServiceProcess[] = []
  let unfinished = 0
  for (const threshold of [40, 120, 200]) {
    const service = startService(t, env)
    services.push(service)
    unfinished += await killMidBatch(service, threshold)
  }
  assert.ok(unfinished > 0, 'some kill left received messages undeleted (the kills did land mid-batch)')

  const second = startService(t, env)
  services.push(second)
  await waitFor(async () => (await rows()) >= sent.length, 60_000, 'every message stored after the restart')
  await waitFor(async () => {
    const d = await queue.queue.depth()
    return d.visible === 0 && d.inFlight === 0
  }, 30_000, 'queue empty')

  const [counts] = await db.sql<{ n: number; distinct: number; vault: number; rejected: number }[]>`
    SELECT count(*)::int AS n, count(DISTINCT message_id)::int AS distinct,
           (SELECT count(*) FROM pii_vault)::int AS vault, (SELECT count(*) FROM rejected_messages)::int AS rejected
    FROM user_logins`
  assert.deepEqual(counts, { n: sent.length, distinct: sent.length, vault: sent.length, rejected: 0 })
  const ids = (await db.sql<{ message_id: string }[]>`SELECT message_id FROM user_logins ORDER BY message_id`).map((r) => r.message_id)
  assert.deepEqual(ids, [...sent].sort(), 'the rows are the messages sent, each once')
  const dlq = await inspectQueue(queue.endpoint, `${EMBEDDED_QUEUE_NAME}-dlq`)
  assert.equal(dlq.receiveCounts.size, 0, 'nothing went to the dead-letter queue')

  // The restarted service is ready, and stops cleanly on SIGTERM.
  const address = second.address()
  assert.ok(address, `the service logged its address:\n${second.stdout().slice(-1000)}`)
  const ready = await fetch(`${address}/readyz`)
  assert.equal(ready.status, 200)
  second.kill('SIGTERM')
  assert.deepEqual(await second.exit, { code: 0, signal: null })

  // Their logs are JSON lines, and hold no raw ip or device_id.
  for (const service of services) {
    const lines = service.stdout().split('\n').filter(Boolean)
    assert.ok(lines.length > 0)
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `a JSON log line: ${line.slice(0, 200)}`)
    const output = service.stdout() + service.stderr()
    for (const login of logins) {
      assert.ok(!output.includes(login.ip), 'no raw ip in the output')
      assert.ok(!output.includes(login.device_id), 'no raw device_id in the output')
    }
  }
})
