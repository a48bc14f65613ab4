import { createHmac, randomBytes } from 'node:crypto'
import { Bench } from 'tinybench'
import { parseLoginMessage } from '../../src/ingest/message.ts'
import { IpPrefixer, parseIpPrefixKeys } from '../../src/pii/ip-prefix.ts'
import { Masker } from '../../src/pii/mask.ts'
import { loginAad, seal } from '../../src/pii/vault.ts'
import { round, type Context } from '../lib/context.ts'
import { messageSource } from '../lib/messages.ts'

export interface MaskingResult {
  /** microseconds per call: mean and median, with the relative margin of error (%) */
  tasks: Record<string, { meanUs: number; p50Us: number; rmePercent: number; samples: number }>
  /** validate + two masks + encryption, in bare HMAC-SHA256 calls */
  perMessageInHmacs: number
}

const FULL = 'validate + two masks + encryption (one message)'
const FLOOR = 'bare HMAC-SHA256 (the floor)'

/** Section 5: the CPU cost of one message's masking, next to one bare HMAC-SHA256. */
export async function maskingCost(ctx: Context): Promise<MaskingResult> {
  const masker = new Masker(ctx.keys.mask)
  // The optional IP_PREFIX_KEYS pseudonym, measured apart: it is not in FULL, as it is off by default.
  const prefixer = await IpPrefixer.create(parseIpPrefixKeys(`p1:${randomBytes(32).toString('base64')}`))
  const key = randomBytes(32)
  const dataKey = randomBytes(32)
  const source = messageSource(2000, 5)
  const bodies = Array.from({ length: 2000 }, (_, i) => source.body(i)).filter((_, i) => !source.malformed(i))
  const logins = bodies.map((body) => {
    const parsed = parseLoginMessage(body)
    if (!parsed.ok) throw new Error('generated body did not validate')
    return parsed.login
  })
  const v4 = logins.filter((l) => /^\d+\.\d+\.\d+\.\d+$/.test(l.ip))
  const v6 = logins.filter((l) => l.ip.includes(':'))
  let i = 0
  const next = <T>(items: readonly T[]): T => items[i++ % items.length] as T

  const bench = new Bench({ time: ctx.options.quick ? 150 : 1000, warmupTime: ctx.options.quick ? 50 : 200 })
  bench
    .add(FLOOR, () => {
      createHmac('sha256', key).update(next(logins).device_id).digest()
    })
    .add('validate (JSON.parse + rules + schema)', () => {
      parseLoginMessage(next(bodies))
    })
    .add('mask ip, IPv4', () => {
      masker.maskIp(next(v4).ip)
    })
    .add('mask ip, IPv6', () => {
      masker.maskIp(next(v6).ip)
    })
    .add('ip prefix pseudonym (ipcrypt-pfx, optional), IPv4', () => {
      prefixer.pseudonym(next(v4).ip)
    })
    .add('ip prefix pseudonym (ipcrypt-pfx, optional), IPv6', () => {
      prefixer.pseudonym(next(v6).ip)
    })
    .add('mask device_id', () => {
      masker.maskDeviceId(next(logins).device_id)
    })
    .add('encrypt originals (AES-256-GCM)', () => {
      const login = next(logins)
      seal(dataKey, Buffer.from(JSON.stringify({ ip: login.ip, device_id: login.device_id }), 'utf8'), loginAad('0f4c1b7e-5d1f-4f0e-9b7a-2c1d3e4f5a6b'))
    })
    .add(FULL, () => {
      const parsed = parseLoginMessage(next(bodies))
      if (!parsed.ok) return
      const { ip, device_id } = parsed.login
      masker.maskIp(ip)
      masker.maskDeviceId(device_id)
      seal(dataKey, Buffer.from(JSON.stringify({ ip, device_id }), 'utf8'), loginAad('0f4c1b7e-5d1f-4f0e-9b7a-2c1d3e4f5a6b'))
    })
  ctx.log('micro-benchmarks (tinybench)')
  await bench.run()
  const tasks: MaskingResult['tasks'] = {}
  for (const task of bench.tasks) {
    const result = task.result
    if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state === 'errored' ? result.error.message : result.state}`)
    tasks[task.name] = {
      meanUs: round(result.latency.mean * 1000, 2),
      p50Us: round(result.latency.p50 * 1000, 2),
      rmePercent: round(result.latency.rme, 1),
      samples: result.latency.df + 1,
    }
  }
  return { tasks, perMessageInHmacs: round((tasks[FULL]?.meanUs ?? NaN) / (tasks[FLOOR]?.meanUs ?? NaN), 1) }
}
