import { createHmac } from 'node:crypto'
import { canonicalIp } from './ip.ts'
import type { Keyring } from './keys.ts'

/**
 * Keyed pseudonyms: `<key id>:<base64url HMAC-SHA256>`. Equal inputs under one key give equal
 * masks; without the key nobody can test guesses, unlike a plain hash of a 32-bit IPv4 space.
 * Each field has its own domain so an ip and a device id with the same text never collide.
 */
export class Masker {
  constructor(private readonly keys: Keyring) {}

  get keyId(): string {
    return this.keys.active.id
  }

  /** Canonical addresses share a mask across spellings; unparseable text is masked as sent (trimmed) in its own domain. */
  maskIp(ip: string): string {
    const canonical = canonicalIp(ip)
    return canonical === null ? this.mac('ip-unparsed', ip.trim()) : this.mac('ip', canonical)
  }

  maskDeviceId(deviceId: string): string {
    return this.mac('device_id', deviceId)
  }

  private mac(domain: string, value: string): string {
    const key = this.keys.active
    const digest = createHmac('sha256', key.secret).update(domain).update('\0').update(value).digest('base64url')
    return `${key.id}:${digest}`
  }
}
