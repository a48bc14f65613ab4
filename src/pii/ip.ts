import ipaddr from 'ipaddr.js'

/**
 * The one textual form of an IP address that every spelling of it maps to, or null when the
 * text is not an address. IPv4 must be dotted decimal without leading zeros (as inet_pton reads
 * it); IPv4-mapped IPv6 becomes its IPv4 address; IPv6 becomes its eight-group form without zero compression.
 */
export function canonicalIp(text: string): string | null {
  const trimmed = text.trim()
  if (ipaddr.IPv4.isValidFourPartDecimal(trimmed)) return ipaddr.IPv4.parse(trimmed).toString()
  if (!ipaddr.IPv6.isValid(trimmed)) return null
  const v6 = ipaddr.IPv6.parse(trimmed)
  if (v6.zoneId !== undefined) v6.zoneId = undefined
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString()
  return v6.toNormalizedString()
}
