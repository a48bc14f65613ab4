import { timingSafeEqual } from 'node:crypto'
import type { Sql } from 'postgres'
import { keyFingerprint, type Keyring } from './keys.ts'

export class KeyMismatchError extends Error {
  readonly code = 'KEY_MISMATCH'
}

const KINDS = { mask: 'MASK_KEYS', master: 'VAULT_MASTER_KEYS', ip_prefix: 'IP_PREFIX_KEYS' } as const

/**
 * Records a fingerprint of every configured key, and refuses to go on when a key id the data
 * was written with now has another secret, or is missing: masking new logins under a lost or
 * replaced key would silently split every duplicate in two. With IP_PREFIX_KEYS unset (the
 * option off) the ip prefix keys are not checked: no new pseudonyms are written then.
 */
export async function verifyKeyFingerprints(sql: Sql, keys: { mask: Keyring; master: Keyring; ipPrefix?: Keyring | null }): Promise<void> {
  const keyrings: Partial<Record<keyof typeof KINDS, Keyring>> = { mask: keys.mask, master: keys.master, ...(keys.ipPrefix ? { ip_prefix: keys.ipPrefix } : {}) }
  await sql.begin(async (tx) => {
    // One writer at a time, so two replicas with different keys cannot both register theirs.
    await tx`SELECT pg_advisory_xact_lock(hashtext('login-ingest:key-registry'))`
    const stored = await tx<{ kind: keyof typeof KINDS; key_id: string; fingerprint: Buffer }[]>`
      SELECT kind, key_id, fingerprint FROM key_fingerprints`
    for (const row of stored) {
      const variable = KINDS[row.kind]
      const keyring = keyrings[row.kind]
      if (keyring === undefined) continue
      const key = keyring.all.get(row.key_id)
      if (key === undefined) {
        throw new KeyMismatchError(
          `${variable}: key ${row.key_id}, which protects existing data, is not configured; restore it (key rotation retires keys safely)`,
        )
      }
      if (!timingSafeEqual(keyFingerprint(key), row.fingerprint)) {
        throw new KeyMismatchError(
          `${variable}: key ${row.key_id} is not the key that existing data was written with (fingerprint differs); restore the original secret`,
        )
      }
    }
    const known = new Set(stored.map((row) => `${row.kind}:${row.key_id}`))
    const fresh = (Object.keys(KINDS) as (keyof typeof KINDS)[]).flatMap((kind) =>
      [...(keyrings[kind]?.all.values() ?? [])]
        .filter((key) => !known.has(`${kind}:${key.id}`))
        .map((key) => ({ kind, key_id: key.id, fingerprint: keyFingerprint(key) })),
    )
    if (fresh.length > 0) await tx`INSERT INTO key_fingerprints ${tx(fresh, 'kind', 'key_id', 'fingerprint')}`
  })
}
