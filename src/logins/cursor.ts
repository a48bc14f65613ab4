/**
 * Opaque page cursors: base64url of `v1:<last id>`. Opaque so clients do not build them, and
 * versioned so the format can change; anything else is rejected as malformed.
 */
export function encodeCursor(lastId: string): string {
  return Buffer.from(`v1:${lastId}`, 'utf8').toString('base64url')
}

export function decodeCursor(cursor: string): bigint | null {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cursor)) return null
  const match = /^v1:([1-9]\d{0,18})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'))
  if (match?.[1] === undefined) return null
  const id = BigInt(match[1])
  return id <= 9_223_372_036_854_775_807n ? id : null
}
