import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Opaque page cursors: base64url JSON of the page's last sort key, signed with an HMAC so a
 * client can neither build nor edit one (an edited cursor is a 400, not a silently different
 * page). The signing key is derived from a service secret, so every replica accepts them.
 */
export class CursorCodec {
  private readonly key: Buffer

  constructor(secret: Buffer) {
    this.key = createHmac('sha256', secret).update('login-ingest/cursor/v1').digest()
  }

  encode(kind: string, values: readonly (string | number)[]): string {
    const body = Buffer.from(JSON.stringify([kind, ...values]), 'utf8').toString('base64url')
    return `${body}.${this.sign(body)}`
  }

  /** The values of a cursor of this kind, or null when it is malformed, of another kind, or edited. */
  decode(kind: string, cursor: string): unknown[] | null {
    const match = /^([A-Za-z0-9_-]{1,800})\.([A-Za-z0-9_-]{22})$/.exec(cursor)
    if (match === null) return null
    const [, body = '', mac = ''] = match
    if (!timingSafeEqual(Buffer.from(this.sign(body)), Buffer.from(mac))) return null
    try {
      const parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as unknown
      if (!Array.isArray(parsed) || parsed[0] !== kind) return null
      return parsed.slice(1)
    } catch {
      return null
    }
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key).update(body).digest().subarray(0, 16).toString('base64url')
  }
}

/** A positive bigint id as written in a cursor or a path, or null. */
export function parseId(text: unknown): bigint | null {
  if (typeof text !== 'string' || !/^[1-9]\d{0,18}$/.test(text)) return null
  const id = BigInt(text)
  return id <= 9_223_372_036_854_775_807n ? id : null
}
