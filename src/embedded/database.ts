import { mkdir } from 'node:fs/promises'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

export interface EmbeddedDatabase {
  /** postgres:// URL of the loopback socket that serves the database */
  url: string
  close(): Promise<void>
}

/**
 * PostgreSQL compiled to WebAssembly (PGlite), served on a loopback port so that the service
 * talks to it through postgres.js exactly as it talks to a real server. It serves one session
 * at a time: give postgres.js `max: 1`. `dataDir` undefined keeps everything in memory.
 */
export async function startEmbeddedDatabase(dataDir?: string): Promise<EmbeddedDatabase> {
  if (dataDir !== undefined) await mkdir(dataDir, { recursive: true })
  const db = await PGlite.create(dataDir)
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0 })
  await server.start()
  const address = server.getServerConn()
  return {
    url: `postgres://postgres@${address}/postgres`,
    async close() {
      await server.stop()
      await db.close()
    },
  }
}
