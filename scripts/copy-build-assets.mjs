// Copies the files the compiled code reads at run time next to it, after `tsc` (npm run build):
// migrate.js reads ./migrations/*.sql and the embedded samples read ../../fixtures/, both
// relative to import.meta.url. Usage: node scripts/copy-build-assets.mjs [outDir=dist]
import { cpSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'

const outDir = process.argv[2] ?? 'dist'
cpSync('src/db/migrations', join(outDir, 'src/db/migrations'), { recursive: true })
cpSync('fixtures', join(outDir, 'fixtures'), { recursive: true })
