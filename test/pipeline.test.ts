import { randomUUID } from 'node:crypto'
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sendBodies } from '../src/embedded/samples.ts'
import { verifyKeyFingerprints, KeyMismatchError } from '../src/pii/key-registry.ts'
import { parseKeyring } from '../src/pii/keys.ts'
import { Vault, keyringProvider, loginAad, rejectionAad } from '../src/pii/vault.ts'
import { build, randomKeyring, testQueue, testServices, waitFor } from './helper.ts'
import { ingestBodies, loginRecord, receiveMessages, type LoginRecord } from './ingest-helpers.ts'

/*
 * The real pipeline on the real database (PGlite, or the server of DATABASE_URL) and the SQS
 * emulator. One database and one queue serve every subtest (a PGlite start costs seconds), so
 * each subtest looks only at its own messages and leaves the queue empty.
 */

interface VaultRow {
  message_id: string
  login_id: string
  data_key_id: string
  ciphertext: Buffer
}

test('the ingestion pipeline on the real database and queue', async (t) => {
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue)
  const { sql } = services

  const vaultRows = (messageIds: readonly string[]) => sql<VaultRow[]>`
    SELECT l.message_id, l.id::text AS login_id, v.data_key_id::text AS data_key_id, v.ciphertext
    FROM user_logins l JOIN pii_vault v ON v.login_id = l.id
    WHERE l.message_id = ANY(${sql.array([...messageIds])}::text[])
    ORDER BY l.id`
  const expectQueueEmpty = async (): Promise<void> => {
    assert.deepEqual(await queue.queue.depth(), { visible: 0, inFlight: 0 }, 'the queue is left empty')
  }

  await t.test('a message delivered twice (visibility timeout expired, not deleted) gives one row', async () => {
    const record = loginRecord()
    await sendBodies(queue.client, queue.queueUrl, [JSON.stringify(record)])

    const [first] = await receiveMessages(queue.queue, 1, { visibilityTimeoutSeconds: 1 })
    assert.ok(first)
    assert.equal(first.receiveCount, 1)
    const once = await services.pipeline.process([first])
    assert.deepEqual({ ...once, stored: once.stored.map((m) => m.messageId) }, { inserted: 1, duplicates: 0, rejected: 0, rejectedReasons: {}, stored: [first.messageId] })

    // Not deleted: invisible for now, back after its 1 s visibility timeout.
    assert.deepEqual(await queue.queue.receive({ maxMessages: 10, waitTimeSeconds: 0, visibilityTimeoutSeconds: 30 }), [])
    const [second] = await receiveMessages(queue.queue, 1, { visibilityTimeoutSeconds: 30, timeoutMs: 15_000 })
    assert.ok(second)
    assert.equal(second.messageId, first.messageId)
    assert.notEqual(second.receiptHandle, first.receiptHandle)
    assert.equal(second.receiveCount, 2)
    assert.equal(second.body, first.body)

    const twice = await services.pipeline.process([second])
    assert.deepEqual({ inserted: twice.inserted, duplicates: twice.duplicates, rejected: twice.rejected }, { inserted: 0, duplicates: 1, rejected: 0 })
    assert.deepEqual(twice.stored.map((m) => m.receiptHandle), [second.receiptHandle], 'the duplicate may be deleted')

    const rows = await sql<{ user_id: string; n: number }[]>`
      SELECT user_id, count(*) OVER ()::int AS n FROM user_logins WHERE message_id = ${first.messageId}`
    assert.deepEqual([...rows], [{ user_id: record.user_id, n: 1 }])
    assert.equal((await vaultRows([first.messageId])).length, 1, 'one vault row too')
    const [{ n: byUser } = { n: -1 }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE user_id = ${record.user_id}`
    assert.equal(byUser, 1)

    assert.deepEqual(await queue.queue.delete(twice.stored), { deleted: 1, failed: [] })
    await expectQueueEmpty()
  })

  await t.test('a value the database refuses rejects its message alone; the nine others of the batch are stored', async () => {
    await sql`ALTER TABLE user_logins ADD CONSTRAINT poison CHECK (locale IS DISTINCT FROM 'ZZ')`
    try {
      const records = Array.from({ length: 10 }, (_, i) => loginRecord(i === 6 ? { locale: 'ZZ' } : {}))
      const poison = records[6] as LoginRecord
      await sendBodies(queue.client, queue.queueUrl, records.map((r) => JSON.stringify(r)))
      const batch = await receiveMessages(queue.queue, 10)
      const outcome = await services.pipeline.process(batch)
      assert.deepEqual({ inserted: outcome.inserted, duplicates: outcome.duplicates, rejected: outcome.rejected }, { inserted: 9, duplicates: 0, rejected: 1 })
      assert.equal(outcome.stored.length, 10, 'all ten may be deleted: nine rows and one rejection are committed')

      const ids = batch.map((m) => m.messageId)
      const poisonMessage = batch.find((m) => (JSON.parse(m.body) as LoginRecord).user_id === poison.user_id)
      assert.ok(poisonMessage)
      const stored = await sql<{ user_id: string }[]>`SELECT user_id FROM user_logins WHERE message_id = ANY(${sql.array(ids)}::text[])`
      assert.deepEqual(
        new Set(stored.map((r) => r.user_id)),
        new Set(records.filter((r) => r !== poison).map((r) => r.user_id)),
      )
      assert.equal((await vaultRows(ids)).length, 9)

      const rejections = await sql<{ message_id: string; reason: string; receive_count: number }[]>`
        SELECT message_id, reason, receive_count FROM rejected_messages WHERE message_id = ANY(${sql.array(ids)}::text[])`
      assert.equal(rejections.length, 1)
      const [rejection] = rejections
      assert.equal(rejection?.message_id, poisonMessage.messageId)
      assert.match(rejection?.reason ?? '', /SQLSTATE 23514/)
      assert.match(rejection?.reason ?? '', /poison/, 'names the constraint')
      for (const value of ['ZZ', poison.ip, poison.device_id, poison.user_id]) {
        assert.ok(!rejection?.reason.includes(value), 'the reason does not quote the message')
      }
      assert.equal(rejection?.receive_count, 1)

      assert.deepEqual(await queue.queue.delete(outcome.stored), { deleted: 10, failed: [] })
      await expectQueueEmpty()
    } finally {
      await sql`ALTER TABLE user_logins DROP CONSTRAINT IF EXISTS poison`
    }
  })

  await t.test('a column narrower than validation: the database refuses the over-long value (SQLSTATE 22001), the rest is stored', async () => {
    await sql`ALTER TABLE user_logins ALTER COLUMN device_type TYPE varchar(16)`
    try {
      const records = Array.from({ length: 10 }, (_, i) => loginRecord(i === 3 ? { device_type: 'a-twenty-char-type!!' } : {}))
      const { messages, outcomes } = await ingestBodies(services, records.map((r) => JSON.stringify(r)))
      const sum = (key: 'inserted' | 'rejected' | 'duplicates') => outcomes.reduce((n, o) => n + o[key], 0)
      assert.deepEqual({ inserted: sum('inserted'), rejected: sum('rejected'), duplicates: sum('duplicates') }, { inserted: 9, rejected: 1, duplicates: 0 })
      const ids = messages.map((m) => m.messageId)
      const [rejection] = await sql<{ reason: string }[]>`SELECT reason FROM rejected_messages WHERE message_id = ANY(${sql.array(ids)}::text[])`
      assert.match(rejection?.reason ?? '', /^database refused the row \(SQLSTATE 22001/)
      assert.ok(!rejection?.reason.includes('a-twenty-char-type'))
      await expectQueueEmpty()
    } finally {
      await sql`ALTER TABLE user_logins ALTER COLUMN device_type TYPE varchar(32)`
    }
  })

  await t.test('an over-long field is rejected by validation before the database; the nine others are stored', async () => {
    const records = Array.from({ length: 10 }, (_, i) => loginRecord(i === 2 ? { device_type: 'd'.repeat(40) } : {}))
    await sendBodies(queue.client, queue.queueUrl, records.map((r) => JSON.stringify(r)))
    const batch = await receiveMessages(queue.queue, 10)
    const outcome = await services.pipeline.process(batch)
    assert.deepEqual({ inserted: outcome.inserted, duplicates: outcome.duplicates, rejected: outcome.rejected }, { inserted: 9, duplicates: 0, rejected: 1 })
    const ids = batch.map((m) => m.messageId)
    const rejections = await sql<{ reason: string }[]>`SELECT reason FROM rejected_messages WHERE message_id = ANY(${sql.array(ids)}::text[])`
    assert.deepEqual(outcome.rejectedReasons, { [String(rejections[0]?.reason)]: 1 }, 'the report counts the rejection under its reason')
    assert.deepEqual([...rejections], [{ reason: 'device_type must be at most 32 characters' }])
    const [{ n } = { n: -1 }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE message_id = ANY(${sql.array(ids)}::text[])`
    assert.equal(n, 9)
    await queue.queue.delete(outcome.stored)
    await expectQueueEmpty()
  })

  await t.test('the vault binds each ciphertext to its row', async () => {
    const user = loginRecord().user_id
    const a = loginRecord({ user_id: user, ip: '2001:db8::a', device_id: 'vault-device-a' })
    const b = loginRecord({ user_id: user, ip: '198.51.100.7', device_id: 'vault-device-b' })
    const { messages } = await ingestBodies(services, [JSON.stringify(a), JSON.stringify(b)])
    const recordOf = (messageId: string): LoginRecord => {
      const message = messages.find((m) => m.messageId === messageId)
      return JSON.parse(message?.body ?? 'null') as LoginRecord
    }
    const rows = await vaultRows(messages.map((m) => m.messageId))
    assert.equal(rows.length, 2)
    const [rowA, rowB] = [...rows] as [VaultRow, VaultRow]
    // One user, one month: one data key, so only the associated data tells the rows apart.
    assert.equal(rowA.data_key_id, rowB.data_key_id)

    for (const row of rows) {
      const plain = await services.vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id))
      const record = recordOf(row.message_id)
      assert.deepEqual(JSON.parse(plain?.toString('utf8') ?? 'null'), { ip: record.ip, device_id: record.device_id })
      assert.equal(row.ciphertext.indexOf(Buffer.from(record.device_id)), -1, 'not in clear')
    }

    // Swap the two ciphertexts in the table: each now sits on the other's row and fails there.
    await sql`
      UPDATE pii_vault SET ciphertext = CASE login_id WHEN ${rowA.login_id} THEN ${rowB.ciphertext} ELSE ${rowA.ciphertext} END
      WHERE login_id IN (${rowA.login_id}, ${rowB.login_id})`
    const swapped = await vaultRows(messages.map((m) => m.messageId))
    assert.deepEqual(swapped.map((r) => r.ciphertext), [rowB.ciphertext, rowA.ciphertext])
    for (const row of swapped) {
      await assert.rejects(services.vault.open(row.data_key_id, row.ciphertext, loginAad(row.message_id)), 'a moved ciphertext does not decrypt')
    }
    await assert.rejects(services.vault.open(rowA.data_key_id, rowA.ciphertext, rejectionAad(rowA.message_id)))

    // Another master keyring, even one that reuses the id m1, cannot unwrap the data key.
    const impostor = new Vault(sql, keyringProvider(parseKeyring('VAULT_MASTER_KEYS', randomKeyring('m1'))))
    await assert.rejects(impostor.open(rowA.data_key_id, rowA.ciphertext, loginAad(rowA.message_id)))
    const stranger = new Vault(sql, keyringProvider(parseKeyring('VAULT_MASTER_KEYS', randomKeyring('m2'))))
    await assert.rejects(stranger.open(rowA.data_key_id, rowA.ciphertext, loginAad(rowA.message_id)), /master key m1 is not configured/)
    // The right keyring still opens the original, so the failures above are the key's.
    assert.ok(await services.vault.open(rowA.data_key_id, rowA.ciphertext, loginAad(rowA.message_id)))
    await expectQueueEmpty()
  })

  await t.test('rejected bodies are stored encrypted and decrypt only as their rejection', async () => {
    const userId = loginRecord().user_id
    const cases = [
      { body: JSON.stringify({ ip: '203.0.113.77', device_id: 'rejected-device-1', device_type: 'ios' }), reason: 'user_id is required', subject: '' },
      { body: 'ip=203.0.113.78 device_id=rejected-device-2', reason: 'body is not valid JSON', subject: '' },
      {
        body: JSON.stringify(loginRecord({ user_id: userId, ip: '203.0.113.79', device_id: 'rejected-device-3', device_type: 'x'.repeat(33) })),
        reason: 'device_type must be at most 32 characters',
        subject: userId,
      },
    ]
    const { messages, outcomes } = await ingestBodies(services, cases.map((c) => c.body))
    assert.equal(outcomes.reduce((n, o) => n + o.rejected, 0), 3)
    for (const { body, reason, subject } of cases) {
      const message = messages.find((m) => m.body === body)
      assert.ok(message)
      const [row] = await sql<{ reason: string; data_key_id: string; body_ciphertext: Buffer; subject: string }[]>`
        SELECT r.reason, r.data_key_id::text AS data_key_id, r.body_ciphertext, k.subject
        FROM rejected_messages r JOIN pii_data_keys k ON k.id = r.data_key_id
        WHERE r.message_id = ${message.messageId}`
      assert.ok(row, 'the rejection is kept, with its data key')
      assert.equal(row.reason, reason)
      assert.equal(row.subject, subject, 'the data key belongs to the user when the body names one (so erasure covers it)')
      assert.equal(row.body_ciphertext.indexOf(Buffer.from(body)), -1, 'the body is not stored in clear')
      for (const fragment of ['203.0.113.', 'rejected-device-']) assert.equal(row.body_ciphertext.indexOf(Buffer.from(fragment)), -1)
      const plain = await services.vault.open(row.data_key_id, row.body_ciphertext, rejectionAad(message.messageId))
      assert.equal(plain?.toString('utf8'), body)
      await assert.rejects(services.vault.open(row.data_key_id, row.body_ciphertext, loginAad(message.messageId)))
    }
    await expectQueueEmpty()
  })

  await t.test('a start with another secret for a key the data was written with is refused', async () => {
    const { mask, master } = services.keys
    // The keys the data was written with pass (again and again).
    await verifyKeyFingerprints(sql, { mask, master })

    const replaced = randomKeyring('k1')
    await assert.rejects(verifyKeyFingerprints(sql, { mask: parseKeyring('MASK_KEYS', replaced), master }), (error: unknown) => {
      assert.ok(error instanceof KeyMismatchError)
      assert.equal(error.code, 'KEY_MISMATCH')
      assert.match(error.message, /^MASK_KEYS: key k1 is not the key/)
      assert.ok(!error.message.includes(replaced.slice(3)), 'the secret is not in the message')
      return true
    })
    await assert.rejects(verifyKeyFingerprints(sql, { mask: parseKeyring('MASK_KEYS', randomKeyring('k2')), master }), (error: unknown) => {
      assert.ok(error instanceof KeyMismatchError)
      assert.match(error.message, /^MASK_KEYS: key k1, which protects existing data, is not configured/)
      return true
    })
    await assert.rejects(verifyKeyFingerprints(sql, { mask, master: parseKeyring('VAULT_MASTER_KEYS', randomKeyring('m1')) }), (error: unknown) => {
      assert.ok(error instanceof KeyMismatchError)
      assert.match(error.message, /^VAULT_MASTER_KEYS: key m1/)
      return true
    })

    // Rotation: a new active key in front of the old one is accepted and registered; from then
    // on, that key id is bound to its secret too.
    const k2 = randomKeyring('k2')
    await verifyKeyFingerprints(sql, { mask: parseKeyring('MASK_KEYS', `${k2},${services.keys.MASK_KEYS}`), master })
    const registered = await sql<{ kind: string; key_id: string }[]>`SELECT kind, key_id FROM key_fingerprints ORDER BY kind, key_id`
    assert.deepEqual([...registered], [{ kind: 'mask', key_id: 'k1' }, { kind: 'mask', key_id: 'k2' }, { kind: 'master', key_id: 'm1' }])
    await assert.rejects(
      verifyKeyFingerprints(sql, { mask: parseKeyring('MASK_KEYS', `${randomKeyring('k2')},${services.keys.MASK_KEYS}`), master }),
      KeyMismatchError,
    )
  })

  await t.test('the worker folds what it stored into the duplicates summary on its own, within DUPLICATES_REFRESH_MS', async (t) => {
    const device = `fold-${randomUUID()}`
    const records = [loginRecord({ device_id: device }), loginRecord({ device_id: device })]
    await build(t, { env: { WORKER_ENABLED: 'true', DUPLICATES_REFRESH_MS: '200' }, services })
    await sendBodies(queue.client, queue.queueUrl, records.map((r) => JSON.stringify(r)))
    // No read of the report: the worker's own fold must bring the value in.
    await waitFor(async () => {
      const [row] = await sql<{ logins: number; users: number }[]>`
        SELECT logins::int, users FROM login_duplicates WHERE field = 'device_id' AND masked_value = ${services.masker.maskDeviceId(device)}`
      return row?.logins === 2 && row.users === 2
    }, 20_000, 'the device seen twice, by two users, in the summary')
  })

  await t.test('the worker ingests from the queue and readiness shows its state', async (t) => {
    const records = Array.from({ length: 3 }, () => loginRecord())
    const { app, logs } = await build(t, { env: { WORKER_ENABLED: 'true' }, services })
    await sendBodies(queue.client, queue.queueUrl, records.map((r) => JSON.stringify(r)))
    const users = records.map((r) => r.user_id)

    await waitFor(async () => {
      const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE user_id = ANY(${sql.array(users)}::text[])`
      return row?.n === 3
    }, 20_000, 'three rows from the worker')
    await waitFor(async () => {
      const depth = await queue.queue.depth()
      return depth.visible === 0 && depth.inFlight === 0
    }, 10_000, 'the queue empty')

    const rows = await sql<{ user_id: string; masked_ip: string; masked_device_id: string }[]>`
      SELECT user_id, masked_ip, masked_device_id FROM user_logins WHERE user_id = ANY(${sql.array(users)}::text[])`
    for (const record of records) {
      const row = rows.find((r) => r.user_id === record.user_id)
      assert.equal(row?.masked_ip, services.masker.maskIp(record.ip))
      assert.equal(row?.masked_device_id, services.masker.maskDeviceId(record.device_id))
    }

    const response = await app.inject({ url: '/readyz' })
    assert.equal(response.statusCode, 200)
    const readiness = response.json<{ status: string; queue: { status: string; pollers: number; lastPollAt: string | null; lastSuccessfulPollAt: string | null; lastError: unknown } }>()
    assert.equal(readiness.status, 'ready')
    assert.equal(readiness.queue.status, 'running')
    assert.ok(readiness.queue.pollers >= 1)
    assert.equal(readiness.queue.lastError, null)
    assert.ok(readiness.queue.lastSuccessfulPollAt !== null, 'lastSuccessfulPollAt is set')
    const polled = Date.parse(readiness.queue.lastSuccessfulPollAt)
    assert.ok(Number.isFinite(polled) && Date.now() - polled < 60_000, 'and recent')

    const text = logs.text()
    for (const record of records) {
      assert.ok(!text.includes(record.ip), 'raw ip not in logs')
      assert.ok(!text.includes(record.device_id), 'raw device_id not in logs')
    }
  })
})
