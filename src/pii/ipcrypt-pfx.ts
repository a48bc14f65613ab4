import ipaddr from 'ipaddr.js'
import { canonicalIp } from './ip.ts'

/** ipcrypt-pfx takes one 32-byte key: two AES-128 keys, K1 then K2. */
export const IPCRYPT_PFX_KEY_BYTES = 32

export class IpcryptKeyError extends Error {
  readonly code = 'IPCRYPT_KEY_INVALID'
}

/** The two libsodium functions used, as the wrapper exposes them (16 bytes in, 16 bytes out). */
interface PfxPrimitive {
  crypto_ipcrypt_pfx_encrypt(input: Uint8Array, key: Uint8Array): Uint8Array
  crypto_ipcrypt_pfx_decrypt(input: Uint8Array, key: Uint8Array): Uint8Array
}

let loading: Promise<PfxPrimitive> | null = null

/**
 * Loads libsodium (its WebAssembly build) once. Imported on first use only, so a service without
 * IP_PREFIX_KEYS never loads it.
 */
async function primitive(): Promise<PfxPrimitive> {
  loading ??= import('libsodium-wrappers').then(async ({ default: sodium }) => {
    await sodium.ready
    return sodium
  })
  return loading
}

/**
 * ipcrypt-pfx (draft-denis-ipcrypt, "Prefix-Preserving Encryption"): addresses that share their
 * first N bits get pseudonyms that share their first N bits, and nothing else about them shows.
 * IPv4 (and IPv4-mapped IPv6) encrypts within the ::ffff:0:0/96 block and is written as IPv4;
 * IPv6 is written in the RFC 5952 form PostgreSQL's inet prints. Reversible with the key.
 */
export class IpPrefixCipher {
  private constructor(
    private readonly sodium: PfxPrimitive,
    private readonly key: Uint8Array,
  ) {}

  static async create(key: Uint8Array): Promise<IpPrefixCipher> {
    if (key.length !== IPCRYPT_PFX_KEY_BYTES) throw new IpcryptKeyError(`an ipcrypt-pfx key has ${IPCRYPT_PFX_KEY_BYTES} bytes, not ${key.length}`)
    // The draft forbids K1 = K2: the two AES outputs would cancel and every address map to itself.
    if (Buffer.compare(key.subarray(0, 16), key.subarray(16, 32)) === 0) {
      throw new IpcryptKeyError('the two 16-byte halves of an ipcrypt-pfx key must differ')
    }
    return new IpPrefixCipher(await primitive(), Uint8Array.from(key))
  }

  /** The pseudonym of an address in any spelling canonicalIp accepts; null when the text is not an address. */
  encrypt(ip: string): string | null {
    const bytes = toBytes16(ip)
    return bytes === null ? null : fromBytes16(this.sodium.crypto_ipcrypt_pfx_encrypt(bytes.bytes, this.key), bytes.v4)
  }

  /** The address behind a pseudonym; null when the text is not an address. */
  decrypt(pseudonym: string): string | null {
    const bytes = toBytes16(pseudonym)
    return bytes === null ? null : fromBytes16(this.sodium.crypto_ipcrypt_pfx_decrypt(bytes.bytes, this.key), bytes.v4)
  }
}

/** The 16-byte form the draft encrypts: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
function toBytes16(text: string): { bytes: Uint8Array; v4: boolean } | null {
  const canonical = canonicalIp(text)
  if (canonical === null) return null
  const address = ipaddr.parse(canonical)
  if (address.kind() === 'ipv4') return { bytes: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...address.toByteArray()]), v4: true }
  return { bytes: Uint8Array.from(address.toByteArray()), v4: false }
}

function fromBytes16(bytes: Uint8Array, v4: boolean): string {
  if (v4) return Array.from(bytes.subarray(12, 16)).join('.')
  return (ipaddr.fromByteArray(Array.from(bytes)) as ipaddr.IPv6).toRFC5952String()
}
