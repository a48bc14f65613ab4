// A newcomer's `npm start` on embedded defaults, run as the real process: whatever stops the first
// start, the next one ends with the 99 sample rows and the 1 rejection; one process per DATA_DIR;
// nothing listens beyond loopback; the embedded queue answers LocalStack-style URLs.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs'
import postgres from 'postgres'
import { startEmbeddedDatabase } from '../src/embedded/database.ts'
import { EMULATOR_CREDENTIALS } from '../src/embedded/queue.ts'
import { LoginQueue } from '../src/ingest/queue.ts'
import type { RuntimeInfo } from '../src/embedded/data-dir.ts'
import { SERVER_URL, waitFor } from './helper.ts'
import { loginRecord } from './ingest-helpers.ts'
import { startService, type ServiceProcess } from './service-process.ts'

// These start the service on its embedded defaults (PGlite, emulator), whatever DATABASE_URL
// says; the embedded pass of CI runs them, the server pass would only repeat them.
const embeddedPassOnly = SERVER_URL === undefined ? false : 'runs the embedded defaults; CI runs it in its embedded pass'

async function dataDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'li-first-run-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** `npm start` with nothing configured but where to keep its data, and free ports. */
function start(t: TestContext, dir: string, env: Record<string, string> = {}): ServiceProcess {
  return startService(t, { NODE_ENV: 'development', DATA_DIR: dir, PORT: '0', EMBEDDED_QUEUE_PORT: '0', LOG_LEVEL: 'debug', INGEST_PROGRESS_INTERVAL_MS: '500', ...env })
}

const output = (service: ServiceProcess): string => service.stdout() + service.stderr()

async function waitForLog(service: ServiceProcess, pattern: RegExp, what: string, timeoutMs = 60_000): Promise<void> {
  let exited = false
  void service.exit.then(() => (exited = true))
  await waitFor(() => {
    if (exited && !pattern.test(output(service))) throw new Error(`the service exited before ${what}:\n${output(service).slice(-3000)}`)
    return pattern.test(output(service))
  }, timeoutMs, what)
}

function demoKey(dir: string): string {
  return (JSON.parse(readFileSync(join(dir, 'secrets.json'), 'utf8')) as { demoApiKey: string }).demoApiKey
}

async function loginsServed(service: ServiceProcess, dir: string): Promise<number> {
  const address = service.address()
  if (address === null) return -1
  const response = await fetch(`${address}/logins?limit=1000`, { headers: { authorization: `Bearer ${demoKey(dir)}` } }).catch(() => null)
  if (response?.status !== 200) return -1
  return ((await response.json()) as { items: unknown[] }).items.length
}

/** Counts what the database in `dir` holds, opened by the test once no service runs on it. */
async function storedIn(dir: string): Promise<{ logins: number; rejected: number; distinctUsers: number }> {
  const db = await startEmbeddedDatabase(join(dir, 'pglite'))
  const sql = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    const [counts] = await sql<{ logins: number; rejected: number; distinctUsers: number }[]>`
      SELECT (SELECT count(*) FROM user_logins)::int AS logins, (SELECT count(*) FROM rejected_messages)::int AS rejected,
             (SELECT count(DISTINCT user_id) FROM user_logins)::int AS "distinctUsers"`
    return counts ?? { logins: -1, rejected: -1, distinctUsers: -1 }
  } finally {
    await sql.end({ timeout: 1 })
    await db.close()
  }
}

