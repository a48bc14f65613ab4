import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import type { Sql } from 'postgres'
import { compareKeys } from '../db/lock-order.ts'
import type { Keyring } from './keys.ts'

const NONCE_BYTES = 12
const TAG_BYTES = 16

/** AES-256-GCM with a random nonce; output is nonce | tag | ciphertext. The AAD binds it to its owner. */
/** Random bytes drawn 4 KiB at a time: one getrandom call per 341 nonces instead of one per seal. */
const noncePool = { bytes: Buffer.alloc(0), offset: 0 }
function freshNonce(): Buffer {
  if (noncePool.offset + NONCE_BYTES > noncePool.bytes.length) {
    noncePool.bytes = randomBytes(4096 - (4096 % NONCE_BYTES))
    noncePool.offset = 0
  }
  const nonce = noncePool.bytes.subarray(noncePool.offset, noncePool.offset + NONCE_BYTES)
  noncePool.offset += NONCE_BYTES
  return nonce
}

export function seal(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const nonce = freshNonce()
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(Buffer.from(aad, 'utf8'))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([nonce, cipher.getAuthTag(), body])
}

/** Throws when the key, the AAD or any byte differs from what seal() used. */
export function open(key: Buffer, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new Error('ciphertext too short')
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_BYTES))
  decipher.setAAD(Buffer.from(aad, 'utf8'))
  decipher.setAuthTag(sealed.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES))
  return Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()])
}

/**
 * Wraps and unwraps data keys. The vault only sees this interface, so a KMS or secret-manager
 * provider can replace the environment keyring without touching the pipeline.
 */
export interface MasterKeyProvider {
  readonly activeKeyId: string
  wrap(dataKey: Buffer, aad: string): { keyId: string; wrapped: Buffer }
  unwrap(keyId: string, wrapped: Buffer, aad: string): Buffer
}

export function keyringProvider(keys: Keyring): MasterKeyProvider {
  return {
    activeKeyId: keys.active.id,
    wrap: (dataKey, aad) => ({ keyId: keys.active.id, wrapped: seal(keys.active.secret, dataKey, aad) }),
    unwrap: (keyId, wrapped, aad) => {
      const key = keys.all.get(keyId)
      if (key === undefined) throw new Error(`master key ${keyId} is not configured`)
      return open(key.secret, wrapped, aad)
    },
  }
}

/** Whose data a data key protects, and for which month: erasing one user, or expiring one month, destroys small key rows. */
export interface KeyScope {
  subject: string
  period: string // first day of the month, YYYY-MM-DD (UTC)
}

export interface DataKey {
  id: string
  key: Buffer
}

export function periodOf(date: Date): string {
  return `${date.toISOString().slice(0, 7)}-01`
}

const scopeKey = (scope: KeyScope): string => `${scope.subject}\u0000${scope.period}`
const wrapAad = (scope: KeyScope): string => `data-key:${scope.subject}:${scope.period}`

/** Aad binding a login's originals to its row. */
export const loginAad = (messageId: string): string => `user_logins:${messageId}`
/** Aad binding a rejected body to its rejection record. */
export const rejectionAad = (messageId: string): string => `rejected_messages:${messageId}`

/**
 * Envelope encryption: a data key per (user, month), stored wrapped by the master key in
 * `pii_data_keys`. Keys are looked up per batch rather than cached, so an erased key is never
 * reused from memory.
 */
export class Vault {
  constructor(
    private readonly sql: Sql,
    private readonly master: MasterKeyProvider,
  ) {}

  /** Returns a data key for every scope, creating the missing ones (concurrent creators agree through the unique index). */
  async dataKeys(scopes: readonly KeyScope[]): Promise<Map<string, DataKey>> {
    const wanted = new Map(scopes.map((scope) => [scopeKey(scope), scope]))
    const found = await this.load([...wanted.values()])
    // In one fixed order: a statement holds the keys it inserted until it ends, so two sessions
    // inserting overlapping keys in different orders would each wait for the other's next one.
    const missing = [...wanted.entries()].filter(([k]) => !found.has(k)).sort(([a], [b]) => compareKeys(a, b)).map(([, scope]) => scope)
    if (missing.length > 0) {
      const created = new Map(missing.map((scope) => [scopeKey(scope), { scope, key: randomBytes(32) }]))
      const rows = [...created.values()].map(({ scope, key }) => {
        const { keyId, wrapped } = this.master.wrap(key, wrapAad(scope))
        return { subject: scope.subject, period: scope.period, master_key_id: keyId, wrapped_key: wrapped }
      })
      // The keys this statement inserted come back with their ids, and their plaintext is the
      // one just drawn; only a key another session inserted first is read (and unwrapped) again.
      const inserted: { id: string; subject: string; period: string }[] = await this.sql`
        INSERT INTO pii_data_keys ${this.sql(rows, 'subject', 'period', 'master_key_id', 'wrapped_key')}
        ON CONFLICT (subject, period) DO NOTHING
        RETURNING id::text AS id, subject, to_char(period, 'YYYY-MM-DD') AS period`
      for (const row of inserted) {
        const mine = created.get(scopeKey(row))
        if (mine !== undefined) found.set(scopeKey(row), { id: row.id, key: mine.key })
      }
      const raced = missing.filter((scope) => !found.has(scopeKey(scope)))
      for (const [k, v] of await this.load(raced)) found.set(k, v)
    }
    return new Map([...wanted.entries()].flatMap(([k]) => {
      const dataKey = found.get(k)
      return dataKey === undefined ? [] : [[k, dataKey] as const]
    }))
  }

