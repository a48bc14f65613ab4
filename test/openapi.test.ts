import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { openApiDocument, renderOpenApi } from '../src/openapi.ts'

test('openapi/openapi.json is what the app serves (run npm run openapi after changing a route)', async () => {
  const committed = await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8')
  assert.equal(committed, renderOpenApi(await openApiDocument()))
})

test('every operation has a stable operationId, tags, a summary, and the bearer scheme where a key is needed', async () => {
  const document = (await openApiDocument()) as { paths: Record<string, Record<string, { operationId?: string; tags?: string[]; summary?: string; security?: unknown[]; responses: Record<string, unknown> }>> }
  const ids = Object.values(document.paths).flatMap((operations) => Object.values(operations).map((o) => o.operationId))
  assert.ok(ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z]+$/.test(id)), `operationIds: ${ids.join(', ')}`)
  assert.equal(new Set(ids).size, ids.length, 'operationIds are unique')
  const open = new Set(['/healthz', '/readyz', '/metrics'])
  for (const [path, operations] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      assert.ok(operation.tags?.length, `${method} ${path} has tags`)
      assert.ok(operation.summary, `${method} ${path} has a summary`)
      if (open.has(path)) assert.deepEqual(operation.security, [], `${method} ${path} says it is public`)
      else {
        assert.deepEqual(operation.security, [{ bearer: [] }], `${method} ${path} needs a bearer key`)
        for (const status of ['400', '401', '403', '429', '503']) assert.ok(operation.responses[status], `${method} ${path} documents ${status}`)
      }
    }
  }
})

test('redocly lint with the recommended rules (redocly.yaml) finds no error and no warning', async () => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const cli = fileURLToPath(new URL('../node_modules/@redocly/cli/bin/cli.js', import.meta.url))
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'lint', 'openapi/openapi.json', '--format=json'], {
    cwd: root,
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }))
  const report = JSON.parse(stdout) as { totals: { errors: number; warnings: number; ignored: number }; problems: { ruleId: string; message: string }[] }
  assert.deepEqual(report.problems.map((p) => `${p.ruleId}: ${p.message}`), [])
  assert.deepEqual({ errors: report.totals.errors, warnings: report.totals.warnings }, { errors: 0, warnings: 0 })
  assert.equal(report.totals.ignored, 3, 'only the three places redocly.yaml explains are ignored')
})
