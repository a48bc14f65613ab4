import { createHmac } from 'node:crypto'
import { ConfigError } from '../config.ts'

/** One secret of a keyring: its id (written next to what it produced) and its bytes. */
export interface Key {
  readonly id: string
  readonly secret: Buffer
}

/** An ordered set of keys: the first is active (used for new data), the others only read old data. */
export interface Keyring {
  readonly active: Key
  readonly all: ReadonlyMap<string, Key>
}

const KEY_ID = /^[A-Za-z0-9_-]{1,16}$/

/**
 * Parses `id:base64,id:base64` (first entry active). Each secret must decode to at least 32
 * bytes. Errors name the variable and the entry, never the secret.
 */
export function parseKeyring(variable: string, text: string): Keyring {
  const all = new Map<string, Key>()
  const entries = text.split(',').map((entry) => entry.trim()).filter(Boolean)
  for (const [index, entry] of entries.entries()) {
    const colon = entry.indexOf(':')
    const id = colon > 0 ? entry.slice(0, colon) : ''
    if (!KEY_ID.test(id)) {
      throw new ConfigError(variable, `entry ${index + 1} must look like <id>:<base64 secret>, with an id of 1-16 letters, digits, _ or -`)
    }
    const encoded = entry.slice(colon + 1)
    const secret = Buffer.from(encoded, 'base64')
    if (secret.length < 32 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(encoded)) {
      throw new ConfigError(variable, `key ${id} must be base64 of at least 32 random bytes (e.g. openssl rand -base64 32)`)
    }
    if (all.has(id)) throw new ConfigError(variable, `key id ${id} is listed twice`)
    all.set(id, { id, secret })
  }
  const active = all.values().next().value
  if (active === undefined) throw new ConfigError(variable, 'must list at least one key')
  return { active, all }
}

/** A short, non-reversible digest that tells whether a stored key id still has the same secret. */
export function keyFingerprint(key: Key): Buffer {
  return createHmac('sha256', key.secret).update('login-ingest/key-fingerprint/v1').digest().subarray(0, 16)
}
