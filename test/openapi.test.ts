import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { openApiDocument, renderOpenApi } from '../src/openapi.ts'

test('openapi/openapi.json is what the app serves (run npm run openapi after changing a route)', async () => {
  const committed = await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8')
  assert.equal(committed, renderOpenApi(await openApiDocument()))
})

test('every operation has tags, a summary, and the bearer scheme where a key is needed', async () => {
  const document = (await openApiDocument()) as { paths: Record<string, Record<string, { tags?: string[]; summary?: string; security?: unknown[]; responses: Record<string, unknown> }>> }
  const open = new Set(['/healthz', '/readyz', '/metrics'])
  for (const [path, operations] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      assert.ok(operation.tags?.length, `${method} ${path} has tags`)
      assert.ok(operation.summary, `${method} ${path} has a summary`)
      if (!open.has(path)) {
        assert.deepEqual(operation.security, [{ bearer: [] }], `${method} ${path} needs a bearer key`)
        for (const status of ['400', '401', '403', '429', '503']) assert.ok(operation.responses[status], `${method} ${path} documents ${status}`)
      }
    }
  }
})
