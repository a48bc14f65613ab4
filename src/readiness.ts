import type { Sql } from 'postgres'
import { describeError } from './db/errors.ts'

interface Check {
  ok: boolean
  detail?: string
}

/** Asks the database for its schema version, giving up after `timeoutMs` so a probe never hangs. */
export async function checkDatabase(sql: Sql, expectedVersion: string, timeoutMs: number): Promise<{ database: Check; migrations: Check }> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs)
  })
  const query = sql<{ version: string | null }[]>`SELECT max(version) AS version FROM schema_migrations`
    .then((rows) => ({ version: rows[0]?.version ?? null }))
    .catch((error: unknown) => ({ error }))
  try {
    const result = await Promise.race([query, timeout])
    if (result === 'timeout') {
      return { database: { ok: false, detail: `no answer within ${timeoutMs} ms` }, migrations: { ok: false, detail: 'unknown' } }
    }
    if ('error' in result) {
      const e = describeError(result.error)
      if (e.sqlState === '42P01') return { database: { ok: true }, migrations: { ok: false, detail: 'no migrations applied' } }
      return { database: { ok: false, detail: e.sqlState ?? e.code ?? e.message ?? 'error' }, migrations: { ok: false, detail: 'unknown' } }
    }
    const applied = result.version
    const ok = applied !== null && applied >= expectedVersion
    return { database: { ok: true }, migrations: ok ? { ok } : { ok, detail: `database at ${applied ?? 'none'}, code needs ${expectedVersion}` } }
  } finally {
    clearTimeout(timer)
  }
}