/** A normal start after whatever happened: it must serve the 99 rows; after SIGTERM the database holds 99 + 1. */
async function expectRepaired(t: TestContext, dir: string): Promise<void> {
  const normal = start(t, dir)
  await waitFor(async () => (await loginsServed(normal, dir)) === 99, 90_000, '99 rows served after the repairing start').catch((error: unknown) => {
    throw new Error(`${(error as Error).message}\n${output(normal).slice(-3000)}`)
  })
  // The rejection may still be on its way: wait for the embedded queue to be empty (stored and deleted).
  const runtime = JSON.parse(await readFile(join(dir, 'runtime.json'), 'utf8')) as RuntimeInfo
  const client = new SQSClient({ endpoint: runtime.queue?.endpoint ?? '', region: 'us-east-1', credentials: EMULATOR_CREDENTIALS })
  t.after(() => client.destroy())
  const queue = new LoginQueue(client, runtime.queue?.queueUrl ?? '')
  await waitFor(async () => {
    const depth = await queue.depth()
    return depth.visible === 0 && depth.inFlight === 0
  }, 30_000, 'the embedded queue to be drained')
  normal.kill('SIGTERM')
  assert.equal((await normal.exit).code, 0, output(normal).slice(-2000))
  assert.deepEqual(await storedIn(dir), { logins: 99, rejected: 1, distinctUsers: 99 }, 'the 99 sample rows once each, and the one rejection')
}

async function killAt(t: TestContext, dir: string, pattern: RegExp, what: string): Promise<void> {
  const first = start(t, dir)
  await waitForLog(first, pattern, what)
  first.kill('SIGKILL')
  await first.exit
}

