import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { test, type TestContext } from 'node:test'
import type { Sql } from 'postgres'
import type { QueueMessage } from '../src/ingest/queue.ts'
import { readMaskKeyState } from '../src/pii/mask-keys.ts'
import { Masker } from '../src/pii/mask.ts'
import { retireMaskKey, rotateMaskKey } from '../src/pii/rotation.ts'
import { sendMessages } from './messages.ts'
import { build, needsServer, randomKeyring, testKeys, testServices, testQueue, waitFor } from './helper.ts'

/** Logins where several users share an ip (some written as IPv6 variants) or a device id, so duplicates exist. */
function loginsWithDuplicates(count: number): { message: QueueMessage; ip: string; device_id: string }[] {
  const ips = Array.from({ length: Math.max(2, Math.floor(count / 7)) }, (_, i) => `10.1.${i % 250}.${1 + (i % 200)}`)
  const devices = Array.from({ length: Math.max(2, Math.floor(count / 5)) }, () => `dev-${randomBytes(5).toString('hex')}`)
  return Array.from({ length: count }, (_, i) => {
    const ip = ips[i % ips.length] as string
    const written = i % 3 === 0 ? `::ffff:${ip}` : ip
    const device_id = devices[i % devices.length] as string
    const body = JSON.stringify({ user_id: randomUUID(), app_version: '2.3.0', device_type: 'ios', ip: written, locale: 'DE', device_id })
    return {
      message: { messageId: randomUUID(), receiptHandle: 'unused', body, sentAt: new Date(Date.UTC(2026, i % 3, 10)), receiveCount: 1 },
      ip,
      device_id,
    }
  })
}

const quiet = { info: () => {} }

interface RowMasks {
  id: string
  message_id: string
  masked_ip: string
  masked_device_id: string
  mask_key_id: string
}

/** Every pair of rows shares a mask exactly when it shares the original (the duplicate structure). */
function assertSameDuplicates(rows: RowMasks[], original: Map<string, { ip: string; device_id: string }>): void {
  const groups = (field: 'ip' | 'device_id', mask: 'masked_ip' | 'masked_device_id') => {
    const byOriginal = new Map<string, Set<string>>()
    for (const row of rows) {
      const value = original.get(row.message_id)?.[field]
      assert.ok(value !== undefined, 'every row is one we sent')
      const set = byOriginal.get(value) ?? new Set<string>()
      set.add(row[mask])
      byOriginal.set(value, set)
    }
    const masks = [...byOriginal.values()]
    for (const set of masks) assert.equal(set.size, 1, `equal ${field}s have one mask`)
    assert.equal(new Set(masks.map((s) => [...s][0])).size, masks.length, `different ${field}s have different masks`)
  }
  groups('ip', 'masked_ip')
  groups('device_id', 'masked_device_id')
}

async function masks(sql: Sql): Promise<RowMasks[]> {
  return sql<RowMasks[]>`SELECT id::text AS id, message_id, masked_ip, masked_device_id, mask_key_id FROM user_logins ORDER BY id`
}

