/**
 * The baseline of the API benchmark: a bare `node:http` server with postgres.js that answers
 * GET /logins and GET /logins/duplicates with the same queries as the service (the functions of
 * src/logins/store.ts), the same key check (SHA-256 of the bearer token compared with
 * timingSafeEqual) and the same signed cursors, and nothing else: no framework, no schema
 * validation, no logging, no rate limit, no security headers. Prints {"address": ...}.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type ServerResponse } from 'node:http'
import { createSql } from '../../src/db/sql.ts'
import { encodeAppVersion } from '../../src/ingest/app-version.ts'
import { pageCursors } from '../../src/logins/cursor.ts'
import { listDuplicates, listLogins, type LoginQuery } from '../../src/logins/store.ts'
import { parseKeyring } from '../../src/pii/keys.ts'

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

// The same pool as the service: DATABASE_POOL_MAX and statement timeout defaults.
const sql = createSql({ url: env('DATABASE_URL'), max: 10, statementTimeoutMs: 30_000, applicationName: 'login-ingest-bare' })
const keyHash = Buffer.from(env('API_KEY_SHA256'), 'hex')
const cursors = pageCursors(parseKeyring('MASK_KEYS', env('MASK_KEYS')).active.secret)

const send = (res: ServerResponse, status: number, body: unknown): void => {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

const FILTERS = ['user_id', 'device_type', 'locale', 'masked_ip', 'masked_device_id', 'app_version', 'date_from', 'date_to'] as const

const server = createServer((req, res) => {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  if (match === null || !timingSafeEqual(createHash('sha256').update(match[1] ?? '', 'utf8').digest(), keyHash)) {
    return send(res, 401, { statusCode: 401, error: 'Unauthorized' })
  }
  const url = new URL(req.url ?? '/', 'http://bare')
  const params = url.searchParams
  const limit = Number(params.get('limit') ?? 100)
  const cursor = params.get('cursor')
  void (async () => {
    if (url.pathname === '/logins') {
      const query: LoginQuery = { limit }
      for (const name of FILTERS) {
        const value = params.get(name)
        if (value !== null) query[name] = value
      }
      for (const name of ['version_min', 'version_max'] as const) {
        const value = params.get(name)
        if (value !== null) query[name] = encodeAppVersion(value) ?? 0
      }
      if (cursor !== null) query.before = cursors.logins.decode(cursor) ?? 0n
      const page = await listLogins(sql, query)
      return send(res, 200, { items: page.items, next: page.lastId === null ? null : cursors.logins.encode(page.lastId) })
    }
    if (url.pathname === '/logins/duplicates') {
      const field = params.get('field') ?? 'all'
      const fields: ('ip' | 'device_id')[] = field === 'all' ? ['device_id', 'ip'] : [field as 'ip' | 'device_id']
      const after = cursor === null ? null : cursors.duplicates.decode(cursor)
      const rows = await listDuplicates(sql, {
        fields,
        minCount: Number(params.get('min_count') ?? 2),
        limit,
        ...(after === null ? {} : { after }),
      })
      const items = rows.slice(0, limit)
      const last = items.at(-1)
      return send(res, 200, { items, next: rows.length > limit && last ? cursors.duplicates.encode(last) : null })
    }
    send(res, 404, { statusCode: 404, error: 'Not Found' })
  })().catch(() => send(res, 500, { statusCode: 500, error: 'Internal Server Error' }))
})

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  if (typeof address === 'object' && address !== null) process.stdout.write(`${JSON.stringify({ address: `http://127.0.0.1:${address.port}` })}\n`)
})
const stop = (): void => {
  server.close()
  void sql.end({ timeout: 1 }).then(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
