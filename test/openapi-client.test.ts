// A client generated from the committed document, as a dashboard team would generate one: the
// types (openapi/api.d.ts, openapi-typescript) are what the committed openapi.json says, the
// calls below type-check against them (npm run typecheck), and at run time every operation of
// the running app is called through openapi-fetch and its answer validated against the
// document's own schema for that status. A route the app registers but the document lacks fails.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import createClient, { type Middleware } from 'openapi-fetch'
import type { paths } from '../openapi/api.d.ts'
import { sampleBodies, sendBodies } from '../src/embedded/samples.ts'
import { renderClientTypes } from '../src/openapi.ts'
import { build, waitFor } from './helper.ts'

const DOCUMENT_URL = new URL('../openapi/openapi.json', import.meta.url)

interface Operation {
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>
}
interface Document {
  paths: Record<string, Record<string, Operation>>
  components?: { schemas?: Record<string, unknown> }
}

test('openapi/api.d.ts is what openapi-typescript generates from the committed document (run npm run openapi)', async () => {
  const committed = await readFile(new URL('../openapi/api.d.ts', import.meta.url), 'utf8')
  assert.equal(committed, await renderClientTypes(JSON.parse(await readFile(DOCUMENT_URL, 'utf8')) as unknown))
})

test('a generated client calls every documented operation of the running app, and each answer matches its documented schema', async (t) => {
  const document = JSON.parse(await readFile(DOCUMENT_URL, 'utf8')) as Document
  const { app, services, tokens, queue } = await build(t, { env: { WORKER_ENABLED: 'true' } })
  await sendBodies(queue.client, queue.queueUrl, await sampleBodies())
  await waitFor(async () => {
    const [row] = await services.sql<{ n: number }[]>`SELECT (SELECT count(*) FROM user_logins)::int + (SELECT count(*) FROM rejected_messages)::int AS n`
    return row?.n === 100
  }, 30_000, 'the samples to be stored')
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' })

  // Every documented operation, and only those, is a route of the app (docs' own routes aside).
  const documented = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m} ${path.replace(/\{([^}]+)\}/g, ':$1')}`))
  const served = app.routeTable.filter((r) => !/ \/docs(\/|$)/.test(r) && !r.startsWith('head ') && !r.startsWith('options '))
  assert.deepEqual([...new Set(served)].sort(), [...new Set(documented)].sort(), 'routes and documented operations are the same set')

  const ajv = new Ajv({ strict: false, allErrors: true })
  addFormats.default(ajv)
  ajv.addSchema({ components: document.components ?? {} }, 'doc')
  const called = new Set<string>()
  const problems: string[] = []
  const validator: Middleware = {
    async onResponse({ request, response, schemaPath }) {
      const operation = document.paths[schemaPath]?.[request.method.toLowerCase()]
      const key = `${request.method.toLowerCase()} ${schemaPath}`
      called.add(key)
      const documentedStatus = operation?.responses[String(response.status)]
      if (documentedStatus === undefined) {
        problems.push(`${key} answered ${response.status}, which it does not document`)
        return
      }
      const type = response.headers.get('content-type') ?? ''
      const [media, content] = Object.entries(documentedStatus.content ?? {})[0] ?? []
      if (media !== undefined && !type.startsWith(media.split(';')[0] ?? media)) problems.push(`${key} ${response.status}: content-type ${type}, documented ${media}`)
      if (content?.schema !== undefined && media === 'application/json') {
        const body = (await response.clone().json()) as unknown
        const schema = JSON.parse(JSON.stringify(content.schema).replaceAll('"#/components/', '"doc#/components/')) as object
        if (!ajv.validate(schema, body)) problems.push(`${key} ${response.status}: ${ajv.errorsText()}`)
      }
    },
  }
  const client = createClient<paths>({ baseUrl })
  client.use(validator)
  const auth = { authorization: `Bearer ${tokens.all}` }

  assert.equal((await client.GET('/healthz')).response.status, 200)
  assert.equal((await client.GET('/readyz')).response.status, 200)
  assert.equal((await client.GET('/metrics', { parseAs: 'text' })).response.status, 200)

  const page = await client.GET('/logins', { params: { query: { limit: 10 } }, headers: auth })
  assert.equal(page.data?.items.length, 10)
  const next = page.data?.next ?? assert.fail('a full first page has a next cursor')
  assert.equal((await client.GET('/logins', { params: { query: { limit: 10, cursor: next } }, headers: auth })).data?.items.length, 10)
  const first = page.data?.items[0] ?? assert.fail('a first row')
  const userId = first.user_id ?? assert.fail('the samples have user ids')
  const byUser = await client.GET('/logins', { params: { query: { user_id: userId } }, headers: auth })
  assert.equal(byUser.data?.items[0]?.id, first.id)
  assert.equal((await client.GET('/logins', { params: { query: { limit: 0 } }, headers: auth })).response.status, 400)
  assert.equal((await client.GET('/logins', {})).response.status, 401)

  assert.equal((await client.GET('/logins/duplicates', { params: { query: { field: 'ip' } }, headers: auth })).response.status, 200)

  const pii = await client.GET('/logins/{id}/pii', {
    params: { path: { id: String(first.id) }, header: { 'x-access-reason': 'generated-client test' } },
    headers: auth,
  })
  assert.equal(pii.response.status, 200)
  assert.equal((await client.GET('/audit', { params: { query: { limit: 5 } }, headers: auth })).response.status, 200)

  const rejected = await client.GET('/rejected', { params: { query: { limit: 10 } }, headers: auth })
  assert.equal(rejected.data?.items.length, 1, 'the one sample that is not a login')
  const resubmit = await client.POST('/rejected/resubmit', {
    params: { header: { 'x-access-reason': 'generated-client test: resubmit' } },
    body: { dryRun: true },
    headers: auth,
  })
  assert.equal(resubmit.response.status, 200)

  const drain = await client.POST('/ingest', { body: { maxSeconds: 1 }, headers: auth })
  assert.equal(drain.response.status, 200)

  const erased = await client.DELETE('/users/{user_id}/pii', {
    params: { path: { user_id: userId }, header: { 'x-access-reason': 'generated-client test: erasure' } },
    headers: auth,
  })
  assert.equal(erased.response.status, 200)

  assert.deepEqual(problems, [], 'every answer is documented and matches its schema')
  const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m} ${path}`))
  assert.deepEqual(operations.filter((o) => !called.has(o)), [], 'the client called every documented operation')
})
