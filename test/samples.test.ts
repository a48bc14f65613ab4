import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { migrate } from '../src/db/migrate.ts'
import { sampleBodies, seedSamplesOnce, sendBodies, SAMPLES_PATH } from '../src/embedded/samples.ts'
import { build, testDatabase, testQueue, waitFor } from './helper.ts'

interface Sample {
  user_id?: string
  ip?: string
  device_id?: string
}

const samples = JSON.parse(await readFile(SAMPLES_PATH, 'utf8')) as Sample[]

test('the 100 samples become 99 masked rows and 1 rejection, and the queue ends empty', async (t) => {
  const { app, services, logs, tokens, queue } = await build(t, { env: { WORKER_ENABLED: 'true' } })
  await sendBodies(queue.client, queue.queueUrl, await sampleBodies())

  await waitFor(async () => {
    const [row] = await services.sql<{ n: number }[]>`
      SELECT (SELECT count(*) FROM user_logins)::int + (SELECT count(*) FROM rejected_messages)::int AS n`
    return row?.n === 100
  }, 30_000, 'all samples stored')
  await waitFor(async () => {
    const depth = await queue.queue.depth()
    return depth.visible === 0 && depth.inFlight === 0
  }, 10_000, 'queue empty')

  const [counts] = await services.sql<{ logins: number; vault: number; rejected: number }[]>`
    SELECT (SELECT count(*) FROM user_logins)::int AS logins,
           (SELECT count(*) FROM pii_vault)::int AS vault,
           (SELECT count(*) FROM rejected_messages)::int AS rejected`
  assert.deepEqual(counts, { logins: 99, vault: 99, rejected: 1 })

  const [rejection] = await services.sql<{ reason: string }[]>`SELECT reason FROM rejected_messages`
  assert.equal(rejection?.reason, 'user_id is required')

  const response = await app.inject({ url: '/logins?limit=1000', headers: { authorization: `Bearer ${tokens['logins:read']}` } })
  assert.equal(response.statusCode, 200)
  const page = response.json<{ items: { masked_ip: string; masked_device_id: string; user_id: string }[]; next: string | null }>()
  assert.equal(page.items.length, 99)
  assert.equal(page.next, null)

  // Every mask differs from the raw value and from the unkeyed encodings a lazy answer would use.
  const valid = samples.filter((s) => s.ip !== undefined)
  const byUser = new Map(page.items.map((item) => [item.user_id, item]))
  for (const sample of valid) {
    const row = byUser.get(sample.user_id as string)
    assert.ok(row, 'each sample has its row')
    for (const [raw, masked] of [[sample.ip as string, row.masked_ip], [sample.device_id as string, row.masked_device_id]] as const) {
      assert.match(masked, /^k1:[A-Za-z0-9_-]{43}$/)
      for (const lazy of [
        raw,
        createHash('sha256').update(raw).digest('hex'),
        createHash('sha256').update(raw).digest('base64'),
        createHash('md5').update(raw).digest('hex'),
        Buffer.from(raw).toString('base64'),
      ]) {
        assert.ok(!masked.includes(lazy), 'mask is not a plain encoding or hash of the value')
      }
    }
  }

  // Raw PII appears in no response and no log line.
  const logText = logs.text()
  for (const sample of valid) {
    assert.ok(!response.body.includes(sample.ip as string))
    assert.ok(!response.body.includes(sample.device_id as string))
    assert.ok(!logText.includes(sample.ip as string), 'raw ip not in logs')
    assert.ok(!logText.includes(sample.device_id as string), 'raw device_id not in logs')
  }
})

test('the embedded queue is seeded with the samples once per database, so a restart does not ingest them twice', async (t) => {
  const db = await testDatabase(t)
  await migrate(db.sql)
  const first = await testQueue(t)
  assert.equal(await seedSamplesOnce(db.sql, first.client, first.queueUrl), true)
  assert.equal((await first.queue.depth()).visible, 100)
  // A restart: a new, empty emulator (it keeps nothing) on the same database.
  const second = await testQueue(t)
  assert.equal(await seedSamplesOnce(db.sql, second.client, second.queueUrl), false)
  assert.equal((await second.queue.depth()).visible, 0)
})
