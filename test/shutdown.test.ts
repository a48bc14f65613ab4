import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildApp } from '../src/app.ts'
import { EMBEDDED_QUEUE_NAME } from '../src/embedded/queue.ts'
import { inspectQueue, testLogins, sendMessages } from './messages.ts'
import { captureLogs, needsServer, testConfig, testDatabase, testKeys, testQueue, testServices, waitFor } from './helper.ts'
import { serviceEnv, startService, type ServiceProcess } from './service-process.ts'

const output = (service: ServiceProcess): string => service.stdout() + service.stderr()

test('SIGTERM during ingestion: batches in flight finish, the exit is clean, nothing is lost or stored twice', { skip: needsServer }, async (t) => {
  const db = await testDatabase(t)
  const queue = await testQueue(t, { visibilityTimeoutSeconds: 30 })
  const keys = testKeys()
  const logins = testLogins(1500)
  const sent = await sendMessages(queue.client, queue.queueUrl, logins.map((l) => l.body))
  const env = await serviceEnv(t, { db, queue, keys }, { WORKER_CONCURRENCY: '4', SHUTDOWN_GRACE_MS: '20000' })
  // Zero until the service has migrated the fresh database.
  const rows = async () => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`.catch(() => []))[0]?.n ?? 0

  const first = startService(t, env)
  await waitFor(async () => (await rows()) >= 200, 60_000, 'ingestion under way')
  const signalled = Date.now()
  first.kill('SIGTERM')
  const { code, signal } = await first.exit
  assert.equal(signal, null)
  assert.equal(code, 0, `clean exit after SIGTERM; output:\n${output(first).slice(-2000)}`)
  assert.ok(Date.now() - signalled < 20_000, 'within the grace time')
  assert.match(output(first), /batches in flight finished/)

  const stored = await rows()
  assert.ok(stored < sent.length, 'stopped before the queue was empty (the test would prove nothing otherwise)')
  const depth = await queue.queue.depth()
  // Every message is either stored or still on the queue; a message can be both only if its
  // delete failed, which would show in the log.
  assert.equal(stored + depth.visible + depth.inFlight, sent.length, 'nothing lost, nothing deleted without its row')

  const second = startService(t, env)
  await waitFor(() => second.address() !== null, 30_000, 'the second service to listen')
  await waitFor(async () => (await rows()) === sent.length, 90_000, 'the rest to be ingested after a restart')
  second.kill('SIGTERM')
  assert.equal((await second.exit).code, 0)
  const [check] = await db.sql<{ n: number; distinct: number }[]>`
    SELECT count(*)::int AS n, count(DISTINCT message_id)::int AS distinct FROM user_logins`
  assert.deepEqual(check, { n: sent.length, distinct: sent.length })
  const ids = new Set((await db.sql<{ message_id: string }[]>`SELECT message_id FROM user_logins`).map((r) => r.message_id))
  assert.ok(sent.every((id) => ids.has(id)), 'every sent message has its row')
  for (const login of logins.slice(0, 200)) {
    assert.ok(!output(first).includes(login.ip) && !output(second).includes(login.ip), 'no raw ip in the logs')
  }
})

/*
 * Stopping while the long polls are open: the queue keeps a poll open until its wait ends, and
 * hands it the messages that arrive meanwhile, whether or not the client still listens. A
 * worker that abandoned its polls left those messages invisible for the visibility timeout,
 * with one of their receives used up. The worker lets the polls return and stores what they bring.
 */
const STOPPING_ENV = { WORKER_ENABLED: 'true', WORKER_CONCURRENCY: '3', SQS_WAIT_TIME_SECONDS: '3', SQS_VISIBILITY_TIMEOUT_SECONDS: '120', SHUTDOWN_GRACE_MS: '10000' }

/** The 30 messages after a stop: none invisible, none received without being stored, the DLQ empty. */
async function assertNothingStranded(queue: Awaited<ReturnType<typeof testQueue>>, sent: readonly string[], storedIds: ReadonlySet<string>): Promise<void> {
  const contents = await inspectQueue(queue.endpoint, EMBEDDED_QUEUE_NAME)
  assert.equal(contents.inFlight, 0, 'no message waits for its visibility timeout')
  assert.deepEqual([...contents.receiveCounts.values()].filter((n) => n > 0), [], 'what is still on the queue was never received')
  assert.deepEqual(sent.filter((id) => !storedIds.has(id) && !contents.receiveCounts.has(id)), [], 'every message is stored or still on the queue')
  assert.equal((await inspectQueue(queue.endpoint, `${EMBEDDED_QUEUE_NAME}-dlq`)).receiveCounts.size, 0, 'nothing went to the dead-letter queue')
}

test('app.close() of an idle worker while 30 messages arrive: the polls in flight store theirs, none is stranded, a restart takes the rest with one receive each', { timeout: 90_000 }, async (t) => {
  const queue = await testQueue(t, { visibilityTimeoutSeconds: 120 })
  const services = await testServices(t, queue.queue)
  // Every delivery the pipeline sees, with its receive count (the real pipeline still stores it).
  const deliveries: { messageId: string; receiveCount: number }[] = []
  const processById = services.pipeline.processById.bind(services.pipeline)
  services.pipeline.processById = async (messages) => {
    for (const { messageId, receiveCount } of messages) deliveries.push({ messageId, receiveCount })
    return processById(messages)
  }
  const storedIds = async () => new Set((await services.sql<{ message_id: string }[]>`SELECT message_id FROM user_logins`).map((r) => r.message_id))
  const start = async () => {
    const app = await buildApp({ config: testConfig(STOPPING_ENV), services, logger: captureLogs(testConfig()).logger })
    await app.ready()
    return app
  }

  const first = await start()
  await waitFor(() => first.worker.state().lastPollAt !== null, 10_000, 'the pollers to poll')
  await new Promise((resolve) => setTimeout(resolve, 300)) // the long polls are open at the queue
  const closed = first.close()
  const sent = await sendMessages(queue.client, queue.queueUrl, testLogins(30).map((l) => l.body))
  await closed
  assert.equal(first.worker.state().status, 'stopped')
  const afterStop = await storedIds()
  t.diagnostic(`the stopping worker stored ${afterStop.size} of 30`)
  assert.ok(afterStop.size > 0, 'the polls in flight at the stop were handed messages (the test proves nothing otherwise)')
  await assertNothingStranded(queue, sent, afterStop)

  const second = await start()
  t.after(() => second.close())
  // Far sooner than the 120 s visibility timeout: nothing had to wait for it.
  await waitFor(async () => (await storedIds()).size === sent.length, 20_000, 'every message stored after the restart')
  await waitFor(async () => {
    const depth = await queue.queue.depth()
    return depth.visible === 0 && depth.inFlight === 0
  }, 10_000, 'the queue empty')
  assert.deepEqual(deliveries.filter((d) => d.receiveCount > 1), [], 'no message was received more than once')
  assert.equal(new Set(deliveries.map((d) => d.messageId)).size, deliveries.length, 'each message delivered once')
})

test('SIGTERM to an idle service while 30 messages arrive: clean exit, none is stranded, a restart takes the rest with one receive each', { skip: needsServer, timeout: 90_000 }, async (t) => {
  const db = await testDatabase(t)
  const queue = await testQueue(t, { visibilityTimeoutSeconds: 120 })
  const env = await serviceEnv(t, { db, queue, keys: testKeys() }, STOPPING_ENV)
  const storedIds = async () => new Set((await db.sql<{ message_id: string }[]>`SELECT message_id FROM user_logins`.catch(() => [])).map((r) => r.message_id))

  const first = startService(t, env)
  await waitFor(() => first.address() !== null, 30_000, 'the service to listen')
  await new Promise((resolve) => setTimeout(resolve, 500)) // the long polls are open at the queue
  first.kill('SIGTERM')
  const sent = await sendMessages(queue.client, queue.queueUrl, testLogins(30).map((l) => l.body))
  assert.deepEqual(await first.exit, { code: 0, signal: null }, `clean exit; output:\n${output(first).slice(-2000)}`)
  assert.match(output(first), /batches in flight finished/)
  const afterStop = await storedIds()
  t.diagnostic(`the stopping service stored ${afterStop.size} of 30`)
  assert.ok(afterStop.size > 0, 'the polls in flight at the SIGTERM were handed messages (the test proves nothing otherwise)')
  await assertNothingStranded(queue, sent, afterStop)

  const second = startService(t, env)
  // Listening first: when the stopping service stored all 30, the checks below pass at once,
  // and a SIGTERM before the service installs its handlers ends it without a graceful exit.
  await waitFor(() => second.address() !== null, 30_000, 'the second service to listen')
  await waitFor(async () => (await storedIds()).size === sent.length, 30_000, 'every message stored after the restart')
  await waitFor(async () => {
    const depth = await queue.queue.depth()
    return depth.visible === 0 && depth.inFlight === 0
  }, 10_000, 'the queue empty')
  second.kill('SIGTERM')
  assert.equal((await second.exit).code, 0)
})
