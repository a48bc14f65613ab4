import assert from 'node:assert/strict'
import { createCipheriv, randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import ipaddr from 'ipaddr.js'
import { canonicalIp } from '../src/pii/ip.ts'
import { IpPrefixCipher, IpcryptKeyError } from '../src/pii/ipcrypt-pfx.ts'

/**
 * The published ipcrypt-pfx test vectors of draft-denis-ipcrypt ("Methods for IP Address
 * Encryption and Obfuscation"), appendix "Test Vectors", section "ipcrypt-pfx Test Vectors"
 * (anchor #ipcrypt-pfx-test-vectors): its "Basic Test Vectors" (vectors 1-4) and all of its
 * "Prefix-Preserving Test Vectors". Transcribed from the draft's text, not computed here.
 */
const BASIC_KEY = '0123456789abcdeffedcba98765432101032547698badcfeefcdab8967452301'
const PREFIX_KEY = '2b7e151628aed2a6abf7158809cf4f3ca9f5ba40db214c3798f2e1c23456789a'
const DRAFT_VECTORS: { section: string; key: string; ip: string; encrypted: string }[] = [
  { section: 'Basic, test vector 1 (IPv4)', key: BASIC_KEY, ip: '0.0.0.0', encrypted: '151.82.155.134' },
  { section: 'Basic, test vector 2 (IPv4)', key: BASIC_KEY, ip: '255.255.255.255', encrypted: '94.185.169.89' },
  { section: 'Basic, test vector 3 (IPv4)', key: BASIC_KEY, ip: '192.0.2.1', encrypted: '100.115.72.131' },
  { section: 'Basic, test vector 4 (IPv6)', key: BASIC_KEY, ip: '2001:db8::1', encrypted: 'c180:5dd4:2587:3524:30ab:fa65:6ab6:f88' },
  { section: 'Prefix-preserving, same /24 (10.0.0.0/24)', key: PREFIX_KEY, ip: '10.0.0.47', encrypted: '19.214.210.244' },
  { section: 'Prefix-preserving, same /24 (10.0.0.0/24)', key: PREFIX_KEY, ip: '10.0.0.129', encrypted: '19.214.210.80' },
  { section: 'Prefix-preserving, same /24 (10.0.0.0/24)', key: PREFIX_KEY, ip: '10.0.0.234', encrypted: '19.214.210.30' },
  { section: 'Prefix-preserving, same /16, other /24', key: PREFIX_KEY, ip: '172.16.5.193', encrypted: '210.78.229.136' },
  { section: 'Prefix-preserving, same /16, other /24', key: PREFIX_KEY, ip: '172.16.97.42', encrypted: '210.78.179.241' },
  { section: 'Prefix-preserving, same /16, other /24', key: PREFIX_KEY, ip: '172.16.248.177', encrypted: '210.78.121.215' },
  { section: 'Prefix-preserving, same /64 (2001:db8::/64)', key: PREFIX_KEY, ip: '2001:db8::a5c9:4e2f:bb91:5a7d', encrypted: '7cec:702c:1243:f70:1956:125:b9bd:1aba' },
  { section: 'Prefix-preserving, same /64 (2001:db8::/64)', key: PREFIX_KEY, ip: '2001:db8::7234:d8f1:3c6e:9a52', encrypted: '7cec:702c:1243:f70:a3ef:c8e:95c1:cd0d' },
  { section: 'Prefix-preserving, same /64 (2001:db8::/64)', key: PREFIX_KEY, ip: '2001:db8::f1e0:937b:26d4:8c1a', encrypted: '7cec:702c:1243:f70:443c:c8e:6a62:b64d' },
  { section: 'Prefix-preserving, same /32, other /48', key: PREFIX_KEY, ip: '2001:db8:3a5c::e7d1:4b9f:2c8a:f673', encrypted: '7cec:702c:3503:bef:e616:96bd:be33:a9b9' },
  { section: 'Prefix-preserving, same /32, other /48', key: PREFIX_KEY, ip: '2001:db8:9f27::b4e2:7a3d:5f91:c8e6', encrypted: '7cec:702c:a504:b74e:194a:3d90:b047:2d1a' },
  { section: 'Prefix-preserving, same /32, other /48', key: PREFIX_KEY, ip: '2001:db8:d8b4::193c:a5e7:8b2f:46d1', encrypted: '7cec:702c:f840:aa67:1b8:e84f:ac9d:77fb' },
]

const cipherFor = (hex: string): Promise<IpPrefixCipher> => IpPrefixCipher.create(Buffer.from(hex, 'hex'))

/** An address's bits, most significant first: 32 for IPv4, 128 for IPv6. */
function bits(address: string): number[] {
  return ipaddr.parse(address).toByteArray().flatMap((byte) => [7, 6, 5, 4, 3, 2, 1, 0].map((i) => (byte >> i) & 1))
}

function commonPrefixLength(a: string, b: string): number {
  const x = bits(a)
  const y = bits(b)
  let n = 0
  while (n < x.length && x[n] === y[n]) n++
  return n
}

function flipBit(bytes: number[], position: number): string {
  const copy = [...bytes]
  copy[position >> 3] = (copy[position >> 3] as number) ^ (0x80 >> (position & 7))
  const address = ipaddr.fromByteArray(copy)
  return address.kind() === 'ipv4' ? address.toString() : (address as ipaddr.IPv6).toNormalizedString()
}

/**
 * A line-by-line transcription of the draft's pseudocode (ipcrypt_pfx_encrypt with pad_prefix,
 * get_bit, set_bit, shift_left_one_bit) over node:crypto AES-128, used only to cross-check
 * the library on addresses the vectors do not cover.
 */
function draftPseudocodeEncrypt(bytes16: Uint8Array, key: Buffer, ipv4: boolean): Uint8Array {
  const k1 = createCipheriv('aes-128-ecb', key.subarray(0, 16), null).setAutoPadding(false)
  const k2 = createCipheriv('aes-128-ecb', key.subarray(16, 32), null).setAutoPadding(false)
  const getBit = (data: Uint8Array, position: number): number => ((data[15 - (position >> 3)] as number) >> (position & 7)) & 1
  const setBit = (data: Uint8Array, position: number, value: number): void => {
    data[15 - (position >> 3)] = (data[15 - (position >> 3)] as number) | ((value & 1) << (position & 7))
  }
  const shiftLeftOneBit = (data: Uint8Array): Uint8Array => {
    const result = new Uint8Array(16)
    let carry = 0
    for (let i = 15; i >= 0; i--) {
      result[i] = (((data[i] as number) << 1) | carry) & 0xff
      carry = ((data[i] as number) >> 7) & 1
    }
    return result
  }
  const encrypted = new Uint8Array(16)
  const prefixStart = ipv4 ? 96 : 0
  let paddedPrefix: Uint8Array = new Uint8Array(16)
  if (ipv4) {
    encrypted.set(bytes16.subarray(0, 12))
    paddedPrefix[3] = 0x01
    paddedPrefix[14] = 0xff
    paddedPrefix[15] = 0xff
  } else {
    paddedPrefix[15] = 0x01
  }
  for (let prefixLenBits = prefixStart; prefixLenBits < 128; prefixLenBits++) {
    const e1 = k1.update(paddedPrefix)
    const e2 = k2.update(paddedPrefix)
    const cipherBit = ((e1[15] as number) ^ (e2[15] as number)) & 1
    const bitPos = 127 - prefixLenBits
    const originalBit = getBit(bytes16, bitPos)
    setBit(encrypted, bitPos, cipherBit ^ originalBit)
    paddedPrefix = shiftLeftOneBit(paddedPrefix)
    setBit(paddedPrefix, 0, originalBit)
  }
  return encrypted
}

const ipv4Bytes = fc.uint8Array({ minLength: 4, maxLength: 4 })
const ipv6Bytes = fc.uint8Array({ minLength: 16, maxLength: 16 })

describe('ipcrypt-pfx', () => {
  for (const vector of DRAFT_VECTORS) {
    test(`draft vector: ${vector.section}: ${vector.ip}`, async () => {
      const cipher = await cipherFor(vector.key)
      assert.equal(cipher.encrypt(vector.ip), vector.encrypted)
      // The draft writes some inputs with '::' for one zero group, which RFC 5952 output does not.
      assert.equal(canonicalIp(cipher.decrypt(vector.encrypted) ?? ''), canonicalIp(vector.ip))
    })
  }

  test('IPv4-mapped IPv6 and other spellings give the IPv4 pseudonym; non-addresses give null', async () => {
    const cipher = await cipherFor(BASIC_KEY)
    assert.equal(cipher.encrypt('::ffff:192.0.2.1'), '100.115.72.131')
    assert.equal(cipher.encrypt('::ffff:c000:201'), '100.115.72.131')
    assert.equal(cipher.encrypt(' 192.0.2.1 '), '100.115.72.131')
    assert.equal(cipher.encrypt('2001:0db8:0000:0000:0000:0000:0000:0001'), 'c180:5dd4:2587:3524:30ab:fa65:6ab6:f88')
    assert.equal(cipher.encrypt('2001:DB8::1'), 'c180:5dd4:2587:3524:30ab:fa65:6ab6:f88')
    for (const text of ['', 'not an ip', '1.2.3', '256.1.1.1', '01.2.3.4', '::g']) assert.equal(cipher.encrypt(text), null, text)
  })

  test('refuses keys the draft forbids: not 32 bytes, or equal halves', async () => {
    await assert.rejects(IpPrefixCipher.create(randomBytes(16)), IpcryptKeyError)
    await assert.rejects(IpPrefixCipher.create(randomBytes(33)), IpcryptKeyError)
    const half = randomBytes(16)
    await assert.rejects(IpPrefixCipher.create(Buffer.concat([half, half])), /halves/)
  })

  test('agrees with a transcription of the draft pseudocode on random keys and addresses', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.oneof(ipv4Bytes, ipv6Bytes), async (keyBytes, raw) => {
        fc.pre(Buffer.compare(keyBytes.subarray(0, 16), keyBytes.subarray(16)) !== 0)
        const key = Buffer.from(keyBytes)
        const cipher = await IpPrefixCipher.create(key)
        const v4 = raw.length === 4
        const bytes16 = v4 ? Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...raw]) : raw
        const expected = draftPseudocodeEncrypt(bytes16, key, v4)
        const expectedText = v4 ? Array.from(expected.subarray(12)).join('.') : (ipaddr.fromByteArray(Array.from(expected)) as ipaddr.IPv6).toRFC5952String()
        const ip = ipaddr.fromByteArray(Array.from(raw)).toString()
        assert.equal(cipher.encrypt(ip), expectedText)
      }),
      { numRuns: 200 },
    )
  })

  test('the pseudonyms of two addresses share exactly as many leading bits as the addresses', async () => {
    const cipher = await IpPrefixCipher.create(randomBytes(32))
    // The second address is the first with one bit flipped, so every shared prefix length occurs.
    const pair = fc.oneof(
      fc.tuple(ipv4Bytes, fc.integer({ min: 0, max: 31 })),
      fc.tuple(ipv6Bytes, fc.integer({ min: 0, max: 127 })),
    )
    fc.assert(
      fc.property(pair, fc.nat({ max: 127 }), ([raw, position], other) => {
        const a = flipBit(Array.from(raw), position)
        // a and b: two flips of one address, sharing the prefix before the first flipped bit
        const b = flipBit(Array.from(raw), other % (raw.length * 8))
        const x = ipaddr.fromByteArray(Array.from(raw)).toString()
        for (const [p, q] of [[x, a], [a, b]] as const) {
          const ep = cipher.encrypt(p)
          const eq = cipher.encrypt(q)
          assert.ok(ep !== null && eq !== null)
          assert.equal(ipaddr.parse(ep).kind(), ipaddr.parse(p).kind(), 'IPv4 stays IPv4, IPv6 stays IPv6')
          assert.equal(commonPrefixLength(ep, eq), commonPrefixLength(p, q), `${p} / ${q}`)
        }
        assert.equal(commonPrefixLength(x, a), position, 'the generator covers this prefix length')
      }),
      { numRuns: 2000 },
    )
  })

  test('decrypt(encrypt(x)) = x for IPv4 and IPv6', async () => {
    const cipher = await IpPrefixCipher.create(randomBytes(32))
    fc.assert(
      fc.property(fc.oneof(ipv4Bytes, ipv6Bytes), (raw) => {
        const address = ipaddr.fromByteArray(Array.from(raw))
        // IPv4-mapped IPv6 is the IPv4 address for this service (canonicalIp), so it comes back as IPv4.
        const text = address.kind() === 'ipv4' ? address.toString() : (address as ipaddr.IPv6).toRFC5952String()
        const expected = address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()
          ? (address as ipaddr.IPv6).toIPv4Address().toString()
          : text
        const pseudonym = cipher.encrypt(text)
        assert.ok(pseudonym !== null)
        assert.equal(cipher.decrypt(pseudonym), expected)
      }),
      { numRuns: 2000 },
    )
  })
})
