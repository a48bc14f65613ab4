import assert from 'node:assert/strict'
import { test } from 'node:test'
import { build } from './helper.ts'
import { bearer } from './routes-helpers.ts'

const requestLines = (lines: Record<string, unknown>[]) => lines.filter((l) => l.msg === 'request' || l.msg === 'incoming request' || l.msg === 'request completed')

test('one log line per answered request at REQUEST_LOG_LEVEL, with method, url, status and time', async (t) => {
  const { app, logs, tokens } = await build(t, { env: { REQUEST_LOG_LEVEL: 'debug' } })
  await app.inject({ url: '/logins?limit=1', headers: bearer(tokens['logins:read']) })
  await app.inject({ url: '/logins' })
  const lines = requestLines(logs.lines)
  assert.equal(lines.length, 2, JSON.stringify(lines))
  assert.deepEqual(lines.map((l) => [l.msg, l.level, l.method, l.url, l.statusCode]), [
    ['request', 20, 'GET', '/logins?limit=1', 200],
    ['request', 20, 'GET', '/logins', 401],
  ])
  assert.ok(lines.every((l) => typeof l.ms === 'number'))
  assert.ok(!logs.text().includes(tokens['logins:read']), 'never the key')
})

test('no request lines when REQUEST_LOG_LEVEL is below the log level', async (t) => {
  const { app, logs, tokens } = await build(t, { env: { REQUEST_LOG_LEVEL: 'trace' } })
  for (let i = 0; i < 3; i++) await app.inject({ url: '/logins?limit=1', headers: bearer(tokens['logins:read']) })
  assert.deepEqual(requestLines(logs.lines), [])
})
