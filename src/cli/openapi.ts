// Regenerates openapi/openapi.json from the app: npm run openapi
import { writeFile } from 'node:fs/promises'
import { openApiDocument, renderOpenApi } from '../openapi.ts'

const target = new URL('../../openapi/openapi.json', import.meta.url)
await writeFile(target, renderOpenApi(await openApiDocument()))
console.log(`wrote ${target.pathname}`)