test('mask key rotation: interrupted, resumed, with ingestion in between; duplicates hold before, during and after', async (t) => {
  const keys = testKeys(`${randomKeyring('k1')},${randomKeyring('k2')}`)
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue, { keys })
  const masker = new Masker(keys.mask)
  const logins = loginsWithDuplicates(300)
  const original = new Map(logins.map((l) => [l.message.messageId, { ip: l.ip, device_id: l.device_id }]))
  for (let i = 0; i < 200; i += 50) await services.pipeline.process(logins.slice(i, i + 50).map((l) => l.message))

  const before = await masks(services.sql)
  assert.ok(before.every((r) => r.mask_key_id === 'k1'), 'the first listed key is current on a fresh database')
  assertSameDuplicates(before, original)

  // One batch, then "killed": the state says next = k2, and new logins get both masks.
  const partial = await rotateMaskKey({ sql: services.sql, masker, vault: services.vault, log: quiet }, 'k2', { batchSize: 50, stopAfterBatches: 1 })
  assert.equal(partial.switched, false)
  assert.deepEqual(await readMaskKeyState(services.sql), { current: 'k1', next: 'k2' })
  for (let i = 200; i < 300; i += 50) await services.pipeline.process(logins.slice(i, i + 50).map((l) => l.message))
  const during = await masks(services.sql)
  assert.ok(during.every((r) => r.mask_key_id === 'k1'), 'readers keep seeing the current key until the switch')
  assertSameDuplicates(during, original)
  await assert.rejects(rotateMaskKey({ sql: services.sql, masker, vault: services.vault, log: quiet }, 'k1'), /in progress/)

  const done = await rotateMaskKey({ sql: services.sql, masker, vault: services.vault, log: quiet }, 'k2', { batchSize: 50 })
  assert.equal(done.switched, true)
  assert.equal(done.withoutOriginals, 0)
  assert.equal(done.remasked, 200, 'the 200 rows from before the rotation were re-masked; the 100 after it came with both masks')
  const after = await masks(services.sql)
  assert.equal(after.length, 300)
  for (const row of after) {
    const pii = original.get(row.message_id)
    assert.equal(row.mask_key_id, 'k2')
    assert.equal(row.masked_ip, masker.maskIp(pii?.ip ?? '', 'k2'))
    assert.equal(row.masked_device_id, masker.maskDeviceId(pii?.device_id ?? '', 'k2'))
  }
  assertSameDuplicates(after, original)
  const [leftovers] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE next_mask_key_id IS NOT NULL OR next_masked_ip IS NOT NULL`
  assert.equal(leftovers?.n, 0)

  // Running it again is harmless; k1 can now be retired, k2 cannot.
  assert.equal((await rotateMaskKey({ sql: services.sql, masker, vault: services.vault, log: quiet }, 'k2')).switched, false)
  await assert.rejects(retireMaskKey(services.sql, 'k2'), /in use/)
  await retireMaskKey(services.sql, 'k1')
  const [fingerprint] = await services.sql`SELECT 1 FROM key_fingerprints WHERE kind = 'mask' AND key_id = 'k1'`
  assert.equal(fingerprint, undefined)
})

function runRotation(t: TestContext, env: Record<string, string>): { done: Promise<number | null>; kill(): void } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/rotate-keys.ts', '--mask', 'k2', '--batch-size', '100'], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout.resume()
  child.stderr.resume()
  t.after(() => child.kill('SIGKILL'))
  return {
    done: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
    kill: () => child.kill('SIGKILL'),
  }
}

test('rotation over thousands of rows while the worker ingests, killed with SIGKILL and resumed', { skip: needsServer }, async (t) => {
  const keys = testKeys(`${randomKeyring('k1')},${randomKeyring('k2')}`)
  const logins = loginsWithDuplicates(3000)
  const live = loginsWithDuplicates(400)
  const original = new Map(logins.map((l) => [l.message.messageId, { ip: l.ip, device_id: l.device_id }]))

  const { app, services, queue, tokens } = await build(t, { env: { WORKER_ENABLED: 'true', WORKER_CONCURRENCY: '2' }, keys })
  for (let i = 0; i < logins.length; i += 500) await services.pipeline.process(logins.slice(i, i + 500).map((l) => l.message))
  const duplicatesBefore = await app.inject({ url: '/logins/duplicates?field=ip&limit=1000', headers: { authorization: `Bearer ${tokens.all}` } })
  const ipGroupsBefore = duplicatesBefore.json<{ items: { count: number }[] }>().items.map((d) => d.count).sort((a, b) => a - b)

  const env = { DATABASE_URL: services.db.url, MASK_KEYS: keys.MASK_KEYS, VAULT_MASTER_KEYS: keys.VAULT_MASTER_KEYS, LOG_LEVEL: 'info' }
  const first = runRotation(t, env)
  // Ingestion runs during the rotation: the live messages go through SQS and the worker.
  const liveIds = await sendMessages(queue.client, queue.queueUrl, live.map((l) => l.message.body))
  live.forEach((l, i) => original.set(liveIds[i] as string, { ip: l.ip, device_id: l.device_id }))
  await waitFor(async () => {
    const [row] = await services.sql<{ remasked: number }[]>`SELECT (value->>'remasked')::int AS remasked FROM service_state WHERE name = 'mask-rotation-progress'`
    return (row?.remasked ?? 0) >= 500
  }, 60_000, 'the rotation to be under way')
  first.kill()
  await first.done
  const [midway] = await services.sql<{ current: string; next: string }[]>`SELECT value->>'current' AS current, value->>'next' AS next FROM service_state WHERE name = 'mask-keys'`
  assert.deepEqual(midway, { current: 'k1', next: 'k2' }, 'killed mid-backfill: nothing switched yet')

  const second = runRotation(t, env)
  assert.equal(await second.done, 0, 'the resumed rotation finishes')
  await waitFor(async () => {
    const [row] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`
    return row?.n === logins.length + live.length
  }, 60_000, 'the live messages to be ingested')

  const rows = await masks(services.sql)
  assert.equal(rows.length, logins.length + live.length, 'no row lost')
  assert.equal(new Set(rows.map((r) => r.message_id)).size, rows.length, 'no row duplicated')
  assert.ok(rows.every((r) => r.mask_key_id === 'k2'), 'every row carries the new key')
  assertSameDuplicates(rows, original)

  // Duplicates found before are still found (same group sizes among the pre-rotation rows' ips, plus the live ones).
  const duplicatesAfter = await app.inject({ url: '/logins/duplicates?field=ip&limit=1000', headers: { authorization: `Bearer ${tokens.all}` } })
  const afterCounts = duplicatesAfter.json<{ items: { count: number }[] }>().items
  assert.ok(afterCounts.length >= ipGroupsBefore.length)
  assert.equal(afterCounts.reduce((n, d) => n + d.count, 0), rows.length, 'every ip occurs more than once in this data set, before and after')

  // The PII route still returns the right originals.
  for (const row of rows.filter((_, i) => i % 500 === 0)) {
    const response = await app.inject({ url: `/logins/${row.id}/pii`, headers: { authorization: `Bearer ${tokens.all}`, 'x-access-reason': 'rotation test check' } })
    assert.equal(response.statusCode, 200)
    const body = response.json<{ ip: string; device_id: string }>()
    const expected = original.get(row.message_id)
    assert.equal(body.device_id, expected?.device_id)
    assert.ok(body.ip === expected?.ip || body.ip === `::ffff:${expected?.ip}`, 'the ip as it was sent')
  }
})
