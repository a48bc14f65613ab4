import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { test, type TestContext } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildApp } from '../src/app.ts'
import { sendBodies } from '../src/embedded/samples.ts'
import { applyRetention, type RetentionReport } from '../src/pii/erasure.ts'
import { KeyMismatchError, verifyKeyFingerprints } from '../src/pii/key-registry.ts'
import { parseKeyring } from '../src/pii/keys.ts'
import { MaskKeyError } from '../src/pii/mask-keys.ts'
import { retireMaskKey, retireMasterKey } from '../src/pii/rotation.ts'
import { Vault, keyringProvider, loginAad, open, rejectionAad } from '../src/pii/vault.ts'
import {
  build, captureLogs, needsServer, randomKeyring, testApiKeys, testConfig, testKeys, testQueue, testServices, type TestServices,
} from './helper.ts'
import { loginRecord, receiveMessages, type LoginRecord } from './ingest-helpers.ts'
import type { AuditRecord } from '../src/audit/store.ts'

/*
 * The PII lifecycle on the real app, pipeline, database (PGlite, or the server of
 * DATABASE_URL) and SQS emulator: erasure by crypto-shredding through DELETE /users/{id}/pii,
 * retention, master key rotation, and failures midway. One app and one database serve every
 * subtest (a PGlite start costs seconds); the subtests run in order and build on each other,
 * so each one counts only what it made, and the master key rotation comes last.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const REASON = 'DSR-2026-0042 erasure request'
const DAY = 86_400_000

/** One login as sent, with where it ended up. */
interface Login {
  record: LoginRecord
  sentAt: Date
  messageId: string
  rowId: string
}

/** One rejected message as sent. */
interface Rejected {
  body: string
  sentAt: Date
  messageId: string
}

interface VaultRow {
  login_id: string
  message_id: string
  data_key_id: string | null
  ciphertext: Buffer
}

interface RejectedRow {
  message_id: string
  data_key_id: string | null
  body_ciphertext: Buffer
}

interface KeyRow {
  id: string
  subject: string
  period: string
  master_key_id: string
  wrapped_key: Buffer
}

type AuditRow = Pick<AuditRecord, 'action' | 'key_name' | 'target' | 'reason' | 'status' | 'outcome'>

interface ErasureBody {
  user_id: string
  data_keys_destroyed: number
  originals_erased: number
  rejected_bodies_erased: number
  rows_deleted: number
}

/** The UTC noon of day 10 of the month `n` months before `from` (0: this month). */
function monthsBefore(from: Date, n: number): Date {
  return new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() - n, 10, 12))
}

/**
 * Sends the bodies to the services' queue, receives them and runs them through the real
 * pipeline with the SQS SentTimestamp each was given (so they land in chosen months, under
 * different data keys), then deletes them as the worker does. Returns message id by body.
 */
async function ingestAt(services: TestServices, items: readonly { body: string; sentAt: Date }[]): Promise<Map<string, string>> {
  const sentAt = new Map(items.map((item) => [item.body, item.sentAt]))
  assert.equal(sentAt.size, items.length, 'bodies are distinct')
  await sendBodies(services.queue.client, services.queue.url, items.map((item) => item.body))
  const ids = new Map<string, string>()
  while (ids.size < items.length) {
    const batch = await receiveMessages(services.queue, Math.min(10, items.length - ids.size))
    const dated = batch.map((message) => {
      const at = sentAt.get(message.body)
      assert.ok(at, 'a message this call sent')
      return { ...message, sentAt: at }
    })
    const outcome = await services.pipeline.process(dated)
    assert.equal(outcome.stored.length, dated.length, 'the whole batch was committed')
    assert.deepEqual((await services.queue.delete(outcome.stored)).failed, [])
    for (const message of dated) ids.set(message.body, message.messageId)
  }
  assert.deepEqual(await services.queue.depth(), { visible: 0, inFlight: 0 }, 'the queue is left empty')
  return ids
}

