import assert from 'node:assert/strict'
import { test } from 'node:test'
import { testLogins, sendMessages } from './messages.ts'
import { needsServer, testDatabase, testKeys, testQueue, waitFor } from './helper.ts'
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
