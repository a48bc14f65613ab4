import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Sql } from 'postgres'
import { buildApp } from '../src/app.ts'
import { createSql } from '../src/db/sql.ts'
import { EMBEDDED_QUEUE_NAME } from '../src/embedded/queue.ts'
import { captureLogs, testConfig, testDatabase, testQueue, testServices, waitFor, type CapturedLogs } from './helper.ts'
import { inspectQueue, sendMessages, testLogins } from './messages.ts'
import { startTcpProxy, targetOf, type TcpProxy } from './tcp-proxy.ts'

/*
 * The database goes away under a running service. The service's pool reaches the database
 * through a TCP proxy that the test cuts (connections reset, new ones refused) and restores.
 * On a real server the test keeps a direct connection of its own to look at the tables; PGlite
 * serves one session, so there every look goes through the service's pool once the proxy is back.
 * These tests run in both modes: the proxy fronts PGlite's socket as it fronts a real server.
 */

interface Readiness {
  status: string
  failing: string[]
  checks: Record<string, { ok: boolean; detail?: string }>
  queue: { status: string; lastError: { dependency: string } | null }
}

interface Harness {
  app: FastifyInstance
  proxy: TcpProxy
  /** the service's pool, through the proxy */
  sql: Sql
  /** a direct connection to the database, or null on PGlite (one session only) */
  direct: Sql | null
  queue: Awaited<ReturnType<typeof testQueue>>
  logs: CapturedLogs
}

/** Resolves when `promise` does or after `ms`, so one stuck close cannot hang the whole file. */
const bounded = (promise: Promise<unknown>, ms: number): Promise<unknown> =>
  Promise.race([promise.catch(() => {}), new Promise((resolve) => setTimeout(resolve, ms).unref())])

async function harness(t: TestContext, env: Record<string, string>): Promise<Harness> {
  // After-hooks run in the order they are registered: this one first, so the app stops before
  // its pool, the pool before the proxy, and all of them before the helpers drop the database.
  const parts: { app?: FastifyInstance; sql?: Sql; proxy?: TcpProxy } = {}
  t.after(async () => {
    await parts.proxy?.restore()
    await bounded(parts.app?.close() ?? Promise.resolve(), 10_000)
    await bounded(parts.sql?.end({ timeout: 1 }) ?? Promise.resolve(), 5_000)
    await parts.proxy?.close()
  })

  const queue = await testQueue(t, { visibilityTimeoutSeconds: Number(env.SQS_VISIBILITY_TIMEOUT_SECONDS ?? 30) })
  const db = await testDatabase(t, { max: 2 })
  if (!db.server) await db.sql.end({ timeout: 1 }) // PGlite: the one session is the service's
  const proxy = (parts.proxy = await startTcpProxy(targetOf(db.url)))
  const sql = (parts.sql = createSql({ url: proxy.via(db.url), max: db.server ? 2 : 1, statementTimeoutMs: 0 }))
  const services = await testServices(t, queue.queue, { db: { ...db, url: proxy.via(db.url), sql } })

  const config = testConfig(env)
  const { logger, logs } = captureLogs(config)
  const app = (parts.app = await buildApp({ config, services, logger }))
  await app.ready()
  return { app, proxy, sql, direct: db.server ? db.sql : null, queue, logs }
}

async function readyz(app: FastifyInstance): Promise<{ status: number; body: Readiness; ms: number }> {
  const started = performance.now()
  const response = await app.inject({ url: '/readyz' })
  return { status: response.statusCode, body: response.json<Readiness>(), ms: performance.now() - started }
}

