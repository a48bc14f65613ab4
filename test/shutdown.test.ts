import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { testLogins, sendMessages } from './messages.ts'
import { needsServer, testApiKeys, testDatabase, testKeys, testQueue, waitFor } from './helper.ts'

interface Service {
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  output(): string
  signal(name: NodeJS.Signals): void
}

function startService(t: TestContext, env: Record<string, string>): Service {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { PATH: process.env.PATH, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
  t.after(() => child.kill('SIGKILL'))
  return {
    exit: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
    output: () => output,
    signal: (name) => child.kill(name),
  }
}

test('SIGTERM during ingestion: batches in flight finish, the exit is clean, nothing is lost or stored twice', { skip: needsServer }, async (t) => {
  const db = await testDatabase(t)
  const queue = await testQueue(t, { visibilityTimeoutSeconds: 30 })
  const keys = testKeys()
  const dataDir = await mkdtemp(join(tmpdir(), 'li-shutdown-'))
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  const logins = testLogins(1500)
  const sent = await sendMessages(queue.client, queue.queueUrl, logins.map((l) => l.body))
  const env = {
    NODE_ENV: 'test',
    PORT: '0',
    LOG_LEVEL: 'info',
    DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    SQS_QUEUE_URL: queue.queueUrl,
    AWS_ENDPOINT_URL: queue.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    SQS_WAIT_TIME_SECONDS: '1',
    WORKER_CONCURRENCY: '4',
    SHUTDOWN_GRACE_MS: '20000',
    MASK_KEYS: keys.MASK_KEYS,
    VAULT_MASTER_KEYS: keys.VAULT_MASTER_KEYS,
    API_KEYS: testApiKeys().API_KEYS,
  }
  // Zero until the service has migrated the fresh database.
  const rows = async () => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`.catch(() => []))[0]?.n ?? 0

  const first = startService(t, env)
  await waitFor(async () => (await rows()) >= 200, 60_000, 'ingestion under way')
  const signalled = Date.now()
  first.signal('SIGTERM')
  const { code, signal } = await first.exit
  assert.equal(signal, null)
  assert.equal(code, 0, `clean exit after SIGTERM; output:\n${first.output().slice(-2000)}`)
  assert.ok(Date.now() - signalled < 20_000, 'within the grace time')
  assert.match(first.output(), /batches in flight finished/)

  const stored = await rows()
  assert.ok(stored < sent.length, 'stopped before the queue was empty (the test would prove nothing otherwise)')
  const depth = await queue.queue.depth()
  // Every message is either stored or still on the queue; a message can be both only if its
  // delete failed, which would show in the log.
  assert.equal(stored + depth.visible + depth.inFlight, sent.length, 'nothing lost, nothing deleted without its row')

  const second = startService(t, env)
  await waitFor(async () => (await rows()) === sent.length, 90_000, 'the rest to be ingested after a restart')
  second.signal('SIGTERM')
  assert.equal((await second.exit).code, 0)
  const [check] = await db.sql<{ n: number; distinct: number }[]>`
    SELECT count(*)::int AS n, count(DISTINCT message_id)::int AS distinct FROM user_logins`
  assert.deepEqual(check, { n: sent.length, distinct: sent.length })
  const ids = new Set((await db.sql<{ message_id: string }[]>`SELECT message_id FROM user_logins`).map((r) => r.message_id))
  assert.ok(sent.every((id) => ids.has(id)), 'every sent message has its row')
  for (const login of logins.slice(0, 200)) {
    assert.ok(!first.output().includes(login.ip) && !second.output().includes(login.ip), 'no raw ip in the logs')
  }
})