  keyFor(keys: Map<string, DataKey>, scope: KeyScope): DataKey {
    const dataKey = keys.get(scopeKey(scope))
    if (dataKey === undefined) throw new Error('data key missing for scope')
    return dataKey
  }

  /** Decrypts with the data key row `dataKeyId`; returns null when that key was destroyed (erased or expired). */
  async open(dataKeyId: string | null, sealed: Buffer, aad: string): Promise<Buffer | null> {
    if (dataKeyId === null) return null
    const key = (await this.unwrapDataKeys([dataKeyId])).get(dataKeyId)
    return key === undefined ? null : open(key, sealed, aad)
  }

  /** The plaintext data keys of these rows, in one query; destroyed ones are simply absent. */
  async unwrapDataKeys(ids: readonly string[]): Promise<Map<string, Buffer>> {
    if (ids.length === 0) return new Map()
    const rows = await this.sql<{ id: string; subject: string; period: string; master_key_id: string; wrapped_key: Buffer }[]>`
      SELECT id::text AS id, subject, to_char(period, 'YYYY-MM-DD') AS period, master_key_id, wrapped_key
      FROM pii_data_keys WHERE id = ANY(${this.sql.array([...new Set(ids)])}::bigint[])`
    return new Map(rows.map((row) => [row.id, this.master.unwrap(row.master_key_id, row.wrapped_key, wrapAad(row))]))
  }

  /**
   * Re-wraps up to `limit` data keys that another master key wraps under the active one, and
   * returns how many it did. Ciphertexts stay as they are: with envelope encryption, moving the
   * data keys to the new master key is what moves the originals to it.
   */
  async rewrapDataKeys(limit: number): Promise<number> {
    return this.sql.begin(async (tx) => {
      const rows = await tx<{ id: string; subject: string; period: string; master_key_id: string; wrapped_key: Buffer }[]>`
        SELECT id::text AS id, subject, to_char(period, 'YYYY-MM-DD') AS period, master_key_id, wrapped_key
        FROM pii_data_keys WHERE master_key_id <> ${this.master.activeKeyId}
        ORDER BY pii_data_keys.id LIMIT ${limit} FOR UPDATE SKIP LOCKED`
      for (const row of rows) {
        const { keyId, wrapped } = this.master.wrap(this.master.unwrap(row.master_key_id, row.wrapped_key, wrapAad(row)), wrapAad(row))
        await tx`UPDATE pii_data_keys SET master_key_id = ${keyId}, wrapped_key = ${wrapped} WHERE id = ${row.id}`
      }
      return rows.length
    })
  }

  private async load(scopes: readonly KeyScope[]): Promise<Map<string, DataKey>> {
    if (scopes.length === 0) return new Map()
    // One probe of the unique (subject, period) index per scope, whatever the planner believes
    // of the table: as a join, the generic plan a connection caches while the table is new and
    // unanalysed hashed the wanted keys and read the whole table on every batch (10,028 scans of
    // up to 24,000 keys in a fresh database's first 100,000 messages, which slowed from 2,900 to
    // 1,870 a second). LIMIT 1 keeps the subquery from being flattened into such a join.
    const rows = await this.sql<{ id: string; subject: string; period: string; master_key_id: string; wrapped_key: Buffer }[]>`
      SELECT k.id::text AS id, k.subject, to_char(k.period, 'YYYY-MM-DD') AS period, k.master_key_id, k.wrapped_key
      FROM unnest(${this.sql.array(scopes.map((s) => s.subject))}::text[], ${this.sql.array(scopes.map((s) => s.period))}::date[]) AS w(subject, period)
      CROSS JOIN LATERAL (
        SELECT id, subject, period, master_key_id, wrapped_key FROM pii_data_keys
        WHERE subject = w.subject AND period = w.period LIMIT 1) k`
    return new Map(rows.map((row) => [
      scopeKey(row),
      { id: row.id, key: this.master.unwrap(row.master_key_id, row.wrapped_key, wrapAad(row)) },
    ]))
  }
}
