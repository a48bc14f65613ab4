import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { readRuntimeInfo } from '../src/embedded/data-dir.ts'
import { parseLoginMessage } from '../src/ingest/message.ts'
import { receiveMessages } from './ingest-helpers.ts'
import { inspectQueue } from './messages.ts'
import { build, needsServer, testQueue, waitFor } from './helper.ts'
import { startService } from './service-process.ts'
import { startTcpProxy, targetOf } from './tcp-proxy.ts'

/*
 * The command-line tools as a user runs them: real processes (`node --import tsx src/cli/x.ts`)
 * against the SQS emulator, a test database, or a real `npm start` on embedded defaults.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SAMPLES = join(ROOT, 'fixtures/fetch-sample-logins.json')
const CLIS = ['send', 'rejected', 'migrate', 'key', 'openapi', 'replay', 'rotate-keys', 'retention', 'partitions'] as const

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs one CLI with exactly `env` (plus PATH) and resolves when it exits; never rejects. */
function cli(name: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', `src/cli/${name}.ts`, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, NODE_ENV: 'test', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
    child.on('error', reject)
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'li-cli-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function queueEnv(queue: { endpoint: string; queueUrl: string; dlqUrl: string }, endpoint = queue.endpoint): Record<string, string> {
  return {
    SQS_QUEUE_URL: queue.queueUrl,
    SQS_DLQ_URL: queue.dlqUrl,
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
  }
}

/** One line on stderr, nothing on stdout. */
function assertOneLine(run: Run, code: number, pattern: RegExp, what: string): void {
  assert.equal(run.code, code, `${what}: exit ${run.code}, stderr ${run.stderr}`)
  assert.equal(run.stderr.split('\n').filter(Boolean).length, 1, `${what}: one line on stderr: ${run.stderr}`)
  assert.match(run.stderr, pattern, what)
}

test('every CLI answers --help with its usage and a wrong option with one line and exit 2', async (t) => {
  const dataDir = await tempDir(t)
  // A CLI's three runs at once: each is a process start, mostly waiting on module loading.
  for (const name of CLIS) {
    const [long, short, unknown] = await Promise.all([
      cli(name, ['--help'], { DATA_DIR: dataDir }), cli(name, ['-h'], { DATA_DIR: dataDir }), cli(name, ['--no-such-flag'], { DATA_DIR: dataDir }),
    ])
    for (const [flag, help] of [['--help', long], ['-h', short]] as const) {
      assert.equal(help.code, 0, `${name} ${flag}: ${help.stderr}`)
      assert.match(help.stdout, new RegExp(`^usage: npm run ${name}`), `${name} ${flag} prints its usage`)
      assert.match(help.stdout, /Exit codes/, `${name} ${flag} documents its exit codes`)
      assert.equal(help.stderr, '')
    }
    assertOneLine(unknown, 2, new RegExp(`^login-ingest ${name}: unknown option '--no-such-flag' \\(see npm run ${name} -- --help\\)\\n$`), `${name} --no-such-flag`)
  }
})

