import { createHmac } from 'node:crypto'
import { canonicalIp } from './ip.ts'
import type { Key, Keyring } from './keys.ts'
import { MaskKeyError } from './mask-keys.ts'

/**
 * Keyed pseudonyms: `<key id>:<base64url HMAC-SHA256>`. Equal inputs under one key give equal
 * masks; without the key nobody can test guesses, unlike a plain hash of a 32-bit IPv4 space.
 * Each field has its own domain so an ip and a device id with the same text never collide.
 * Which key masks is the database's choice (see mask-keys.ts); the default is the first listed.
 */
export class Masker {
  constructor(private readonly keys: Keyring) {}

  get keyId(): string {
    return this.keys.active.id
  }

  has(keyId: string): boolean {
    return this.keys.all.has(keyId)
  }

  /** every configured key id, the active one first */
  keyIds(): string[] {
    return [this.keys.active.id, ...[...this.keys.all.keys()].filter((id) => id !== this.keys.active.id)]
  }

  /** Canonical addresses share a mask across spellings; unparseable text is masked as sent (trimmed) in its own domain. */
  maskIp(ip: string, keyId = this.keys.active.id): string {
    const canonical = canonicalIp(ip)
    return canonical === null ? this.mac(keyId, 'ip-unparsed', ip.trim()) : this.mac(keyId, 'ip', canonical)
  }

  maskDeviceId(deviceId: string, keyId = this.keys.active.id): string {
    return this.mac(keyId, 'device_id', deviceId)
  }

  private key(keyId: string): Key {
    const key = this.keys.all.get(keyId)
    if (key === undefined) throw new MaskKeyError(`MASK_KEYS: mask key ${keyId} is in use by the database but not configured on this replica`)
    return key
  }

  private mac(keyId: string, domain: string, value: string): string {
    const key = this.key(keyId)
    const digest = createHmac('sha256', key.secret).update(domain).update('\0').update(value).digest('base64url')
    return `${key.id}:${digest}`
  }
}
