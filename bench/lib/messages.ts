/**
 * Generated login messages with realistic values: UUID user ids who log in several times, IPv4
 * and IPv6 addresses (several spellings, IPv4-mapped too) that repeat across logins, device ids
 * like the exercise's, locales including null and missing, dotted versions, and about 1%
 * malformed bodies of the kinds a real queue sees. Seeded, so every run sends the same bodies.
 */

/** Mulberry32: small, fast, good enough to pick test values. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const DEVICE_TYPES = ['android', 'android', 'ios', 'ios', 'web', 'ipados'] as const
const LOCALES = ['RU', 'PH', 'ID', 'FR', 'BR', 'KE', 'PE', 'KR', 'CN', 'MT', 'GR', 'US', 'DE', 'en-US', 'pt_BR'] as const
const VERSIONS = ['2.3.0', '0.2.6', '2.2.1', '0.96', '0.4.6', '3.7', '2.2.8', '0.5.5', '0.60', '6.4.8', '0.16', '2.0.8', '7.31', '2.00', '5.4.8', '1.1', '3.0', '10.12.1', '2.20', '1.0.0-beta'] as const

const hex = (random: () => number, digits: number): string => {
  let out = ''
  for (let i = 0; i < digits; i++) out += Math.floor(random() * 16).toString(16)
  return out
}

const uuid = (random: () => number): string =>
  `${hex(random, 8)}-${hex(random, 4)}-4${hex(random, 3)}-${'89ab'[Math.floor(random() * 4)]}${hex(random, 3)}-${hex(random, 12)}`

const octet = (random: () => number): number => Math.floor(random() * 256)

function ipv6(random: () => number): string {
  const groups = Array.from({ length: 8 }, () => Math.floor(random() * 65536).toString(16))
  const form = random()
  if (form < 0.5) {
    // Compressed: a run of zero groups written as ::
    const start = 2 + Math.floor(random() * 3)
    return `${groups.slice(0, start).join(':')}::${groups.slice(start + 2).join(':')}`
  }
  if (form < 0.8) return groups.join(':')
  return groups.map((g) => g.padStart(4, '0').toUpperCase()).join(':')
}

function ipAddress(random: () => number): string {
  const kind = random()
  const v4 = `${1 + Math.floor(random() * 223)}.${octet(random)}.${octet(random)}.${1 + Math.floor(random() * 254)}`
  if (kind < 0.7) return v4
  if (kind < 0.95) return ipv6(random)
  if (kind < 0.99) return `::ffff:${v4}`
  return 'unknown' // not an address: masked as sent, in a domain of its own
}

const deviceId = (random: () => number): string =>
  `${String(Math.floor(random() * 1000)).padStart(3, '0')}-${String(Math.floor(random() * 100)).padStart(2, '0')}-${String(Math.floor(random() * 10000)).padStart(4, '0')}`

const MALFORMED: ((random: () => number, user: string) => string)[] = [
  () => '{"foo": "oops_wrong_msg_type", "bar": "123"}',
  (random) => `not json ${hex(random, 6)}`,
  (_random, user) => JSON.stringify({ user_id: user, app_version: 2.3, device_type: 'android', ip: '10.1.2.3', locale: 'RU', device_id: '111-22-3333' }),
  (_random, user) => JSON.stringify({ user_id: user, app_version: '1.0', device_type: 'ios', ip: '10.1.2.3', locale: null }),
  (_random, user) => JSON.stringify({ user_id: user, app_version: '1.0', device_type: 'x'.repeat(40), ip: '10.1.2.3', locale: 'RU', device_id: '111-22-3333' }),
  () => '[1, 2, 3]',
]

export interface MessageSource {
  /** the body of message `i` (0-based) */
  body(i: number): string
  /** whether message `i` is one of the malformed ones */
  malformed(i: number): boolean
}

/**
 * `count` messages from pools sized for repeats: a user logs in about four times, an address or
 * device id is seen about three times on average (skewed: a few are seen very often).
 */
export function messageSource(count: number, seed = 1): MessageSource {
  const random = prng(seed)
  const pool = (size: number, make: (r: () => number) => string): string[] => Array.from({ length: size }, () => make(random))
  const users = pool(Math.max(100, Math.ceil(count / 4)), uuid)
  const ips = pool(Math.max(100, Math.ceil(count / 3)), ipAddress)
  const devices = pool(Math.max(100, Math.ceil(count / 3)), deviceId)
  const pick = <T>(r: () => number, items: readonly T[], skew = 1): T => items[Math.floor(r() ** skew * items.length)] as T
  // One PRNG per message: message i is the same whatever order the bodies are asked for.
  const perMessage = (i: number): (() => number) => prng(seed * 1_000_003 + i)
  const isMalformed = (i: number): boolean => perMessage(i)() < 0.01
  return {
    malformed: isMalformed,
    body(i) {
      const r = perMessage(i)
      const malformed = r() < 0.01
      const user = pick(r, users)
      if (malformed) return (MALFORMED[Math.floor(r() * MALFORMED.length)] as (typeof MALFORMED)[number])(r, user)
      const localeRoll = r()
      const body: Record<string, unknown> = {
        user_id: user,
        app_version: pick(r, VERSIONS),
        device_type: pick(r, DEVICE_TYPES),
        ip: pick(r, ips, 2),
        ...(localeRoll < 0.05 ? {} : { locale: localeRoll < 0.3 ? null : pick(r, LOCALES) }),
        device_id: pick(r, devices, 2),
      }
      return JSON.stringify(body)
    },
  }
}
