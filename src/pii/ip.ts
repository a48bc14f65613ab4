import ipaddr from 'ipaddr.js'

const FOUR_PART_DECIMAL = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/

/**
 * The one textual form of an IP address that every spelling of it maps to, or null when the
 * text is not an address. IPv4 must be dotted decimal without leading zeros (as inet_pton reads
 * it); IPv4-mapped IPv6 becomes its IPv4 address; IPv6 becomes its eight-group form without zero compression.
 */
export function canonicalIp(text: string): string | null {
  const trimmed = text.trim()
  // Fast path for the common case, same answer as ipaddr.IPv4.isValidFourPartDecimal + parse:
  // dotted decimal without leading zeros is its own canonical form when every part fits in a
  // byte, and is no address at all otherwise.
  const v4 = FOUR_PART_DECIMAL.exec(trimmed)
  if (v4 !== null) return v4.slice(1).every((part) => part.length <= 3 && Number(part) <= 255) ? trimmed : null
  const hex = withHexTail(trimmed)
  if (hex === null || !ipaddr.IPv6.isValid(hex)) return null
  const v6 = ipaddr.IPv6.parse(hex)
  if (v6.zoneId !== undefined) v6.zoneId = undefined
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString()
  return v6.toNormalizedString()
}

/**
 * Rewrites an IPv6 address's dotted IPv4 tail (`::ffff:1.2.3.4`) as two hex groups, which
 * ipaddr.js would otherwise read loosely: it takes `::1.2.3.4` for `::ffff:1.2.3.4` (a different
 * address from `::102:304`) and `010` as decimal 10. Null when the tail is not plain dotted decimal.
 */
function withHexTail(address: string): string | null {
  const zoneAt = address.indexOf('%')
  const base = zoneAt < 0 ? address : address.slice(0, zoneAt)
  const zone = zoneAt < 0 ? '' : address.slice(zoneAt)
  const colon = base.lastIndexOf(':')
  const tail = base.slice(colon + 1)
  if (!tail.includes('.')) return address
  if (colon < 0 || !ipaddr.IPv4.isValidFourPartDecimal(tail)) return null
  const [a = 0, b = 0, c = 0, d = 0] = ipaddr.IPv4.parse(tail).octets
  return `${base.slice(0, colon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}${zone}`
}