/** A client of one app: the PII routes, and the tables behind them. */
function lifecycle(app: FastifyInstance, services: TestServices, tokens: Record<string, string>) {
  const { sql } = services
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

  const ingest = async (logins: readonly { record: LoginRecord; sentAt: Date }[], rejected: readonly { body: string; sentAt: Date }[] = []) => {
    const items = [...logins.map((l) => ({ body: JSON.stringify(l.record), sentAt: l.sentAt })), ...rejected]
    const ids = await ingestAt(services, items)
    const stored: Login[] = []
    for (const login of logins) {
      const messageId = ids.get(JSON.stringify(login.record)) as string
      const [row] = await sql<{ id: string }[]>`SELECT id::text AS id FROM user_logins WHERE message_id = ${messageId}`
      assert.ok(row, 'a valid login became a row')
      stored.push({ ...login, messageId, rowId: row.id })
    }
    const refused: Rejected[] = []
    for (const item of rejected) {
      const messageId = ids.get(item.body) as string
      const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM rejected_messages WHERE message_id = ${messageId}`
      assert.equal(row?.n, 1, 'an invalid message became a rejection')
      refused.push({ ...item, messageId })
    }
    return { logins: stored, rejected: refused }
  }

  const readPii = (login: Login): Promise<LightMyRequestResponse> =>
    app.inject({ url: `/logins/${login.rowId}/pii`, headers: { ...bearer(tokens['pii:read'] as string), 'x-access-reason': 'SEC-77 lifecycle check' } })

  const expectReadable = async (logins: readonly Login[], what: string) => {
    for (const login of logins) {
      const response = await readPii(login)
      assert.equal(response.statusCode, 200, `${what}: row ${login.rowId} is readable`)
      assert.deepEqual(response.json(), { id: login.rowId, ip: login.record.ip, device_id: login.record.device_id }, `${what}: the right originals`)
    }
  }

  const expectGone = async (logins: readonly Login[], what: string) => {
    for (const login of logins) {
      const response = await readPii(login)
      assert.equal(response.statusCode, 410, `${what}: row ${login.rowId} answers 410`)
      assert.equal(response.json<{ error: string }>().error, 'Gone')
      for (const value of [login.record.ip, login.record.device_id]) assert.ok(!response.body.includes(value))
    }
  }

  const erase = (userId: string, options: { query?: string; headers?: Record<string, string> } = {}) =>
    app.inject({
      method: 'DELETE',
      url: `/users/${encodeURIComponent(userId)}/pii${options.query ?? ''}`,
      headers: options.headers ?? { ...bearer(tokens['pii:erase'] as string), 'x-access-reason': REASON },
    })

  const vaultRows = async (logins: readonly Login[]) => [...await sql<VaultRow[]>`
    SELECT v.login_id::text AS login_id, l.message_id, v.data_key_id::text AS data_key_id, v.ciphertext
    FROM pii_vault v JOIN user_logins l ON l.id = v.login_id
    WHERE v.login_id = ANY(${sql.array(logins.map((l) => l.rowId))}::bigint[])
    ORDER BY v.login_id`]

  const rejectedRows = async (rejected: readonly Rejected[]) => [...await sql<RejectedRow[]>`
    SELECT message_id, data_key_id::text AS data_key_id, body_ciphertext FROM rejected_messages
    WHERE message_id = ANY(${sql.array(rejected.map((r) => r.messageId))}::text[]) ORDER BY message_id`]

  const keysOf = async (subject: string) => [...await sql<KeyRow[]>`
    SELECT id::text AS id, subject, to_char(period, 'YYYY-MM-DD') AS period, master_key_id, wrapped_key
    FROM pii_data_keys WHERE subject = ${subject} ORDER BY id`]

  const maskedRows = async (userId: string) => [...await sql<{ id: string; masked_ip: string | null; masked_device_id: string | null; mask_key_id: string | null }[]>`
    SELECT id::text AS id, masked_ip, masked_device_id, mask_key_id FROM user_logins WHERE user_id = ${userId} ORDER BY id`]

  const lastAuditId = async (): Promise<string> => {
    const [row] = await sql<{ id: string }[]>`SELECT coalesce(max(id), 0)::text AS id FROM audit_log`
    return row?.id ?? '0'
  }
  const auditSince = async (id: string) => [...await sql<AuditRow[]>`
    SELECT action, key_name, target, reason, status, outcome FROM audit_log WHERE id > ${id} ORDER BY id`]

  return { sql, bearer, ingest, readPii, expectReadable, expectGone, erase, vaultRows, rejectedRows, keysOf, maskedRows, lastAuditId, auditSince }
}

/** Another app on the same database, configured with other keys (as after a key rotation). */
async function appWithKeys(t: TestContext, services: TestServices, keys: ReturnType<typeof testKeys>) {
  const api = testApiKeys()
  const queue = await testQueue(t)
  const other = await testServices(t, queue.queue, { db: services.db, keys, apiKeys: api.API_KEYS })
  const config = testConfig()
  const app = await buildApp({ config, services: other, logger: captureLogs(config).logger })
  t.after(() => app.close())
  await app.ready()
  return { app, services: other, tokens: api.tokens }
}

test('the PII lifecycle: erasure, retention, master key rotation', async (t) => {
  const { app, services, tokens, logs } = await build(t, { env: { RATE_LIMIT_PER_MINUTE: '100000' } })
  const h = lifecycle(app, services, tokens)
  const { sql } = h
  const now = new Date()

  // Users A and B, in several months (so several data keys each), each with a rejected message
  // whose body names them: it fails validation (over-long device_type) and is kept encrypted
  // under their data key.
  const userA = randomUUID()
  const userB = randomUUID()
  const a = await h.ingest(
    [0, 0, 1, 2].map((n) => ({ record: loginRecord({ user_id: userA }), sentAt: n === 0 ? now : monthsBefore(now, n) })),
    [{ body: JSON.stringify(loginRecord({ user_id: userA, device_type: 'd'.repeat(40) })), sentAt: now }],
  )
  const b = await h.ingest(
    [0, 1, 1].map((n) => ({ record: loginRecord({ user_id: userB }), sentAt: n === 0 ? now : monthsBefore(now, n) })),
    [{ body: JSON.stringify(loginRecord({ user_id: userB, device_type: 'e'.repeat(40) })), sentAt: monthsBefore(now, 1) }],
  )
  const bKeys = await h.keysOf(userB)
  const bVault = await h.vaultRows(b.logins)
  const bRejected = await h.rejectedRows(b.rejected)

  /** B is untouched: the same key rows, the same ciphertexts, readable originals and rejected body. */
  const expectBUntouched = async (what: string) => {
    assert.deepEqual(await h.keysOf(userB), bKeys, `${what}: B's data keys are untouched`)
    assert.deepEqual(await h.vaultRows(b.logins), bVault, `${what}: B's ciphertexts are untouched`)
    assert.deepEqual(await h.rejectedRows(b.rejected), bRejected, `${what}: B's rejected body is untouched`)
    await h.expectReadable(b.logins, `${what}: B`)
    const [rejected] = bRejected
    assert.ok(rejected)
    const body = await services.vault.open(rejected.data_key_id, rejected.body_ciphertext, rejectionAad(rejected.message_id))
    assert.equal(body?.toString('utf8'), b.rejected[0]?.body, `${what}: B's rejected body still decrypts`)
  }

  await t.test('the fixtures: A and B have several data keys, readable originals and an encrypted rejected body', async () => {
    assert.equal((await h.keysOf(userA)).length, 3, "A: this month's, last month's and the month before's")
    assert.equal(bKeys.length, 2)
    assert.ok(bKeys.every((k) => k.master_key_id === 'm1'))
    await h.expectReadable([...a.logins, ...b.logins], 'before any erasure')
    const [rejectedA] = await h.rejectedRows(a.rejected)
    assert.ok(rejectedA?.data_key_id, "A's rejected body is under one of A's data keys")
    assert.ok((await h.keysOf(userA)).some((k) => k.id === rejectedA.data_key_id))
    await expectBUntouched('fixtures')
  })

  await t.test('DELETE /users/{user_id}/pii refuses without a key, an unknown key, the scope, a reason or with unknown parameters; each refusal is audited and erases nothing', async () => {
    const pii = { 'x-access-reason': REASON }
    const erasers = h.bearer(tokens['pii:erase'] as string)
    const cases: { what: string; status: number; key: string | null; reason: string | null; options: Parameters<typeof h.erase>[1] }[] = [
      { what: 'no key', status: 401, key: null, reason: REASON, options: { headers: pii } },
      { what: 'unknown key', status: 401, key: null, reason: REASON, options: { headers: { ...pii, ...h.bearer(`lik_${randomBytes(32).toString('base64url')}`) } } },
      { what: 'a key in the wrong scheme', status: 401, key: null, reason: REASON, options: { headers: { ...pii, authorization: `Basic ${tokens['pii:erase']}` } } },
      ...(['logins:read', 'ingest:run', 'pii:read', 'audit:read'] as const).map((scope) => ({
        what: `a ${scope} key`, status: 403, key: scope.replace(':', '-'), reason: REASON, options: { headers: { ...pii, ...h.bearer(tokens[scope] as string) } },
      })),
      { what: 'no reason', status: 400, key: 'pii-erase', reason: null, options: { headers: erasers } },
      { what: 'a too short reason', status: 400, key: 'pii-erase', reason: 'abc', options: { headers: { ...erasers, 'x-access-reason': 'abc' } } },
      { what: 'an unknown query parameter', status: 400, key: 'pii-erase', reason: REASON, options: { query: '?force=1' } },
      { what: 'an unknown rows value', status: 400, key: 'pii-erase', reason: REASON, options: { query: '?rows=purge' } },
    ]
    for (const c of cases) {
      const before = await h.lastAuditId()
      const response = await h.erase(userB, c.options)
      assert.equal(response.statusCode, c.status, c.what)
      if (c.status === 401) assert.equal(response.headers['www-authenticate'], 'Bearer', c.what)
      if (c.status === 403) assert.match(response.json<{ message: string }>().message, /pii:erase/, c.what)
      if (c.status === 400) assert.match(response.json<{ message: string }>().message, c.what.includes('reason') ? /x-access-reason/ : /force|rows/, c.what)
      assert.equal(response.json<{ statusCode: number }>().statusCode, c.status)
      const outcome = { 400: 'bad-request', 401: 'unauthenticated', 403: 'forbidden' }[c.status]
      assert.deepEqual(
        (await h.auditSince(before)),
        [{ action: 'pii.erase', key_name: c.key, target: userB, reason: c.reason, status: c.status, outcome }],
        `${c.what}: one audit row`,
      )
    }
    // A user id longer than the column is refused with a 400 too (and audited, cut to the column's 128 characters, as PostgreSQL counts them).
    for (const long of ['u'.repeat(129), 'v'.repeat(300), '\u{1F600}'.repeat(129)]) {
      const before = await h.lastAuditId()
      const response = await h.erase(long)
      assert.equal(response.statusCode, 400, `a user id of ${[...long].length} characters`)
      assert.match(response.json<{ message: string }>().message, /user_id/)
      assert.deepEqual((await h.auditSince(before)).map((r) => [r.status, r.target]), [[400, [...long].slice(0, 128).join('')]])
    }
    await expectBUntouched('after the refused calls')
  })

  await t.test("erasing A destroys A's data keys and wipes A's ciphertexts; A's masked rows stay; B is untouched", async () => {
    // What a backup would have: A's ciphertexts and key ids as they were.
    const backup = await h.vaultRows(a.logins)
    const [backupRejected] = await h.rejectedRows(a.rejected)
    assert.ok(backupRejected)
    assert.equal(backup.length, 4)
    for (const row of backup) {
      const plain = await services.vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id))
      const login = a.logins.find((l) => l.rowId === row.login_id)
      assert.deepEqual(JSON.parse(plain?.toString('utf8') ?? 'null'), { ip: login?.record.ip, device_id: login?.record.device_id }, 'the backup decrypts before erasure')
    }
    const masksBefore = await h.maskedRows(userA)

    const before = await h.lastAuditId()
    const response = await h.erase(userA)
    assert.equal(response.statusCode, 200, response.body)
    assert.equal(response.headers['cache-control'], 'no-store')
    assert.deepEqual(response.json<ErasureBody>(), {
      user_id: userA, data_keys_destroyed: 3, originals_erased: 4, rejected_bodies_erased: 1, rows_deleted: 0,
    })
    assert.deepEqual((await h.auditSince(before)), [
      { action: 'pii.erase', key_name: 'pii-erase', target: userA, reason: REASON, status: 200, outcome: 'allowed' },
    ])

    // No route gives A's originals back, and the refusals are audited.
    const beforeReads = await h.lastAuditId()
    await h.expectGone(a.logins, 'after erasure')
    assert.deepEqual(
      (await h.auditSince(beforeReads)).map((r) => ({ ...r })),
      a.logins.map((l) => ({ action: 'pii.read', key_name: 'pii-read', target: l.rowId, reason: 'SEC-77 lifecycle check', status: 410, outcome: 'erased' })),
    )

    // The tables: no key row of A's, A's vault rows and rejected body wiped and detached.
    assert.deepEqual((await h.keysOf(userA)), [])
    const vault = await h.vaultRows(a.logins)
    assert.equal(vault.length, 4, 'the vault rows remain, empty (so the PII route can say 410)')
    for (const row of vault) {
      assert.equal(row.data_key_id, null)
      assert.equal(row.ciphertext.length, 0)
      assert.equal(await services.vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id)), null)
    }
    assert.deepEqual((await h.rejectedRows(a.rejected)), [{ message_id: backupRejected.message_id, data_key_id: null, body_ciphertext: Buffer.alloc(0) }])

    // Even the backed-up ciphertexts cannot be decrypted with the master key: their data keys
    // are gone, and no data key left in the table opens them.
    for (const row of backup) {
      assert.equal(await services.vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id)), null, 'the data key is destroyed')
    }
    assert.equal(await services.vault.open(backupRejected.data_key_id, backupRejected.body_ciphertext, rejectionAad(backupRejected.message_id)), null)
    const remaining = await sql<{ id: string }[]>`SELECT id::text AS id FROM pii_data_keys`
    const unwrapped = await services.vault.unwrapDataKeys(remaining.map((r) => r.id))
    assert.equal(unwrapped.size, remaining.length)
    assert.ok(unwrapped.size >= bKeys.length)
    for (const key of unwrapped.values()) {
      for (const row of backup) assert.throws(() => open(key, row.ciphertext, loginAad(row.message_id)))
      assert.throws(() => open(key, backupRejected.body_ciphertext, rejectionAad(backupRejected.message_id)))
    }

    // A's masked rows stay as pseudonymous analytics, masks unchanged, and are still served.
    const masksAfter = await h.maskedRows(userA)
    assert.deepEqual(masksAfter, masksBefore)
    assert.equal(masksAfter.length, 4)
    assert.ok(masksAfter.every((r) => r.masked_ip !== null && r.masked_device_id !== null && r.mask_key_id !== null))
    const listed = await app.inject({ url: `/logins?user_id=${userA}`, headers: h.bearer(tokens['logins:read'] as string) })
    assert.equal(listed.statusCode, 200)
    assert.deepEqual(
      listed.json<{ items: { id: string; masked_ip: string }[] }>().items.map((i) => [i.id, i.masked_ip]).sort(),
      masksAfter.map((r) => [r.id, r.masked_ip]).sort(),
    )

    await expectBUntouched('after erasing A')

    // The erasure logged counts, never values.
    for (const login of [...a.logins, ...b.logins]) {
      for (const value of [login.record.ip, login.record.device_id]) assert.ok(!logs.text().includes(value), 'no original in the logs')
    }
    assert.ok(logs.lines.some((l) => l.msg === 'user PII erased' && l.originals_erased === 4))
  })

  await t.test('erasing A again is harmless: 200 with zero counts, audited again', async () => {
    const before = await h.lastAuditId()
    const again = await h.erase(userA)
    assert.equal(again.statusCode, 200)
    assert.deepEqual(again.json<ErasureBody>(), { user_id: userA, data_keys_destroyed: 0, originals_erased: 0, rejected_bodies_erased: 0, rows_deleted: 0 })
    assert.deepEqual((await h.auditSince(before)).map((r) => [r.action, r.target, r.status]), [['pii.erase', userA, 200]])
    // A user the service never saw: the same.
    const stranger = randomUUID()
    const none = await h.erase(stranger)
    assert.equal(none.statusCode, 200)
    assert.deepEqual(none.json<ErasureBody>(), { user_id: stranger, data_keys_destroyed: 0, originals_erased: 0, rejected_bodies_erased: 0, rows_deleted: 0 })
    assert.equal((await h.maskedRows(userA)).length, 4)
    await h.expectGone(a.logins, 'after the second erasure')
    await expectBUntouched('after erasing A twice')
  })

  await t.test('a user id as long as ingestion accepts (128 characters) can be erased', async () => {
    for (const userId of ['L'.repeat(128), `${'ж'.repeat(120)}-é-ü:/?#`]) {
      const long = await h.ingest([{ record: loginRecord({ user_id: userId }), sentAt: now }])
      await h.expectReadable(long.logins, `a user id of ${[...userId].length} characters`)
      const response = await h.erase(userId)
      assert.equal(response.statusCode, 200, response.body)
      assert.deepEqual(response.json<ErasureBody>(), { user_id: userId, data_keys_destroyed: 1, originals_erased: 1, rejected_bodies_erased: 0, rows_deleted: 0 })
      await h.expectGone(long.logins, `a user id of ${[...userId].length} characters`)
    }
  })

  await t.test('the audit route shows the erasures', async () => {
    const response = await app.inject({ url: '/audit?action=pii.erase&limit=100', headers: h.bearer(tokens['audit:read'] as string) })
    assert.equal(response.statusCode, 200)
    const items = response.json<{ items: AuditRow[] }>().items.filter((i) => i.target === userA)
    assert.deepEqual(
      items.map((i) => ({ action: i.action, key_name: i.key_name, target: i.target, reason: i.reason, status: i.status, outcome: i.outcome })),
      [1, 2].map(() => ({ action: 'pii.erase', key_name: 'pii-erase', target: userA, reason: REASON, status: 200, outcome: 'allowed' })),
    )
  })

  await t.test('rows=delete erases the originals and removes the rows; the vault rows go with them', async () => {
    const userE = randomUUID()
    const e = await h.ingest([0, 1].map((n) => ({ record: loginRecord({ user_id: userE }), sentAt: monthsBefore(now, n) })))
    await h.expectReadable(e.logins, 'E before')
    const response = await h.erase(userE, { query: '?rows=delete' })
    assert.equal(response.statusCode, 200, response.body)
    assert.deepEqual(response.json<ErasureBody>(), { user_id: userE, data_keys_destroyed: 2, originals_erased: 2, rejected_bodies_erased: 0, rows_deleted: 2 })
    assert.deepEqual([...(await h.maskedRows(userE))], [])
    assert.deepEqual([...(await h.vaultRows(e.logins))], [])
    const [orphans] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pii_vault WHERE login_id = ANY(${sql.array(e.logins.map((l) => l.rowId))}::bigint[])`
    assert.equal(orphans?.n, 0)
    assert.deepEqual([...(await h.keysOf(userE))], [])
    for (const login of e.logins) assert.equal((await h.readPii(login)).statusCode, 404)
    const again = await h.erase(userE, { query: '?rows=delete' })
    assert.deepEqual(again.json<ErasureBody>(), { user_id: userE, data_keys_destroyed: 0, originals_erased: 0, rejected_bodies_erased: 0, rows_deleted: 0 })
    // rows=delete on an already erased user removes the rows it kept.
    const userF = randomUUID()
    const f = await h.ingest([{ record: loginRecord({ user_id: userF }), sentAt: now }])
    assert.equal((await h.erase(userF)).statusCode, 200)
    assert.equal((await h.maskedRows(userF)).length, 1)
    const late = await h.erase(userF, { query: '?rows=delete' })
    assert.deepEqual(late.json<ErasureBody>(), { user_id: userF, data_keys_destroyed: 0, originals_erased: 0, rejected_bodies_erased: 0, rows_deleted: 1 })
    assert.equal((await h.readPii(f.logins[0] as Login)).statusCode, 404)
    await expectBUntouched('after erasing E and F')
  })

  await t.test('no audit row, no erasure: when the audit log refuses the write, DELETE answers 503 and erases nothing', async () => {
    await sql`ALTER TABLE audit_log ADD CONSTRAINT no_more CHECK (false) NOT VALID`
    let response: LightMyRequestResponse
    let audited: AuditRow[]
    const before = await h.lastAuditId()
    try {
      response = await h.erase(userB)
      audited = (await h.auditSince(before))
    } finally {
      await sql`ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS no_more`
    }
    assert.equal(response.statusCode, 503, response.body)
    assert.match(response.json<{ message: string }>().message, /nothing was erased/)
    assert.deepEqual(audited, [], 'the audit log took nothing')
    assert.ok(logs.lines.some((l) => l.msg === 'could not audit a refused call' && l.status === 503), 'the failed audit of the 503 is logged')
    await expectBUntouched('after the refused erasure')
  })

  await t.test('an erasure that fails midway changes nothing (one transaction), and succeeds when run again', async () => {
    const userG = randomUUID()
    const g = await h.ingest([0, 0, 1].map((n) => ({ record: loginRecord({ user_id: userG }), sentAt: n === 0 ? now : monthsBefore(now, n) })))
    const keys = await h.keysOf(userG)
    const vault = await h.vaultRows(g.logins)
    const masks = await h.maskedRows(userG)
    assert.equal(keys.length, 2)

    // Two points of failure: deleting the data keys (after the ciphertexts were wiped), and
    // deleting the rows with rows=delete (after the keys are gone), the very last step.
    const failures = [
      { table: 'pii_data_keys', query: '' },
      { table: 'user_logins', query: '?rows=delete' },
    ]
    await sql`CREATE FUNCTION pii_lifecycle_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated crash in %', TG_TABLE_NAME; END $$`
    try {
      for (const failure of failures) {
        await sql.unsafe(`CREATE TRIGGER pii_lifecycle_test_refuse BEFORE DELETE ON ${failure.table} FOR EACH ROW EXECUTE FUNCTION pii_lifecycle_test_refuse()`)
        try {
          const before = await h.lastAuditId()
          const response = await h.erase(userG, { query: failure.query })
          assert.equal(response.statusCode, 503, `${failure.table}: ${response.body}`)
          assert.deepEqual(
            (await h.auditSince(before)).map((r) => [r.action, r.target, r.status, r.outcome]),
            [['pii.erase', userG, 503, 'unavailable']],
            'the audit row of the erasure rolled back with it; the refusal is audited',
          )
        } finally {
          await sql.unsafe(`DROP TRIGGER IF EXISTS pii_lifecycle_test_refuse ON ${failure.table}`)
        }
        assert.deepEqual(await h.keysOf(userG), keys, `${failure.table}: the keys are back`)
        assert.deepEqual(await h.vaultRows(g.logins), vault, `${failure.table}: the ciphertexts are back`)
        assert.deepEqual(await h.maskedRows(userG), masks, `${failure.table}: the rows are there`)
        await h.expectReadable(g.logins, `after the failed erasure (${failure.table})`)
      }
    } finally {
      await sql`DROP FUNCTION IF EXISTS pii_lifecycle_test_refuse() CASCADE`
    }

    const response = await h.erase(userG)
    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json<ErasureBody>(), { user_id: userG, data_keys_destroyed: 2, originals_erased: 3, rejected_bodies_erased: 0, rows_deleted: 0 })
    await h.expectGone(g.logins, 'after the erasure that went through')
    await expectBUntouched('after erasing G')
  })

  // Retention: users C and D in January and February 2021 (long expired) and this month.
  const OLD_JAN = new Date(Date.UTC(2021, 0, 15, 12))
  const OLD_FEB = new Date(Date.UTC(2021, 1, 10, 12))
  const userC = randomUUID()
  const userD = randomUUID()
  let retention: Awaited<ReturnType<typeof h.ingest>> | undefined
  const byMonth = () => {
    assert.ok(retention, 'the retention fixtures were ingested')
    const at = (d: Date) => retention?.logins.filter((l) => l.sentAt === d) ?? []
    return { jan: at(OLD_JAN), feb: at(OLD_FEB), recent: at(now) }
  }
  const counts = (report: RetentionReport) => ({ data_keys: report.data_keys, originals: report.originals, rejected_bodies: report.rejected_bodies, dry_run: report.dry_run })
  /** `now` such that the cutoff is exactly `date` for `days`. */
  const nowFor = (date: string, days: number) => new Date(Date.parse(`${date}T00:00:00Z`) + days * DAY)

  await t.test('retention: a dry run counts what would go and changes nothing', async () => {
    retention = await h.ingest(
      [
        { record: loginRecord({ user_id: userC }), sentAt: OLD_JAN },
        { record: loginRecord({ user_id: userC }), sentAt: OLD_JAN },
        { record: loginRecord({ user_id: userD }), sentAt: OLD_JAN },
        { record: loginRecord({ user_id: userC }), sentAt: OLD_FEB },
        { record: loginRecord({ user_id: userC }), sentAt: now },
        { record: loginRecord({ user_id: userD }), sentAt: now },
      ],
      [{ body: JSON.stringify(loginRecord({ user_id: userC, device_type: 'f'.repeat(40) })), sentAt: OLD_JAN }],
    )
    const allKeys = async () => [...await sql<KeyRow[]>`SELECT id::text AS id, subject, to_char(period, 'YYYY-MM-DD') AS period, master_key_id, wrapped_key FROM pii_data_keys ORDER BY id`]
    const keysBefore = await allKeys()
    const vaultBefore = await h.vaultRows(retention.logins)

    // A month's keys go once the whole month is older than the limit: on 2021-01-31, January is not.
    assert.deepEqual(counts(await applyRetention(sql, { days: 30, now: nowFor('2021-01-31', 30), dryRun: true })), { data_keys: 0, originals: 0, rejected_bodies: 0, dry_run: true })
    const january = await applyRetention(sql, { days: 30, now: nowFor('2021-02-01', 30), dryRun: true })
    assert.equal(january.cutoff, '2021-02-01')
    assert.deepEqual(counts(january), { data_keys: 2, originals: 3, rejected_bodies: 1, dry_run: true })
    assert.deepEqual(counts(await applyRetention(sql, { days: 365, dryRun: true })), { data_keys: 3, originals: 4, rejected_bodies: 1, dry_run: true })

    assert.deepEqual(await allKeys(), keysBefore)
    assert.deepEqual(await h.vaultRows(retention.logins), vaultBefore)
    await h.expectReadable(retention.logins, 'after the dry runs')
  })

  await t.test('retention: the CLI dry run (npm run retention -- --dry-run --days N) reports the same and changes nothing', { skip: needsServer }, async () => {
    const expected = await applyRetention(sql, { days: 365, dryRun: true })
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/retention.ts', '--dry-run', '--days', '365'], {
      cwd: ROOT,
      env: { ...process.env, NODE_ENV: 'test', DATABASE_URL: services.db.url, PII_RETENTION_DAYS: '' },
      timeout: 60_000,
    })
    const lines = stdout.trim().split('\n')
    assert.equal(lines.length, 1, 'one JSON line')
    const report = JSON.parse(lines[0] as string) as RetentionReport
    assert.deepEqual(counts(report), { data_keys: 3, originals: 4, rejected_bodies: 1, dry_run: true })
    assert.equal(report.cutoff, expected.cutoff)
    await h.expectReadable(retention?.logins ?? [], 'after the CLI dry run')
    await assert.rejects(
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/retention.ts', '--dry-run', '--days', '0'], {
        cwd: ROOT, env: { ...process.env, DATABASE_URL: services.db.url }, timeout: 60_000,
      }),
      (error: { code?: number; stderr?: string }) => {
        assert.equal(error.code, 2, 'a wrong command line exits 2')
        assert.match(error.stderr ?? '', /^login-ingest retention: --days must be an integer from 1 to 36500\n$/)
        return true
      },
    )
  })

  await t.test('retention: old months lose their originals, newer ones keep them, the masked rows stay; running twice is harmless', async () => {
    const { jan, feb, recent } = byMonth()
    assert.deepEqual([jan.length, feb.length, recent.length], [3, 1, 2])
    const masks = [...(await h.maskedRows(userC)), ...(await h.maskedRows(userD))]

    const first = await applyRetention(sql, { days: 30, now: nowFor('2021-02-01', 30), dryRun: false })
    assert.deepEqual(counts(first), { data_keys: 2, originals: 3, rejected_bodies: 1, dry_run: false })
    await h.expectGone(jan, 'January after the first run')
    await h.expectReadable([...feb, ...recent], 'February and this month after the first run')
    assert.deepEqual([...(await h.keysOf(userD))].map((k) => k.period), [`${now.toISOString().slice(0, 7)}-01`])
    const [rejectedC] = await h.rejectedRows(retention?.rejected ?? [])
    assert.deepEqual({ ...rejectedC }, { message_id: retention?.rejected[0]?.messageId, data_key_id: null, body_ciphertext: Buffer.alloc(0) })
    assert.deepEqual(counts(await applyRetention(sql, { days: 30, now: nowFor('2021-02-01', 30), dryRun: false })), { data_keys: 0, originals: 0, rejected_bodies: 0, dry_run: false })

    const second = await applyRetention(sql, { days: 365, now, dryRun: false })
    assert.deepEqual(counts(second), { data_keys: 1, originals: 1, rejected_bodies: 0, dry_run: false })
    await h.expectGone([...jan, ...feb], 'old months after the second run')
    await h.expectReadable(recent, 'this month after the second run')
    assert.deepEqual(counts(await applyRetention(sql, { days: 365, now, dryRun: false })), { data_keys: 0, originals: 0, rejected_bodies: 0, dry_run: false })
    assert.deepEqual(counts(await applyRetention(sql, { days: 365, now, dryRun: true })), { data_keys: 0, originals: 0, rejected_bodies: 0, dry_run: true })

    assert.deepEqual([...(await h.maskedRows(userC)), ...(await h.maskedRows(userD))], masks, 'every masked row stays, masks unchanged')
    await expectBUntouched('after retention')
  })

  await t.test('retention that fails midway changes nothing, and succeeds when run again', async () => {
    const userH = randomUUID()
    const old = await h.ingest([3, 20].map((day) => ({ record: loginRecord({ user_id: userH }), sentAt: new Date(Date.UTC(2020, 5, day, 12)) })))
    const keys = await h.keysOf(userH)
    const vault = await h.vaultRows(old.logins)
    await sql`CREATE FUNCTION pii_lifecycle_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated crash in %', TG_TABLE_NAME; END $$`
    try {
      await sql`CREATE TRIGGER pii_lifecycle_test_refuse BEFORE DELETE ON pii_data_keys FOR EACH ROW EXECUTE FUNCTION pii_lifecycle_test_refuse()`
      await assert.rejects(applyRetention(sql, { days: 365, now, dryRun: false }), /simulated crash in pii_data_keys/)
    } finally {
      await sql`DROP FUNCTION IF EXISTS pii_lifecycle_test_refuse() CASCADE`
    }
    assert.deepEqual(await h.keysOf(userH), keys)
    assert.deepEqual(await h.vaultRows(old.logins), vault, 'the wiped ciphertexts are back')
    await h.expectReadable(old.logins, 'after the failed retention run')
    assert.deepEqual(counts(await applyRetention(sql, { days: 365, now, dryRun: false })), { data_keys: 1, originals: 2, rejected_bodies: 0, dry_run: false })
    await h.expectGone(old.logins, 'after the retention run that went through')
  })

  await t.test('master key rotation: data keys are re-wrapped under m2, originals still decrypt with m2 alone, m1 can then be retired', async (t) => {
    const { mask, VAULT_MASTER_KEYS: m1 } = services.keys
    const userR = randomUUID()
    const r = await h.ingest([0, 1, 2].map((n) => ({ record: loginRecord({ user_id: userR }), sentAt: monthsBefore(now, n) })))
    const allKeys = async () => [...await sql<KeyRow[]>`SELECT id::text AS id, subject, to_char(period, 'YYYY-MM-DD') AS period, master_key_id, wrapped_key FROM pii_data_keys ORDER BY id`]
    const before = await allKeys()
    assert.ok(before.length >= 5)
    assert.ok(before.every((k) => k.master_key_id === 'm1'))

    // Refused while m1 wraps any data key, and refused for the active key.
    await assert.rejects(retireMasterKey(sql, 'm1', 'm2'), (error: unknown) => {
      assert.ok(error instanceof MaskKeyError)
      assert.match(error.message, new RegExp(`master key m1 still wraps ${before.length} data keys`))
      return true
    })
    await assert.rejects(retireMasterKey(sql, 'm1', 'm1'), /is the active one/)
    const fingerprints = () => sql<{ kind: string; key_id: string }[]>`SELECT kind, key_id FROM key_fingerprints ORDER BY kind, key_id`
    assert.deepEqual((await fingerprints()).map((f) => `${f.kind}:${f.key_id}`), ['mask:k1', 'master:m1'])

    const m2 = randomKeyring('m2')
    const rotating = parseKeyring('VAULT_MASTER_KEYS', `${m2},${m1}`)
    const onlyM2 = parseKeyring('VAULT_MASTER_KEYS', m2)
    await verifyKeyFingerprints(sql, { mask, master: rotating })
    await assert.rejects(verifyKeyFingerprints(sql, { mask, master: onlyM2 }), KeyMismatchError, 'm1 cannot be dropped from the configuration yet')

    const vault = new Vault(sql, keyringProvider(rotating))
    let total = 0
    let batches = 0
    for (let n = await vault.rewrapDataKeys(2); n > 0; n = await vault.rewrapDataKeys(2)) {
      assert.ok(n <= 2)
      total += n
      batches += 1
    }
    assert.equal(total, before.length)
    assert.equal(batches, Math.ceil(before.length / 2))
    assert.equal(await vault.rewrapDataKeys(2), 0, 'a second run has nothing to do')

    const after = await allKeys()
    assert.deepEqual(after.map((k) => [k.id, k.subject, k.period]), before.map((k) => [k.id, k.subject, k.period]), 'the same key rows')
    assert.ok(after.every((k) => k.master_key_id === 'm2'), 'every data key is wrapped by m2')
    after.forEach((k, i) => assert.ok(!k.wrapped_key.equals(before[i]?.wrapped_key as Buffer), 'wrapped anew'))

    // Every original left in the vault decrypts with m2 alone; m1 alone opens nothing any more.
    const m2Vault = new Vault(sql, keyringProvider(onlyM2))
    const stored = await sql<VaultRow[]>`
      SELECT v.login_id::text AS login_id, l.message_id, v.data_key_id::text AS data_key_id, v.ciphertext
      FROM pii_vault v JOIN user_logins l ON l.id = v.login_id WHERE v.data_key_id IS NOT NULL ORDER BY v.login_id`
    assert.ok(stored.length >= 3 + b.logins.length)
    for (const row of stored) assert.ok(await m2Vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id)))
    for (const row of await h.vaultRows(r.logins)) {
      const login = r.logins.find((l) => l.rowId === row.login_id)
      const plain = await m2Vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id))
      assert.deepEqual(JSON.parse(plain?.toString('utf8') ?? 'null'), { ip: login?.record.ip, device_id: login?.record.device_id })
      await assert.rejects(services.vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id)), /master key m2 is not configured/)
    }

    // Now m1 can go; the service then starts with m2 alone and serves the originals.
    await retireMasterKey(sql, 'm1', 'm2')
    assert.deepEqual((await fingerprints()).map((f) => `${f.kind}:${f.key_id}`), ['mask:k1', 'master:m2'])
    await verifyKeyFingerprints(sql, { mask, master: onlyM2 })
    await assert.rejects(retireMaskKey(sql, mask.active.id), (error: unknown) => {
      assert.ok(error instanceof MaskKeyError)
      assert.match(error.message, /mask key k1 is in use \(current\)/)
      return true
    })
    assert.deepEqual((await fingerprints()).map((f) => `${f.kind}:${f.key_id}`), ['mask:k1', 'master:m2'], 'the mask key is kept')

    const rotated = await appWithKeys(t, services, testKeys(services.keys.MASK_KEYS, m2))
    const readers = lifecycle(rotated.app, rotated.services, rotated.tokens)
    await readers.expectReadable([...r.logins, ...b.logins], 'a service with m2 alone')
    await readers.expectGone(a.logins, 'a service with m2 alone, for A')
    const fresh = await readers.ingest([{ record: loginRecord({ user_id: userR }), sentAt: monthsBefore(now, 5) }])
    await readers.expectReadable(fresh.logins, 'a login ingested under m2')
    assert.ok((await allKeys()).every((k) => k.master_key_id === 'm2'))
  })
})
