import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { sampleBodies, seedMissingSamples, sendBodies, SAMPLES_PATH } from '../src/embedded/samples.ts'
import { build, testQueue, testServices, waitFor, type TestServices } from './helper.ts'
import { ingestBodies, receiveMessages } from './ingest-helpers.ts'

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

test('the embedded queue is seeded once per database, so a restart does not ingest the samples twice', async (t) => {
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue)
  const seed = (q: typeof queue) => seedMissingSamples({ ...services, client: q.client, queueUrl: q.queueUrl })
  assert.deepEqual(await seed(queue), { sent: 100, complete: false })
  assert.equal((await queue.queue.depth()).visible, 100)
  // Store what the first start sent (as its worker would), then restart on a new, empty emulator.
  assert.equal(await drain(services, 100), 100)
  const second = await testQueue(t)
  assert.deepEqual(await seed(second), { sent: 0, complete: true })
  assert.equal((await second.queue.depth()).visible, 0)
  const [marker] = await services.sql<{ complete: boolean }[]>`SELECT (value->>'complete')::boolean AS complete FROM service_state WHERE name = 'embedded-samples'`
  assert.equal(marker?.complete, true, 'the marker is written only once every sample is stored')
})

test('a start after a lost first run sends exactly the samples that were not stored, the rejected one included', async (t) => {
  const queue = await testQueue(t)
  const services = await testServices(t, queue.queue)
  const bodies = await sampleBodies()
  // An earlier process stored 40 samples, among them the one that is not a login, then died:
  // the other 60 were in its in-memory queue and are gone.
  const invalid = bodies.findIndex((b) => !('user_id' in (JSON.parse(b) as object)))
  assert.ok(invalid >= 0)
  const storedBefore = [bodies[invalid] as string, ...bodies.filter((_, i) => i !== invalid).slice(0, 39)]
  await ingestBodies(services, storedBefore)
  const [marker] = await services.sql`SELECT 1 FROM service_state WHERE name = 'embedded-samples'`
  assert.equal(marker, undefined, 'no marker while samples are missing')

  const restart = await testQueue(t)
  const report = await seedMissingSamples({ ...services, client: restart.client, queueUrl: restart.queueUrl })
  assert.deepEqual(report, { sent: 60, complete: false })
  const resent = await receiveMessages(restart.queue, 60)
  assert.deepEqual(new Set(resent.map((m) => m.body)), new Set(bodies.filter((b) => !storedBefore.includes(b))))
  await services.pipeline.process(resent)
  const [counts] = await services.sql<{ logins: number; rejected: number }[]>`
    SELECT (SELECT count(*) FROM user_logins)::int AS logins, (SELECT count(*) FROM rejected_messages)::int AS rejected`
  assert.deepEqual(counts, { logins: 99, rejected: 1 })

  const third = await testQueue(t)
  assert.deepEqual(await seedMissingSamples({ ...services, client: third.client, queueUrl: third.queueUrl }), { sent: 0, complete: true })
})

/** Receives, stores and deletes `count` messages through the real pipeline, as the worker does. */
async function drain(services: { queue: TestServices['queue']; pipeline: TestServices['pipeline'] }, count: number): Promise<number> {
  const messages = await receiveMessages(services.queue, count)
  for (let i = 0; i < messages.length; i += 10) {
    const outcome = await services.pipeline.process(messages.slice(i, i + 10))
    await services.queue.delete(outcome.stored)
  }
  return messages.length
}
