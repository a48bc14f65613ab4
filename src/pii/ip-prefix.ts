import ipaddr from 'ipaddr.js'
import { ConfigError } from '../config.ts'
import { canonicalIp } from './ip.ts'
import { IPCRYPT_PFX_KEY_BYTES, IpPrefixCipher } from './ipcrypt-pfx.ts'
import { parseKeyring, type Keyring } from './keys.ts'

/**
 * Parses IP_PREFIX_KEYS like MASK_KEYS (`id:base64,...`, first active), with the draft's rules
 * for an ipcrypt-pfx key: exactly 32 bytes, whose two halves differ.
 */
export function parseIpPrefixKeys(text: string): Keyring {
  const keys = parseKeyring('IP_PREFIX_KEYS', text)
  for (const key of keys.all.values()) {
    if (key.secret.length !== IPCRYPT_PFX_KEY_BYTES) {
      throw new ConfigError('IP_PREFIX_KEYS', `key ${key.id} must be base64 of exactly ${IPCRYPT_PFX_KEY_BYTES} random bytes (e.g. openssl rand -base64 32)`)
    }
    if (key.secret.subarray(0, 16).equals(key.secret.subarray(16))) {
      throw new ConfigError('IP_PREFIX_KEYS', `key ${key.id} has two equal 16-byte halves, which would leave addresses unchanged`)
    }
  }
  return keys
}

export class IpPrefixKeyError extends Error {
  readonly code = 'IP_PREFIX_KEY_UNAVAILABLE'
}

/** A network of pseudonyms, as a filter takes it: `<address>/<bits>`. */
export interface PseudonymNetwork {
  /** the network in PostgreSQL's inet text, host bits cleared */
  cidr: string
  /** its lowest and highest address: the bounds of a range scan over the stored host addresses */
  first: string
  last: string
  family: 4 | 6
  bits: number
}

/** Smallest prefix a network filter or report takes: shorter ones would lump unrelated users together. */
export const NETWORK_BITS = { 4: { min: 8, max: 32 }, 6: { min: 16, max: 128 } } as const

/**
 * Prefix-preserving pseudonyms of ips (ipcrypt-pfx), `<key id>:<pseudonymised address>`, for
 * network-level questions (users per /24) without the addresses. Reversible by the key holder.
 */
export class IpPrefixer {
  private constructor(
    private readonly keys: Keyring,
    private readonly ciphers: ReadonlyMap<string, IpPrefixCipher>,
  ) {}

  static async create(keys: Keyring): Promise<IpPrefixer> {
    const ciphers = new Map<string, IpPrefixCipher>()
    for (const key of keys.all.values()) ciphers.set(key.id, await IpPrefixCipher.create(key.secret))
    return new IpPrefixer(keys, ciphers)
  }

  /** The key new pseudonyms are written with: the first listed. */
  get keyId(): string {
    return this.keys.active.id
  }

  has(keyId: string): boolean {
    return this.ciphers.has(keyId)
  }

  /** The stored form, `<key id>:<address>`; null when the text is not an address. */
  pseudonym(ip: string, keyId = this.keys.active.id): string | null {
    const address = this.cipher(keyId).encrypt(ip)
    return address === null ? null : `${keyId}:${address}`
  }

  /** The original address behind a stored pseudonym; null when it is not one of ours. */
  reveal(stored: string): string | null {
    const colon = stored.indexOf(':')
    const cipher = colon > 0 ? this.ciphers.get(stored.slice(0, colon)) : undefined
    return cipher === undefined ? null : cipher.decrypt(stored.slice(colon + 1))
  }

  private cipher(keyId: string): IpPrefixCipher {
    const cipher = this.ciphers.get(keyId)
    if (cipher === undefined) throw new IpPrefixKeyError(`IP_PREFIX_KEYS: key ${keyId} is not configured on this replica`)
    return cipher
  }
}

/** The address part of a stored pseudonym, for the inet column beside it. */
export function pseudonymAddress(stored: string | null): string | null {
  return stored === null ? null : stored.slice(stored.indexOf(':') + 1)
}

/**
 * Reads a network filter: `<pseudonymised address>/<bits>`, optionally as `<key id>:<address>/<bits>`
 * (the form the network report prints), under the active key otherwise. A string saying what
 * is wrong when it is not one. IPv4 takes 8-32 bits and IPv6 16-128 (NETWORK_BITS).
 */
export function parsePseudonymNetwork(text: string, prefixer: IpPrefixer): (PseudonymNetwork & { keyId: string }) | string {
  const slash = text.lastIndexOf('/')
  if (slash < 0) return 'must look like <pseudonymised address>/<bits>, e.g. 19.214.210.0/24'
  let keyId = prefixer.keyId
  let addressText = text.slice(0, slash)
  let canonical = canonicalIp(addressText)
  const colon = addressText.indexOf(':')
  if (canonical === null && colon > 0 && prefixer.has(addressText.slice(0, colon))) {
    keyId = addressText.slice(0, colon)
    addressText = addressText.slice(colon + 1)
    canonical = canonicalIp(addressText)
  }
  if (canonical === null) return 'must start with an IPv4 or IPv6 address (a pseudonym from masked_ip_prefix) before the /'
  const address = ipaddr.parse(canonical)
  const family = address.kind() === 'ipv4' ? 4 : 6
  const range = NETWORK_BITS[family]
  const bitsText = text.slice(slash + 1)
  const bits = /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : Number.NaN
  if (!(bits >= range.min && bits <= range.max)) return `bits after the / must be an integer from ${range.min} to ${range.max} for an IPv${family} network`
  const cidr = `${canonical}/${bits}`
  const [first, last] = family === 4
    ? [ipaddr.IPv4.networkAddressFromCIDR(cidr).toString(), ipaddr.IPv4.broadcastAddressFromCIDR(cidr).toString()]
    : [ipaddr.IPv6.networkAddressFromCIDR(cidr).toRFC5952String(), ipaddr.IPv6.broadcastAddressFromCIDR(cidr).toRFC5952String()]
  return { keyId, cidr: `${first}/${bits}`, first, last, family, bits }
}
