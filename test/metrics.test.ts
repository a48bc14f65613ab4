import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { SAMPLES_PATH, sampleBodies, sendBodies } from '../src/embedded/samples.ts'
import { build } from './helper.ts'

function metricValue(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)))
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}

test('/metrics counts a known run of the samples, with bounded labels and no PII', async (t) => {
  const { app, tokens, queue } = await build(t)
  await sendBodies(queue.client, queue.queueUrl, await sampleBodies())
  const drained = await app.inject({ method: 'POST', url: '/ingest', headers: { authorization: `Bearer ${tokens['ingest:run']}` } })
  assert.equal(drained.statusCode, 200)
  await app.inject({ url: '/logins?limit=5', headers: { authorization: `Bearer ${tokens['logins:read']}` } })
  await app.inject({ url: '/no/such/route/42' })

  const response = await app.inject({ url: '/metrics' })
  assert.equal(response.statusCode, 200)
  assert.match(String(response.headers['content-type']), /^text\/plain/)
  const text = response.body
  const messages = (outcome: string) => metricValue(text, 'login_ingest_messages_total', `{outcome="${outcome}"}`)
  assert.equal(messages('received'), 100)
  assert.equal(messages('inserted'), 99)
  assert.equal(messages('rejected'), 1)
  assert.equal(messages('duplicate'), 0)
  assert.equal(messages('deleted'), 100)
  assert.equal(messages('delete_failed'), 0)
  assert.ok((metricValue(text, 'login_ingest_batch_duration_seconds_count') ?? 0) >= 10, 'one observation per batch of at most 10')
  assert.equal(metricValue(text, 'login_ingest_dependency_failures_total', '{dependency="database"}'), 0)
  assert.ok(text.includes('login_ingest_seconds_since_last_successful_poll'))
  assert.match(text, /http_request_duration_seconds_count\{method="GET",route="\/logins",status_code="200"\} 1/)
  assert.match(text, /http_request_duration_seconds_count\{method="POST",route="\/ingest",status_code="200"\} 1/)
  assert.match(text, /route="__unmatched__"/)
  assert.ok(!text.includes('/no/such/route'), 'unmatched URLs do not become labels')

  const samples = JSON.parse(await readFile(SAMPLES_PATH, 'utf8')) as { ip?: string; device_id?: string }[]
  for (const sample of samples) {
    if (sample.ip !== undefined) assert.ok(!text.includes(sample.ip))
    if (sample.device_id !== undefined) assert.ok(!text.includes(sample.device_id))
  }
})
