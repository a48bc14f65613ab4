import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { Sql } from 'postgres'

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url))

export interface Migration {
  version: string
  sql: string
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort()
  return Promise.all(files.map(async (file) => ({ version: file.replace(/\.sql$/, ''), sql: await readFile(dir + file, 'utf8') })))
}

/**
 * Applies the pending migrations in one transaction under a transaction-scoped advisory lock:
 * replicas starting together queue on the lock, and the later ones find nothing left to do.
 * Returns the versions it applied.
 */
export async function migrate(sql: Sql, migrations?: Migration[]): Promise<string[]> {
  const all = migrations ?? (await loadMigrations())
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext('login-ingest:migrations'))`
    // Created only when missing, so a service role without CREATE can start on a migrated database.
    const [{ exists } = { exists: false }] = await tx<{ exists: boolean }[]>`SELECT to_regclass('schema_migrations') IS NOT NULL AS exists`
    if (!exists) {
      await tx`CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`
    }
    const done = new Set((await tx<{ version: string }[]>`SELECT version FROM schema_migrations`).map((r) => r.version))
    const applied: string[] = []
    for (const migration of all) {
      if (done.has(migration.version)) continue
      await tx.unsafe(migration.sql)
      await tx`INSERT INTO schema_migrations (version) VALUES (${migration.version})`
      applied.push(migration.version)
    }
    return applied
  })
}

/** The newest version this code expects; readiness fails until the database has it. */
export async function latestMigration(): Promise<string> {
  const all = await loadMigrations()
  return all.at(-1)?.version ?? ''
}

export async function appliedMigration(sql: Sql): Promise<string | null> {
  const [row] = await sql<{ version: string | null }[]>`
    SELECT max(version) AS version FROM schema_migrations`
  return row?.version ?? null
}