// Each start is its own DATA_DIR and free ports, and most of a start is waiting (PGlite, the
// samples, the drain): two at a time.
describe('first contact on embedded defaults', { concurrency: 2 }, () => {
  test('first start killed before it listens: the next start ends with 99 rows and 1 rejection', { skip: embeddedPassOnly }, async (t) => {
    const dir = await dataDir(t)
    await killAt(t, dir, /DATABASE_URL not set/, 'the embedded database to start')
    await expectRepaired(t, dir)
  })

  test('first start killed while the samples are being sent: the next start sends the missing ones, none twice', { skip: embeddedPassOnly }, async (t) => {
    const dir = await dataDir(t)
    await killAt(t, dir, /sample messages sent/, 'the first sample batch to be sent')
    await expectRepaired(t, dir)
  })

  test('first start killed while the samples are being stored: the next start sends only what was not stored', { skip: embeddedPassOnly }, async (t) => {
    const dir = await dataDir(t)
    await killAt(t, dir, /"msg":"batch stored"/, 'the first batch to be stored')
    await expectRepaired(t, dir)
  })

  test('a taken port stops the first start with one line naming it; the next start has every sample', { skip: embeddedPassOnly }, async (t) => {
    const dir = await dataDir(t)
    const blocker: Server = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    t.after(() => blocker.close())
    const port = (blocker.address() as { port: number }).port
    const first = start(t, dir, { PORT: String(port) })
    const { code } = await first.exit
    assert.equal(code, 1)
    assert.match(first.stderr(), new RegExp(`login-ingest: cannot start: 127\\.0\\.0\\.1:${port} is taken`))
    assert.ok(!/EADDRINUSE/.test(first.stderr()), 'one clear line, not a stack trace')
    await expectRepaired(t, dir)
  })

  test('one process per DATA_DIR: a second start stops at once naming the first; a killed owner\'s lock is taken over', { skip: embeddedPassOnly }, async (t) => {
    const dir = await dataDir(t)
    const first = start(t, dir)
    await waitForLog(first, /login-ingest listening/, 'the first service to listen')
    const second = start(t, dir)
    const { code } = await second.exit
    assert.equal(code, 1)
    const lines = second.stderr().trim().split('\n').filter((l) => l.startsWith('login-ingest:'))
    assert.equal(lines.length, 1, second.stderr())
    assert.match(lines[0] ?? '', new RegExp(`DATA_DIR .* is in use by process ${String(first.pid)}`))
    assert.ok(!second.stdout().includes('embedded queue filled'), 'the second process touched nothing')

    first.kill('SIGKILL')
    await first.exit
    const lock = JSON.parse(await readFile(join(dir, 'lock.json'), 'utf8')) as { pid: number }
    assert.equal(lock.pid, first.pid, 'the killed process left its lock behind')
    const third = start(t, dir)
    await waitForLog(third, /login-ingest listening/, 'the third service to take over the stale lock')
    third.kill('SIGTERM')
    assert.equal((await third.exit).code, 0)
  })

  test('on embedded defaults every socket the service listens on is on loopback, and runtime.json says where they are', { skip: embeddedPassOnly }, async (t) => {
    const dir = await dataDir(t)
    const service = start(t, dir)
    await waitForLog(service, /login-ingest listening/, 'the service to listen')
    const pid = service.pid
    const listening = await listeningAddresses(pid)
    assert.ok(listening.length >= 3, `the API, PGlite's socket and the SQS emulator at least: ${JSON.stringify(listening)}`)
    for (const address of listening) assert.ok(address === '127.0.0.1' || address === '::1', `listens on ${address}`)

    const runtime = JSON.parse(await readFile(join(dir, 'runtime.json'), 'utf8')) as RuntimeInfo
    assert.equal(runtime.pid, pid)
    assert.equal(runtime.api, service.address())
    assert.equal(runtime.embeddedDatabase, true)
    assert.ok(runtime.queue !== null)
    assert.match(runtime.queue.localstackUrl, /^http:\/\/localhost:\d+\/000000000000\/login-queue$/)

    // The exercise's own way in: a LocalStack-style endpoint and queue URL, with any credentials.
    const port = new URL(runtime.queue.localstackUrl).port
    const client = new SQSClient({ endpoint: `http://localhost:${port}`, region: 'us-east-1', credentials: EMULATOR_CREDENTIALS })
    t.after(() => client.destroy())
    const record = loginRecord()
    await client.send(new SendMessageCommand({ QueueUrl: runtime.queue.localstackUrl, MessageBody: JSON.stringify(record) }))
    const key = demoKey(dir)
    await waitFor(async () => {
      const response = await fetch(`${runtime.api}/logins?user_id=${encodeURIComponent(record.user_id)}`, { headers: { authorization: `Bearer ${key}` } })
      return response.status === 200 && ((await response.json()) as { items: unknown[] }).items.length === 1
    }, 30_000, 'the message sent to the LocalStack-style URL to be stored')
    await waitForLog(service, /"msg":"ingestion: \d+ received/, 'the progress line')

    service.kill('SIGTERM')
    assert.equal((await service.exit).code, 0)
    await assert.rejects(readFile(join(dir, 'runtime.json')), 'runtime.json is removed on a clean stop')
    await assert.rejects(readFile(join(dir, 'lock.json')), 'and the lock released')
  })
})

/** Local addresses of the TCP sockets in LISTEN state that process `pid` holds, from /proc. */
async function listeningAddresses(pid: number): Promise<string[]> {
  const inodes = new Set<string>()
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
    const match = /^socket:\[(\d+)\]$/.exec(target)
    if (match?.[1] !== undefined) inodes.add(match[1])
  }
  const addresses: string[] = []
  for (const [file, v6] of [['tcp', false], ['tcp6', true]] as const) {
    const table = await readFile(`/proc/${pid}/net/${file}`, 'utf8').catch(() => '')
    for (const line of table.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/)
      const [local, state, inode] = [fields[1], fields[3], fields[9]]
      if (local === undefined || state !== '0A' || inode === undefined || !inodes.has(inode)) continue
      addresses.push(decodeAddress(local.split(':')[0] ?? '', v6))
    }
  }
  return addresses
}

function decodeAddress(hex: string, v6: boolean): string {
  const bytes = Buffer.from(hex, 'hex')
  if (!v6) return [...bytes].reverse().join('.')
  // /proc prints IPv6 as four little-endian 32-bit words.
  const words = [0, 4, 8, 12].map((i) => Buffer.from(bytes.subarray(i, i + 4)).reverse())
  const full = Buffer.concat(words)
  if (full.subarray(0, 10).every((b) => b === 0) && full[10] === 0xff && full[11] === 0xff) return [...full.subarray(12)].join('.')
  const groups = Array.from({ length: 8 }, (_, i) => full.readUInt16BE(i * 2).toString(16))
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')
}
