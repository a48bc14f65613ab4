import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, test } from 'node:test'
import { ConfigError, EnvSchema, loadConfig, trustProxy } from '../src/config.ts'
import { testApiKeys, testKeys } from './helper.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Values that must never be echoed: each case's secret part. */
const SECRET_PASSWORD = `pw${randomBytes(8).toString('hex')}`
const SHORT_MASK_SECRET = randomBytes(16).toString('base64') // a real-looking key, too short
const BAD_MASTER_SECRET = `not*base64*${randomBytes(6).toString('hex')}`
const PASTED_API_KEY = `lik_${randomBytes(32).toString('base64url')}`

interface Case {
  name: string
  env: Record<string, string>
  variable: string
  /** text that must not appear in the output */
  secret?: string
}

const keys = testKeys()
const api = testApiKeys()

/** Each case starts a process (about 3 s of CPU with tsx), so this list is short; loadConfig's unit tests below cover the rest. */
const CASES: Case[] = [
  { name: 'PORT not a number', env: { PORT: 'abc' }, variable: 'PORT' },
  { name: 'WORKER_ENABLED not a boolean', env: { WORKER_ENABLED: 'maybe' }, variable: 'WORKER_ENABLED' },
  { name: 'DATABASE_URL not postgres', env: { DATABASE_URL: `mysql://app:${SECRET_PASSWORD}@db.internal/logins` }, variable: 'DATABASE_URL', secret: SECRET_PASSWORD },
  { name: 'LOG_LEVEL unknown', env: { LOG_LEVEL: 'loud' }, variable: 'LOG_LEVEL' },
  { name: 'MASK_KEYS key too short', env: { MASK_KEYS: `k1:${SHORT_MASK_SECRET}` }, variable: 'MASK_KEYS', secret: SHORT_MASK_SECRET },
  { name: 'VAULT_MASTER_KEYS not base64', env: { VAULT_MASTER_KEYS: `m1:${BAD_MASTER_SECRET}` }, variable: 'VAULT_MASTER_KEYS', secret: BAD_MASTER_SECRET },
  { name: 'API_KEYS garbage', env: { API_KEYS: 'garbage' }, variable: 'API_KEYS' },
  { name: 'API_KEYS with a raw key pasted instead of its hash', env: { API_KEYS: `ops:logins:read:${PASTED_API_KEY}` }, variable: 'API_KEYS', secret: PASTED_API_KEY },
  {
    name: 'production without DATABASE_URL',
    env: { NODE_ENV: 'production', SQS_QUEUE_URL: 'http://127.0.0.1:9/000000000000/login-queue', MASK_KEYS: keys.MASK_KEYS, VAULT_MASTER_KEYS: keys.VAULT_MASTER_KEYS, API_KEYS: api.API_KEYS },
    variable: 'DATABASE_URL',
    secret: keys.MASK_KEYS.split(':')[1] as string,
  },
]

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs the real server entry point with only the given environment (plus PATH and a temp DATA_DIR). */
async function runServer(t: { after(fn: () => unknown): void }, env: Record<string, string>): Promise<Exit> {
  const dataDir = await mkdtemp(join(tmpdir(), 'li-config-'))
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, NODE_ENV: 'test', DATA_DIR: dataDir, EMBEDDED_QUEUE_PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.after(() => child.kill('SIGKILL'))
    // A bad configuration must stop the process at once; one that starts is a failure.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

describe('a bad configuration stops the server with one line naming the variable', { concurrency: 4 }, () => {
  for (const c of CASES) {
    test(c.name, async (t) => {
      const exit = await runServer(t, c.env)
      assert.equal(exit.signal, null, `the process stopped by itself (it was still running after 60 s)\n${exit.stderr}`)
      assert.equal(exit.code, 1, `exit code 1; stderr:\n${exit.stderr}`)
      const lines = exit.stderr.split('\n').filter((l) => l.trim() !== '')
      assert.equal(lines.length, 1, `exactly one line on stderr:\n${exit.stderr}`)
      const [line] = lines as [string]
      assert.match(line, /^login-ingest: /)
      assert.ok(line.includes(c.variable), `the line names ${c.variable}: ${line}`)
      if (c.secret !== undefined) {
        assert.ok(!exit.stderr.includes(c.secret) && !exit.stdout.includes(c.secret), 'the secret value is not echoed')
      }
      assert.ok(!/\n\s+at /.test(exit.stderr), 'no stack trace')
    })
  }
})

test('loadConfig defaults: PORT 3000, HOST 127.0.0.1, worker enabled, development', () => {
  const config = loadConfig({})
  assert.equal(config.PORT, 3000)
  assert.equal(config.HOST, '127.0.0.1')
  assert.equal(config.WORKER_ENABLED, true)
  assert.equal(config.NODE_ENV, 'development')
  assert.equal(config.LOG_LEVEL, 'info')
  assert.equal(config.DATABASE_URL, undefined)
  assert.equal(config.SQS_QUEUE_URL, undefined)
  assert.ok(Object.isFrozen(config))
})

test('loadConfig converts the values users write', () => {
  const config = loadConfig({ PORT: ' 8080 ', WORKER_ENABLED: 'false', HOST: '0.0.0.0', LOG_LEVEL: 'warn', DATABASE_URL: '', SQS_WAIT_TIME_SECONDS: '0' })
  assert.equal(config.PORT, 8080)
  assert.equal(config.WORKER_ENABLED, false)
  assert.equal(config.HOST, '0.0.0.0')
  assert.equal(config.LOG_LEVEL, 'warn')
  assert.equal(config.DATABASE_URL, undefined, 'an empty value counts as unset')
  assert.equal(config.SQS_WAIT_TIME_SECONDS, 0)
  assert.equal(loadConfig({ WORKER_ENABLED: 'true' }).WORKER_ENABLED, true)
})

test('TRUST_PROXY: true, false, a number of hops, or addresses and CIDRs', () => {
  assert.equal(trustProxy(loadConfig({}).TRUST_PROXY), false)
  assert.equal(trustProxy(loadConfig({ TRUST_PROXY: 'true' }).TRUST_PROXY), true)
  assert.equal(trustProxy(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1, loopback' }).TRUST_PROXY), '10.0.0.0/8, 127.0.0.1, loopback')
  const hops = trustProxy(loadConfig({ TRUST_PROXY: '1' }).TRUST_PROXY)
  assert.ok(typeof hops === 'function')
  assert.deepEqual([hops('10.0.0.1', 0), hops('10.0.0.2', 1)], [true, false], 'one hop: the nearest proxy is trusted, the next address is the client')
})

test('loadConfig refuses a shutdown grace that cannot cover a long poll plus a commit, when the worker runs', () => {
  assert.throws(() => loadConfig({ SQS_WAIT_TIME_SECONDS: '20', SHUTDOWN_GRACE_MS: '20000' }), (error: unknown) => {
    assert.ok(error instanceof ConfigError)
    assert.equal(error.variable, 'SHUTDOWN_GRACE_MS')
    assert.match(error.message, /^SHUTDOWN_GRACE_MS: must be at least 25000 with SQS_WAIT_TIME_SECONDS=20/)
    return true
  })
  assert.equal(loadConfig({ SQS_WAIT_TIME_SECONDS: '20', SHUTDOWN_GRACE_MS: '25000' }).SHUTDOWN_GRACE_MS, 25_000, 'the defaults fit')
  assert.equal(loadConfig({ SQS_WAIT_TIME_SECONDS: '5', SHUTDOWN_GRACE_MS: '10000' }).SHUTDOWN_GRACE_MS, 10_000, 'a shorter wait allows a shorter grace')
  assert.equal(loadConfig({ WORKER_ENABLED: 'false', SHUTDOWN_GRACE_MS: '2000' }).SHUTDOWN_GRACE_MS, 2000, 'no worker, no long polls to wait for')
})

test('loadConfig names the variable of each bad value, and refuses integers that are not plain digits', () => {
  const bad: [string, string][] = [
    ['PORT', 'abc'], ['PORT', '1.5'], ['PORT', '1e3'], ['PORT', '0x10'], ['PORT', '-1'], ['PORT', '65536'],
    ['WORKER_CONCURRENCY', '2.7'], ['SQS_VISIBILITY_TIMEOUT_SECONDS', '4'], ['WORKER_ENABLED', 'maybe'],
    ['LOG_LEVEL', 'loud'], ['DATABASE_URL', 'mysql://x'], ['AWS_ENDPOINT_URL', 'localhost:4566'], ['NODE_ENV', 'prod'],
    ['SQS_QUEUE_URL', 'ftp://queue'], ['SHUTDOWN_GRACE_MS', '500'],
    ['HTTP_REQUEST_TIMEOUT_MS', '0'], ['AUDIT_REFUSAL_WINDOW_MS', '50'], ['AUTH_FAILURES_PER_MINUTE', '0'],
    ['AUDIT_REFUSALS_PER_WINDOW', '1e3'], ['TRUST_PROXY', 'yes'], ['TRUST_PROXY', '10.0.0.0/8; rm -rf'],
  ]
  for (const [variable, value] of bad) {
    assert.throws(() => loadConfig({ [variable]: value }), (error: unknown) => {
      assert.ok(error instanceof ConfigError, `${variable}=${value} gives a ConfigError`)
      assert.equal(error.variable, variable)
      assert.ok(error.message.startsWith(`${variable}: `), error.message)
      return true
    }, `${variable}=${value} is refused`)
  }
  assert.throws(() => loadConfig({ NODE_ENV: 'production' }), (error: unknown) => error instanceof ConfigError && error.variable === 'DATABASE_URL')
  assert.throws(() => loadConfig({ NODE_ENV: 'production', DATABASE_URL: ' ' }), (error: unknown) => error instanceof ConfigError && error.variable === 'DATABASE_URL', 'blank counts as missing')
  const production: Record<string, string> = { NODE_ENV: 'production', DATABASE_URL: 'postgres://db/x', SQS_QUEUE_URL: 'https://sqs.example/1/q', MASK_KEYS: keys.MASK_KEYS, VAULT_MASTER_KEYS: keys.VAULT_MASTER_KEYS, API_KEYS: api.API_KEYS }
  for (const name of ['SQS_QUEUE_URL', 'MASK_KEYS', 'VAULT_MASTER_KEYS', 'API_KEYS']) {
    const { [name]: _omitted, ...rest } = production
    assert.throws(() => loadConfig(rest), (error: unknown) => error instanceof ConfigError && error.variable === name, `production needs ${name}`)
  }
  assert.equal(loadConfig(production).NODE_ENV, 'production')
})

test('the README documents every variable the service reads', async () => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const missing = Object.keys(EnvSchema.properties).filter((name) => !readme.includes(`| \`${name}\` |`))
  assert.deepEqual(missing, [], 'each variable has a row in the configuration table')
})
