import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import type { TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import postgres, { type Sql } from 'postgres'
import { buildApp, loggerOptions } from '../src/app.ts'
import { SCOPES, apiKeyEntry, generateApiKey, parseApiKeys, type Scope } from '../src/auth/api-keys.ts'
import { loadConfig, type Config } from '../src/config.ts'
import { createSql } from '../src/db/sql.ts'
import { startEmbeddedDatabase } from '../src/embedded/database.ts'
import { startEmbeddedQueue, type EmbeddedQueue } from '../src/embedded/queue.ts'
import { LoginQueue } from '../src/ingest/queue.ts'
import { parseKeyring, type Keyring } from '../src/pii/keys.ts'
import { parseIpPrefixKeys } from '../src/pii/ip-prefix.ts'
import { prepareDatabase } from '../src/prepare.ts'
import { buildServices, type Services } from '../src/services.ts'

/** Set: tests run against that PostgreSQL server, each file in a database of its own. Unset: PGlite. */
export const SERVER_URL = process.env.DATABASE_URL

/** Tests that need several sessions or processes run only against a real server. */
export const needsServer = SERVER_URL === undefined
  ? 'needs a real PostgreSQL server (DATABASE_URL): PGlite serves one session; CI runs this test in its server pass'
  : false

export interface TestDatabase {
  url: string
  sql: Sql
  /** true for a real server (many sessions), false for PGlite (one session) */
  server: boolean
}

/** A fresh, empty database for one test, dropped afterwards. */
export async function testDatabase(t: TestContext, options: { max?: number } = {}): Promise<TestDatabase> {
  if (SERVER_URL === undefined) {
    const embedded = await startEmbeddedDatabase()
    const sql = createSql({ url: embedded.url, max: 1, statementTimeoutMs: 0 })
    t.after(async () => {
      await sql.end({ timeout: 1 })
      await embedded.close()
    })
    return { url: embedded.url, sql, server: false }
  }
  const name = `li_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(SERVER_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`CREATE DATABASE ${name}`)
  const url = new URL(SERVER_URL)
  url.pathname = `/${name}`
  const sql = createSql({ url: url.toString(), max: options.max ?? 5, statementTimeoutMs: 0 })
  t.after(async () => {
    await sql.end({ timeout: 1 })
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end({ timeout: 1 })
  })
  return { url: url.toString(), sql, server: true }
}

/** An SQS emulator of the test's own, with login-queue and its DLQ. */
export async function testQueue(t: TestContext, options: { visibilityTimeoutSeconds?: number } = {}): Promise<EmbeddedQueue & { queue: LoginQueue }> {
  const embedded = await startEmbeddedQueue({ region: 'us-east-1', visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 30 })
  t.after(() => embedded.close())
  return { ...embedded, queue: new LoginQueue(embedded.client, embedded.queueUrl) }
}

export const randomKeyring = (id: string): string => `${id}:${randomBytes(32).toString('base64')}`

export interface TestKeys {
  MASK_KEYS: string
  VAULT_MASTER_KEYS: string
  mask: Keyring
  master: Keyring
  /** set: the IP_PREFIX_KEYS option is on */
  IP_PREFIX_KEYS?: string
  ipPrefix: Keyring | null
}

export function testKeys(mask = randomKeyring('k1'), master = randomKeyring('m1'), ipPrefix?: string): TestKeys {
  return {
    MASK_KEYS: mask,
    VAULT_MASTER_KEYS: master,
    mask: parseKeyring('MASK_KEYS', mask),
    master: parseKeyring('VAULT_MASTER_KEYS', master),
    ...(ipPrefix === undefined ? {} : { IP_PREFIX_KEYS: ipPrefix }),
    ipPrefix: ipPrefix === undefined ? null : parseIpPrefixKeys(ipPrefix),
  }
}

/** One API key per scope plus one with all of them; `keys.<scope>` is the bearer token. */
export function testApiKeys(): { API_KEYS: string; tokens: Record<Scope | 'all', string> } {
  const tokens = {} as Record<Scope | 'all', string>
  const entries: string[] = []
  for (const scope of SCOPES) {
    tokens[scope] = generateApiKey()
    entries.push(apiKeyEntry(scope.replace(':', '-'), [scope], tokens[scope]))
  }
  tokens.all = generateApiKey()
  entries.push(apiKeyEntry('all', [...SCOPES], tokens.all))
  return { API_KEYS: entries.join(';'), tokens }
}

/** Log lines of a test, as parsed JSON and as raw text (to search for leaked values). */
export interface CapturedLogs {
  lines: Record<string, unknown>[]
  text(): string
}

export function captureLogs(config: Config): { logger: pino.Logger; logs: CapturedLogs } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString('utf8'))
      done()
    },
  })
  const logger = pino({ ...(loggerOptions({ ...config, NODE_ENV: 'test' }) as pino.LoggerOptions), level: 'debug' }, stream)
  return {
    logger,
    logs: {
      get lines() {
        return chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
      },
      text: () => chunks.join(''),
    },
  }
}

export interface TestServices extends Services {
  keys: TestKeys
  db: TestDatabase
}

/** Migrated database + keys + pipeline on the given queue. */
export async function testServices(t: TestContext, queue: LoginQueue, options: { keys?: TestKeys; db?: TestDatabase; apiKeys?: string } = {}): Promise<TestServices> {
  const db = options.db ?? (await testDatabase(t))
  const keys = options.keys ?? testKeys()
  await prepareDatabase(db.sql, keys)
  const services = await buildServices({
    sql: db.sql,
    queue,
    secrets: { ...keys, apiKeys: parseApiKeys(options.apiKeys ?? testApiKeys().API_KEYS) },
    embedded: { database: !db.server, queue: null, demoApiKey: null },
  })
  return { ...services, keys, db }
}

export function testConfig(env: Record<string, string> = {}): Config {
  // The route tests make many failed authentications from one address; test/hardening.test.ts sets its own limit.
  return loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'debug', WORKER_ENABLED: 'false', SQS_WAIT_TIME_SECONDS: '1', AUTH_FAILURES_PER_MINUTE: '1000000', ...env })
}

/** The real app on the test's services, closed after the test. */
export async function build(
  t: TestContext,
  options: { env?: Record<string, string>; services?: TestServices; visibilityTimeoutSeconds?: number; keys?: TestKeys } = {},
): Promise<{ app: FastifyInstance; services: TestServices; logs: CapturedLogs; tokens: Record<Scope | 'all', string>; queue: EmbeddedQueue & { queue: LoginQueue } }> {
  const config = testConfig(options.env)
  const api = testApiKeys()
  const queue = await testQueue(t, options.visibilityTimeoutSeconds === undefined ? {} : { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds })
  const services = options.services ?? (await testServices(t, queue.queue, { apiKeys: api.API_KEYS, ...(options.keys ? { keys: options.keys } : {}) }))
  const { logger, logs } = captureLogs(config)
  const app = await buildApp({ config, services, logger })
  t.after(() => app.close())
  await app.ready()
  return { app, services, logs, tokens: api.tokens, queue }
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/**
 * Resolves once a session of this database waits on a lock in a statement whose text contains
 * `queryPart` (a test holding a row in another session sees its statement blocked there).
 */
export async function waitForLockWait(sql: Sql, queryPart: string, what: string): Promise<void> {
  for (let i = 0; ; i++) {
    const [waiting] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock' AND strpos(query, ${queryPart}) > 0 AND pid <> pg_backend_pid()`
    if ((waiting?.n ?? 0) > 0) return
    if (i >= 200) throw new Error(`${what}: no session waited on a lock within 5 s`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
