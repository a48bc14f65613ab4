// Regenerates openapi/openapi.json from the app, and openapi/api.d.ts (its TypeScript types) from that: npm run openapi
import { writeFile } from 'node:fs/promises'
import { openApiDocument, renderClientTypes, renderOpenApi } from '../openapi.ts'

const document = await openApiDocument()
const json = new URL('../../openapi/openapi.json', import.meta.url)
await writeFile(json, renderOpenApi(document))
console.log(`wrote ${json.pathname}`)
const types = new URL('../../openapi/api.d.ts', import.meta.url)
// From the rendered JSON, exactly as a client generator would read the committed file.
await writeFile(types, await renderClientTypes(JSON.parse(renderOpenApi(document))))
console.log(`wrote ${types.pathname}`)
