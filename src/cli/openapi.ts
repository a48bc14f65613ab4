// Regenerates openapi/openapi.json from the app (see --help).
import { writeFile } from 'node:fs/promises'
import { openApiDocument, renderOpenApi } from '../openapi.ts'
import { parseCli, runCli } from './common.ts'

const USAGE = `
usage: npm run openapi

Writes openapi/openapi.json, the OpenAPI document the app serves at /docs/json (a test fails
when the committed file differs). Exit codes: 0 done, 1 failed, 2 wrong command line.
`

await runCli('openapi', async () => {
  parseCli({ name: 'openapi', usage: USAGE, options: {} })
  const target = new URL('../../openapi/openapi.json', import.meta.url)
  await writeFile(target, renderOpenApi(await openApiDocument()))
  console.log(`wrote ${target.pathname}`)
})