test('database down while messages arrive: nothing is deleted, and every message is stored once when it is back', { timeout: 90_000 }, async (t) => {
  const { app, proxy, sql, direct, queue, logs } = await harness(t, {
    WORKER_ENABLED: 'true',
    WORKER_CONCURRENCY: '2',
    SQS_VISIBILITY_TIMEOUT_SECONDS: '5',
    SQS_WAIT_TIME_SECONDS: '1',
  })
  assert.equal((await readyz(app)).status, 200, 'ready before the outage')

  await proxy.cut()
  const logins = testLogins(30)
  const sent = await sendMessages(queue.client, queue.queueUrl, logins.map((l) => l.body))

  // Long enough for the worker to receive, fail, back off, and for the 5 s visibility to expire.
  await new Promise((resolve) => setTimeout(resolve, 6500))

  const depth = await queue.queue.depth()
  assert.equal(depth.visible + depth.inFlight, 30, 'no message was deleted while the database was down')
  const during = await inspectQueue(queue.endpoint, EMBEDDED_QUEUE_NAME)
  assert.equal(during.receiveCounts.size, 30)
  const received = [...during.receiveCounts.values()].filter((n) => n > 0)
  assert.ok(received.length > 0, 'the worker received messages during the outage (the failure path was exercised)')
  // After its first failure a poller probes the database instead of receiving: at most one
  // failed batch per poller and no message received twice, so an outage burns no receive counts
  // towards the dead-letter queue.
  assert.ok(received.length <= 20, `at most one failed batch per poller (${received.length} messages received)`)
  assert.ok(Math.max(...received) <= 1, `no message received again during the outage (max receive count ${Math.max(...received)})`)
  if (direct !== null) {
    const [row] = await direct<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`
    assert.equal(row?.n, 0, 'nothing stored while the database is unreachable')
  }

  const down = await readyz(app)
  assert.equal(down.status, 503)
  assert.ok(down.ms < 2500, `readyz answered in ${Math.round(down.ms)} ms`)
  assert.ok(down.body.failing.includes('database'), `failing names the database: ${JSON.stringify(down.body.failing)}`)
  assert.equal(down.body.checks.database?.ok, false)
  assert.equal(down.body.queue.lastError?.dependency, 'database', 'the worker tells a database failure from a queue failure')
  assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'liveness stays up: the process keeps serving')

  await proxy.restore()
  // postgres.js backs off its reconnects (up to 20 s) and the worker its polls (up to 30 s).
  await waitFor(async () => {
    const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`
    return (row?.n ?? 0) >= 30
  }, 60_000, 'all 30 messages stored after the database came back')
  await waitFor(async () => {
    const d = await queue.queue.depth()
    return d.visible === 0 && d.inFlight === 0
  }, 15_000, 'queue empty')

  const rows = await sql<{ message_id: string }[]>`SELECT message_id FROM user_logins ORDER BY message_id`
  assert.deepEqual(rows.map((r) => r.message_id), [...sent].sort(), 'exactly one row per message sent')
  const [counts] = await sql<{ vault: number; rejected: number }[]>`
    SELECT (SELECT count(*) FROM pii_vault)::int AS vault, (SELECT count(*) FROM rejected_messages)::int AS rejected`
  assert.deepEqual(counts, { vault: 30, rejected: 0 })
  const dlq = await inspectQueue(queue.endpoint, `${EMBEDDED_QUEUE_NAME}-dlq`)
  assert.equal(dlq.receiveCounts.size, 0, 'no message went to the dead-letter queue')

  await waitFor(async () => (await readyz(app)).status === 200, 10_000, 'ready again')

  const text = logs.text()
  assert.match(text, /database unavailable/, 'the outage was logged')
  for (const login of logins) {
    assert.ok(!text.includes(login.ip) && !text.includes(login.device_id), 'no raw PII in the logs of a failure')
  }
})

test('readiness answers 503 naming the database within a second when the database is cut or stalls', { timeout: 60_000 }, async (t) => {
  const { app, proxy } = await harness(t, { WORKER_ENABLED: 'false' })
  assert.equal((await readyz(app)).status, 200)

  await proxy.cut()
  for (let i = 0; i < 3; i++) {
    const cut = await readyz(app)
    assert.equal(cut.status, 503)
    assert.ok(cut.ms < 2500, `cut: answered in ${Math.round(cut.ms)} ms`)
    assert.ok(cut.body.failing.includes('database'), `cut: ${JSON.stringify(cut.body)}`)
    assert.equal(cut.body.status, 'not ready')
  }

  // A database that keeps the connection open but never answers must not make the probe hang.
  await proxy.restore()
  await waitFor(async () => (await readyz(app)).status === 200, 30_000, 'ready after restore')
  proxy.stall()
  const stalled = await readyz(app)
  assert.equal(stalled.status, 503)
  assert.ok(stalled.ms < 2500, `stalled: answered in ${Math.round(stalled.ms)} ms`)
  assert.ok(stalled.body.failing.includes('database'), `stalled: ${JSON.stringify(stalled.body)}`)
  assert.match(stalled.body.checks.database?.detail ?? '', /no answer within/)
  await proxy.restore()
  await waitFor(async () => (await readyz(app)).status === 200, 10_000, 'ready after the stall ends')
})

/*
 * Known driver bug, kept as a TODO test so it shows in every run and turns green when fixed:
 * postgres.js 3.4.9 clears its pending-write timer on close without resetting it. A query that
 * reaches a connection between its socket's error and close events (a busy service, or
 * postgres.js itself: the ROLLBACK after a failed sql.begin) leaves that connection unable to
 * send: every later connection attempt on it ends in CONNECT_TIMEOUT (5 s) even though the
 * database is back, until about 1 KiB of unsent start-up messages has piled up (about a minute).
 * With one connection (PGlite) the whole service stays cut off from its database meanwhile.
 * Upstream: porsager/postgres PRs #1209 and #1215 (open when this was written).
 */
test('a connection reset during a transaction leaves the pool usable once the database is back', {
  timeout: 60_000,
  todo: 'postgres.js 3.4.9 bug: a connection reset during a transaction stays unusable for about a minute (nextWriteTimer left set)',
}, async (t) => {
  const db = await testDatabase(t)
  if (!db.server) await db.sql.end({ timeout: 1 })
  const proxy = await startTcpProxy(targetOf(db.url))
  const sql = createSql({ url: proxy.via(db.url), max: 1, statementTimeoutMs: 0 })
  t.after(async () => {
    await bounded(sql.end({ timeout: 1 }), 5_000)
    await proxy.close()
  })
  // The database resets the connection while a transaction is open; postgres.js sends its
  // ROLLBACK on the failing connection.
  await assert.rejects(sql.begin(async (tx) => {
    await tx`SELECT 1`
    void proxy.cut(0)
    await tx`SELECT 2`
  }))
  await proxy.restore()
  const answer = await Promise.race([
    sql`SELECT 1 AS ok`.then(() => 'answered', (error: Error) => `failed: ${error.message}`),
    new Promise<string>((resolve) => setTimeout(() => resolve('no answer within 8 s'), 8000).unref()),
  ])
  assert.equal(answer, 'answered')
})