test('npm run send: a JSON file, an NDJSON file and --generate reach the queue as they were given', async (t) => {
  const queue = await testQueue(t)
  const env = queueEnv(queue)
  const dir = await tempDir(t)

  // The exercise's samples: 99 logins and one record that is not one, sent anyway and counted.
  const samples = JSON.parse(await readFile(SAMPLES, 'utf8')) as unknown[]
  const fromJson = await cli('send', [SAMPLES], env)
  assert.equal(fromJson.code, 0, fromJson.stderr)
  assert.equal(fromJson.stdout, `sent 100, failed 0, to ${queue.queueUrl} in ${/ in ([\d.]+) s/.exec(fromJson.stdout)?.[1]} s\n`)
  assert.match(fromJson.stderr, /^1 of 100 records in .* are not login events \(first: record \d+: user_id is required\): sent anyway/)
  const received = await receiveMessages(queue.queue, 100)
  assert.deepEqual(received.map((m) => m.body).sort(), samples.map((r) => JSON.stringify(r)).sort(), 'every record arrives once, as it was')
  await queue.queue.delete(received)

  // NDJSON with --skip-invalid: the record that is not a login stays out.
  const ndjson = join(dir, 'logins.ndjson')
  const valid = samples.filter((r) => parseLoginMessage(JSON.stringify(r)).ok).slice(0, 20)
  await writeFile(ndjson, `${valid.map((r) => JSON.stringify(r)).join('\n')}\n\n${JSON.stringify({ foo: 'not a login' })}\n`)
  const fromNdjson = await cli('send', [ndjson, '--skip-invalid'], env)
  assert.equal(fromNdjson.code, 0, fromNdjson.stderr)
  assert.match(fromNdjson.stdout, /^sent 20, failed 0, to /)
  assert.match(fromNdjson.stderr, /^1 of 21 records in .* are not login events \(first: record 21: user_id is required\): left out\n$/)
  const lines = await receiveMessages(queue.queue, 20)
  assert.deepEqual(lines.map((m) => m.body).sort(), valid.map((r) => JSON.stringify(r)).sort())
  await queue.queue.delete(lines)

  // --generate: valid logins, exactly 30 % reusing an earlier ip and device_id, the same for one seed.
  const generated = await cli('send', ['--generate', '200', '--repeat', '0.3', '--seed', 'cli-test'], env)
  assert.equal(generated.code, 0, generated.stderr)
  assert.match(generated.stdout, /^sent 200, failed 0, to /)
  const events = (await receiveMessages(queue.queue, 200)).map((m) => m.body)
  for (const body of events) assert.ok(parseLoginMessage(body).ok, `a generated event is a login: ${body}`)
  const parsed = events.map((b) => JSON.parse(b) as { user_id: string; ip: string; device_id: string; device_type: string; app_version: string })
  assert.equal(new Set(parsed.map((e) => `${e.ip}|${e.device_id}`)).size, 140, '60 of 200 reuse an earlier ip and device_id')
  assert.equal(new Set(parsed.map((e) => e.ip)).size, 140)
  assert.equal(new Set(parsed.map((e) => e.user_id)).size, 200, 'every event has a user of its own')
  for (const e of parsed) {
    assert.match(e.user_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.match(e.device_id, /^\d{3}-\d{2}-\d{4}$/)
    assert.ok(['android', 'ios'].includes(e.device_type))
  }
  const again = await cli('send', ['--generate', '200', '--repeat', '0.3', '--seed', 'cli-test'], env)
  assert.equal(again.code, 0, again.stderr)
  const replayed = (await receiveMessages(queue.queue, 200)).map((m) => m.body)
  assert.deepEqual(replayed.sort(), [...events].sort(), 'the same seed generates the same events')
})

test('npm run send: bad input gets one line and a non-zero exit, and nothing is sent', async (t) => {
  const queue = await testQueue(t)
  const env = queueEnv(queue)
  const dir = await tempDir(t)
  const file = async (name: string, text: string) => {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }
  const secret = '203.0.113.77'
  const cases: [string[], number, RegExp][] = [
    [[await file('broken.json', `[{"user_id": "u", "ip": "${secret}",}]`)], 1, /broken\.json is neither JSON \(error at line 1 column \d+\) nor NDJSON \(line 1 is not JSON\)\n$/],
    [[await file('broken.ndjson', `{"user_id": "u"}\n{"ip": "${secret}"\n`)], 1, /broken\.ndjson is not NDJSON: line 2 is not JSON \(nothing was sent\)\n$/],
    [[await file('none.json', JSON.stringify([{ foo: 1 }, { user_id: 'u', ip: secret }, 'text']))], 1, /none\.json holds no login events: none of its 3 records is one \(record 1: user_id is required\)\n$/],
    [[await file('empty.json', '\n')], 1, /empty\.json is empty\n$/],
    [[await file('empty-array.json', '[]')], 1, /empty-array\.json holds an empty array: nothing to send\n$/],
    [[join(dir, 'missing.json')], 1, /cannot read .*missing\.json: ENOENT/],
    [[], 2, /give a FILE or --generate N/],
    [['--generate', '0'], 2, /--generate must be an integer from 1 to 10000000\n$/],
    [['--generate', '5', '--repeat', '1.5'], 2, /--repeat must be a number from 0 to 1/],
    [['--generate', '5', '--repeat', 'lots'], 2, /--repeat must be a number from 0 to 1/],
    [[SAMPLES, '--generate', '5'], 2, /give a FILE or --generate N/],
    [[SAMPLES, '--seed', 'x'], 2, /--repeat and --seed belong to --generate/],
  ]
  for (const [args, code, pattern] of cases) {
    const run = await cli('send', args, env)
    assertOneLine(run, code, new RegExp(`^login-ingest send: (?:${dir}/)?${pattern.source}`), `send ${args.join(' ')}`)
    assert.ok(!run.stderr.includes(secret), 'the error never quotes the file')
    assert.equal(run.stdout, '')
  }
  assert.equal((await inspectQueue(queue.endpoint, 'login-queue')).ready, 0, 'nothing was sent')

  const noQueue = await cli('send', ['--generate', '5'], { DATA_DIR: dir })
  assertOneLine(noQueue, 1, /^login-ingest send: no queue: SQS_QUEUE_URL is not set and no service with an embedded queue runs on DATA_DIR .* \(start it with npm start, or set SQS_QUEUE_URL\)\n$/, 'no queue configured')
})

test('npm run send: a queue that fails mid-way stops with how many were sent before it', async (t) => {
  const queue = await testQueue(t)
  const proxy = await startTcpProxy(targetOf(queue.endpoint))
  t.after(() => proxy.close())
  const total = 50_000
  const running = cli('send', ['--generate', String(total)], queueEnv(queue, `http://127.0.0.1:${proxy.port}`))
  await waitFor(async () => (await inspectQueue(queue.endpoint, 'login-queue')).ready >= 300, 60_000, 'the first messages')
  await proxy.cut(0)
  const run = await running
  const arrived = (await inspectQueue(queue.endpoint, 'login-queue')).ready
  assertOneLine(run, 1, /^login-ingest send: the queue .* failed \(.*\): sent \d+ of 50000 before it stopped \(\d+ more were in the calls that failed: the queue may or may not have them\)\n$/, 'cut mid-way')
  const sent = Number(/sent (\d+) of/.exec(run.stderr)?.[1])
  const uncertain = Number(/\((\d+) more were/.exec(run.stderr)?.[1])
  assert.ok(arrived < total, `the cut came before the end (${arrived} arrived)`)
  assert.ok(sent >= 300 && sent <= arrived, `reported ${sent} sent, ${arrived} arrived`)
  assert.ok(arrived <= sent + uncertain, `what arrived beyond the reported count (${arrived - sent}) is within the uncertain ${uncertain}`)
  assert.equal(run.stdout, '', 'no success summary')
})

test('npm run rejected with DATABASE_URL: list without bodies, resubmit once, bad options', { skip: needsServer }, async (t) => {
  const { app, services, tokens, queue } = await build(t)
  await services.sql`ALTER TABLE user_logins ADD CONSTRAINT no_zz CHECK (locale IS DISTINCT FROM 'ZZ')`
  const marker = 'device-zz-marker'
  const bodies = Array.from({ length: 3 }, (_, i) => JSON.stringify({ user_id: `u${i}`, app_version: '2.3.0', device_type: 'ios', ip: '198.51.100.7', locale: 'ZZ', device_id: `${marker}-${i}` }))
  await queue.queue.client.send(new (await import('@aws-sdk/client-sqs')).SendMessageBatchCommand({
    QueueUrl: queue.queueUrl, Entries: bodies.map((body, i) => ({ Id: String(i), MessageBody: body })),
  }))
  const drained = await app.inject({ method: 'POST', url: '/ingest', headers: { authorization: `Bearer ${tokens['ingest:run']}` } })
  assert.equal(drained.json<{ rejected: number }>().rejected, 3, drained.body)
  const env = { ...queueEnv(queue), DATABASE_URL: services.db.url, MASK_KEYS: services.keys.MASK_KEYS, VAULT_MASTER_KEYS: services.keys.VAULT_MASTER_KEYS }

  const list = await cli('rejected', ['list'], env)
  assert.equal(list.code, 0, list.stderr)
  const rows = list.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.equal(rows.length, 3)
  for (const row of rows) {
    assert.deepEqual(Object.keys(row).sort(), ['id', 'message_id', 'reason', 'receive_count', 'rejected_at', 'resubmitted_at'])
    assert.match(String(row.reason), /SQLSTATE 23514/)
  }
  assert.ok(!list.stdout.includes(marker) && !list.stdout.includes('198.51.100.7'), 'no body')

  await services.sql`ALTER TABLE user_logins DROP CONSTRAINT no_zz`
  const one = await cli('rejected', ['resubmit', '--id', String(rows[0]?.id)], env)
  assert.equal(one.code, 0, one.stderr)
  assert.deepEqual(JSON.parse(one.stdout), { resubmitted: 1, unreadable: 0, dryRun: false })
  const rest = await cli('rejected', ['resubmit'], env)
  assert.deepEqual(JSON.parse(rest.stdout), { resubmitted: 2, unreadable: 0, dryRun: false })
  assert.deepEqual(JSON.parse((await cli('rejected', ['resubmit'], env)).stdout), { resubmitted: 0, unreadable: 0, dryRun: false }, 'never twice')
  const back = await receiveMessages(queue.queue, 3)
  assert.deepEqual(back.map((m) => m.body).sort(), [...bodies].sort(), 'the bodies go back as they came')
  assert.equal((await cli('rejected', ['list'], env)).stdout, '', 'nothing pending')
  assert.equal((await cli('rejected', ['list', '--all'], env)).stdout.trim().split('\n').length, 3)

  for (const [args, pattern] of [
    [['list', '--limit', '0'], /--limit must be an integer from 1 to 1000/],
    [['resubmit', '--id', 'x'], /--id x is not a rejection id/],
    [['purge'], /the command must be list or resubmit/],
    [['list', '--dry-run'], /--id and --dry-run belong to resubmit/],
  ] as const) {
    assertOneLine(await cli('rejected', [...args], env), 2, new RegExp(`^login-ingest rejected: ${pattern.source}`), `rejected ${args.join(' ')}`)
  }
})

test('embedded defaults while npm start runs: send and rejected go through the service, database tools stop at the lock', async (t) => {
  // Needs DATA_DIR/runtime.json from npm start (written once it listens).
  const dataDir = await tempDir(t)
  const service = startService(t, { NODE_ENV: 'test', PORT: '0', EMBEDDED_QUEUE_PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'info', SQS_WAIT_TIME_SECONDS: '1' })
  await waitFor(async () => (await readRuntimeInfo(dataDir)) !== null, 90_000, `runtime.json of the service (${service.stderr().slice(-500)})`)
  const runtime = await readRuntimeInfo(dataDir)
  assert.ok(runtime?.queue && runtime.embeddedDatabase)
  const { demoApiKey } = JSON.parse(await readFile(join(dataDir, 'secrets.json'), 'utf8')) as { demoApiKey: string }
  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${runtime.api}${path}`, { headers: { authorization: `Bearer ${demoApiKey}` } })
    assert.equal(response.status, 200, path)
    return (await response.json()) as T
  }
  const env = { DATA_DIR: dataDir }
  const rows = async () => (await api<{ items: unknown[] }>('/logins?limit=1000')).items.length
  await waitFor(async () => (await rows()) === 99, 30_000, 'the seeded samples')

  const generated = await cli('send', ['--generate', '60', '--repeat', '0.5', '--seed', 'embedded'], env)
  assert.equal(generated.code, 0, generated.stderr)
  assert.equal(generated.stdout.split(' in ')[0], `sent 60, failed 0, to ${runtime.queue.queueUrl}`)
  const samples = await cli('send', [SAMPLES], env)
  assert.equal(samples.code, 0, samples.stderr)
  await waitFor(async () => (await rows()) === 99 + 60 + 99, 30_000, 'the sent logins as rows')
  const duplicates = await api<{ items: { field: string; count: number }[] }>('/logins/duplicates?field=device_id&limit=1000')
  assert.ok(duplicates.items.some((d) => d.count >= 2), 'the repeated device ids are found')

  await waitFor(async () => (await cli('rejected', ['list'], env)).stdout.trim().split('\n').filter(Boolean).length === 2, 30_000, 'two rejections')
  const list = await cli('rejected', ['list'], env)
  assert.equal(list.code, 0, list.stderr)
  for (const line of list.stdout.trim().split('\n')) {
    const row = JSON.parse(line) as Record<string, unknown>
    assert.deepEqual(Object.keys(row).sort(), ['id', 'message_id', 'reason', 'receive_count', 'rejected_at', 'resubmitted_at'])
    assert.equal(row.reason, 'user_id is required')
  }
  const dry = await cli('rejected', ['resubmit', '--dry-run'], env)
  assert.equal(dry.code, 0, dry.stderr)
  assert.deepEqual(JSON.parse(dry.stdout), { resubmitted: 2, unreadable: 0, dryRun: true })
  const audit = await api<{ items: { action: string; key_name: string }[] }>('/audit?action=rejected.resubmit')
  assert.deepEqual(audit.items.map((a) => [a.action, a.key_name]), [['rejected.resubmit', 'demo']], 'the resubmission through the API is audited')

  const pid = String(runtime.pid)
  for (const [name, args] of [['migrate', []], ['rotate-keys', ['--vault']], ['retention', ['--days', '30', '--dry-run']]] as const) {
    const run = await cli(name, [...args], env)
    assertOneLine(run, 1, new RegExp(`^login-ingest ${name}: DATA_DIR .* is in use by process ${pid} \\(npm start, since .*\\): stop it first`), `${name} while the service runs`)
  }

  // Once the service is gone, the tools open DATA_DIR's database themselves.
  service.kill('SIGTERM')
  assert.equal((await service.exit).code, 0)
  const direct = await cli('rejected', ['list', '--all'], env)
  assert.equal(direct.code, 0, direct.stderr)
  assert.equal(direct.stdout.trim().split('\n').length, 2)
  assert.deepEqual(direct.stdout, list.stdout, 'the same listing directly as through the API')
  const migrated = await cli('migrate', [], env)
  assert.equal(migrated.code, 0, migrated.stderr)
  assert.equal(migrated.stdout, 'migrations: nothing to apply\n')
  assertOneLine(await cli('send', ['--generate', '1'], env), 1, /no queue: SQS_QUEUE_URL is not set and no service/, 'send without a service')
})

test('database tools on embedded defaults without a service: an empty DATA_DIR is refused, migrate creates it', async (t) => {
  const dataDir = await tempDir(t)
  const env = { DATA_DIR: join(dataDir, 'data') }
  assertOneLine(await cli('rejected', ['list'], env), 1, /has no embedded database yet: start the service once \(npm start\), or set DATABASE_URL\n$/, 'rejected list on an empty DATA_DIR')
  const migrated = await cli('migrate', [], env)
  assert.equal(migrated.code, 0, migrated.stderr)
  assert.match(migrated.stdout, /^migrations applied: 001_ingestion_core/)
  const list = await cli('rejected', ['list'], env)
  assert.equal(list.code, 0, list.stderr)
  assert.equal(list.stdout, '')

  // npm run partitions: the months migration 011 made (this one and the next) and the default partition.
  const partitions = await cli('partitions', [], env)
  assert.equal(partitions.code, 0, partitions.stderr)
  const months = (JSON.parse(partitions.stdout) as { name: string; month: string | null }[]).map((p) => p.month)
  const now = new Date()
  const thisMonth = now.toISOString().slice(0, 7)
  const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString().slice(0, 7)
  assert.deepEqual(months, [thisMonth, next, null])
  assertOneLine(await cli('partitions', ['--detach', thisMonth], env), 1, /^login-ingest partitions: refusing to detach .*: only months that have ended can be detached/, 'the current month')
  assertOneLine(await cli('partitions', ['--detach', '2026-13'], env), 2, /^login-ingest partitions: --detach takes a month as YYYY-MM/, 'a bad month')
  assertOneLine(await cli('partitions', ['--drop'], env), 2, /^login-ingest partitions: --drop and --lock-timeout-ms go with --detach/, '--drop alone')
})
