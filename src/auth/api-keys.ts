import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { ConfigError } from '../config.ts'

export const SCOPES = ['logins:read', 'ingest:run', 'pii:read', 'pii:erase', 'audit:read', 'rejected:read', 'rejected:resubmit'] as const
export type Scope = (typeof SCOPES)[number]

export interface ApiKey {
  readonly name: string
  readonly scopes: ReadonlySet<Scope>
  readonly hash: Buffer
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/

export const hashApiKey = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest()

/** A new random key: 32 bytes, base64url, with a prefix that secret scanners can spot. */
export const generateApiKey = (): string => `lik_${randomBytes(32).toString('base64url')}`

/** The `API_KEYS` entry of a key: `name:scope,scope:sha256-hex`. */
export const apiKeyEntry = (name: string, scopes: readonly Scope[], secret: string): string =>
  `${name}:${scopes.join(',')}:${hashApiKey(secret).toString('hex')}`

/**
 * Parses `API_KEYS`: entries separated by `;` or new lines, each `name:scope,scope:sha256-hex`.
 * Scopes contain a colon themselves, so the name ends at the first colon and the hash starts
 * after the last one.
 */
export function parseApiKeys(text: string): ApiKey[] {
  const keys: ApiKey[] = []
  const entries = text.split(/[;\n]/).map((e) => e.trim()).filter(Boolean)
  for (const [index, entry] of entries.entries()) {
    const first = entry.indexOf(':')
    const last = entry.lastIndexOf(':')
    const where = `entry ${index + 1}`
    if (first <= 0 || last === first) throw new ConfigError('API_KEYS', `${where} must look like name:scope,scope:sha256-hex`)
    const name = entry.slice(0, first)
    const scopes = entry.slice(first + 1, last).split(',').map((s) => s.trim()).filter(Boolean)
    const hash = entry.slice(last + 1)
    // A pasted secret must never be echoed back into an error line (and so into logs).
    if ([name, ...scopes].some((part) => part.startsWith('lik_'))) {
      throw new ConfigError('API_KEYS', `${where} holds a key itself; list only its SHA-256 hash (npm run key prints the entry)`)
    }
    if (!NAME.test(name)) throw new ConfigError('API_KEYS', `${where} has a name that is not 1-64 letters, digits, _ . or -`)
    const unknown = scopes.find((s) => !(SCOPES as readonly string[]).includes(s))
    if (unknown !== undefined) {
      const shown = /^[a-z]{1,16}:[a-z]{1,16}$/.test(unknown) ? ` ${unknown}` : ''
      throw new ConfigError('API_KEYS', `${where} (${name}) has an unknown scope${shown}; known: ${SCOPES.join(', ')}`)
    }
    if (scopes.length === 0) throw new ConfigError('API_KEYS', `${where} (${name}) has no scope`)
    if (!/^[0-9a-f]{64}$/i.test(hash)) throw new ConfigError('API_KEYS', `${where} (${name}) must end with the 64-hex-digit SHA-256 of the key (npm run key)`)
    if (keys.some((k) => k.name === name)) throw new ConfigError('API_KEYS', `name ${name} is used twice`)
    keys.push({ name, scopes: new Set(scopes as Scope[]), hash: Buffer.from(hash, 'hex') })
  }
  return keys
}

/** Finds the key a bearer token belongs to, comparing against every hash in constant time. */
export function authenticate(keys: readonly ApiKey[], token: string): ApiKey | null {
  const presented = hashApiKey(token)
  let match: ApiKey | null = null
  for (const key of keys) {
    if (timingSafeEqual(presented, key.hash) && match === null) match = key
  }
  return match
}
