// Regenerates openapi/openapi.json from the app, and openapi/api.d.ts (its TypeScript types) from that (see --help).
import { writeFile } from 'node:fs/promises'
import { openApiDocument, renderClientTypes, renderOpenApi } from '../openapi.ts'
import { parseCli, runCli } from './common.ts'

const USAGE = `
usage: npm run openapi

Writes openapi/openapi.json, the OpenAPI document the app serves at /docs/json, and
openapi/api.d.ts, its TypeScript types as openapi-typescript generates them (tests fail when
either committed file differs). Exit codes: 0 done, 1 failed, 2 wrong command line.
`

await runCli('openapi', async () => {
  parseCli({ name: 'openapi', usage: USAGE, options: {} })
  const document = await openApiDocument()
  const json = new URL('../../openapi/openapi.json', import.meta.url)
  await writeFile(json, renderOpenApi(document))
  console.log(`wrote ${json.pathname}`)
  const types = new URL('../../openapi/api.d.ts', import.meta.url)
  // From the rendered JSON, exactly as a client generator would read the committed file.
  await writeFile(types, await renderClientTypes(JSON.parse(renderOpenApi(document))))
  console.log(`wrote ${types.pathname}`)
})
