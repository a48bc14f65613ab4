import { createHmac, randomBytes } from 'node:crypto'
import type { LoginMessage } from '../ingest/message.ts'

/**
 * Random bytes from node:crypto: fresh ones, or with a seed an HMAC-SHA256 counter stream, so
 * a seed gives the same events on every run and every machine.
 */
export class RandomSource {
  private pool = Buffer.alloc(0)
  private counter = 0n

  constructor(private readonly seed?: string) {}

  bytes(n: number): Buffer {
    if (this.seed === undefined) return randomBytes(n)
    while (this.pool.length < n) {
      const block = Buffer.alloc(8)
      block.writeBigUInt64BE(this.counter++)
      this.pool = Buffer.concat([this.pool, createHmac('sha256', this.seed).update(block).digest()])
    }
    const out = this.pool.subarray(0, n)
    this.pool = this.pool.subarray(n)
    return out
  }

  /** uniform in [0, 1), 48 bits */
  float(): number {
    return this.bytes(6).readUIntBE(0, 6) / 2 ** 48
  }

  /** uniform integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.float() * n)
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T
  }
}

const LOCALES = ['RU', 'PH', 'ID', 'FR', 'PT', 'BR', 'KE', 'PE', 'KR', 'CN', 'MT', 'GR', 'MD', 'NI', 'US', 'PA', 'CZ', 'UA', 'CA', 'VN', 'DE', 'PL', 'MX', 'TH']

function uuid(random: RandomSource): string {
  const b = random.bytes(16)
  b[6] = ((b[6] as number) & 0x0f) | 0x40
  b[8] = ((b[8] as number) & 0x3f) | 0x80
  const hex = b.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** A public-looking IPv4 address (no 0, 10, 127 or multicast first octet). */
function ipv4(random: RandomSource): string {
  let first = 1 + random.int(223)
  if (first === 10 || first === 127) first++
  return `${first}.${random.int(256)}.${random.int(256)}.${1 + random.int(254)}`
}

const digits = (random: RandomSource, n: number): string => Array.from({ length: n }, () => random.int(10)).join('')

/** Versions spelled as in the samples: `2.3.0` or `0.96`. */
function appVersion(random: RandomSource): string {
  return random.float() < 0.5 ? `${random.int(10)}.${random.int(10)}.${random.int(10)}` : `${random.int(10)}.${digits(random, 1 + random.int(2))}`
}

/**
 * `count` login events like the exercise's samples. A share `repeat` of them (exactly
 * round(repeat * count), never the first) reuses the ip and device_id of an earlier event of
 * this run, with a user of its own: the repeats GET /logins/duplicates finds.
 */
export function* generateLogins(count: number, options: { repeat: number; seed?: string }): Generator<LoginMessage> {
  const random = new RandomSource(options.seed)
  const seen: { ip: string; device_id: string }[] = []
  let repeatsLeft = Math.min(Math.round(options.repeat * count), Math.max(count - 1, 0))
  for (let i = 0; i < count; i++) {
    // Selection sampling: exactly repeatsLeft of the remaining count - i positions, spread at random.
    const repeatHere = i > 0 && random.float() * (count - i) < repeatsLeft
    let pair: { ip: string; device_id: string }
    if (repeatHere) {
      repeatsLeft--
      pair = random.pick(seen)
    } else {
      pair = { ip: ipv4(random), device_id: `${digits(random, 3)}-${digits(random, 2)}-${digits(random, 4)}` }
      seen.push(pair)
    }
    yield {
      user_id: uuid(random),
      app_version: appVersion(random),
      device_type: random.float() < 0.5 ? 'android' : 'ios',
      ip: pair.ip,
      locale: random.float() < 0.3 ? null : random.pick(LOCALES),
      device_id: pair.device_id,
    }
  }
}
