import type { Sql } from 'postgres'
import { migrate } from './db/migrate.ts'
import { verifyKeyFingerprints } from './pii/key-registry.ts'
import type { Keyring } from './pii/keys.ts'
import { initMaskKeyState } from './pii/mask-keys.ts'

/**
 * What must hold before the service touches data: the schema is current, the configured keys
 * are the ones the data was written with, and the database knows which mask key is current.
 * Returns the migrations it applied.
 */
export async function prepareDatabase(sql: Sql, keys: { mask: Keyring; master: Keyring; ipPrefix?: Keyring | null }): Promise<string[]> {
  const applied = await migrate(sql)
  await verifyKeyFingerprints(sql, keys)
  await initMaskKeyState(sql, keys.mask)
  return applied
}
