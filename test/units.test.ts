import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import ipaddr from 'ipaddr.js'
import { apiKeyEntry, authenticate, generateApiKey, hashApiKey, parseApiKeys } from '../src/auth/api-keys.ts'
import { ConfigError } from '../src/config.ts'
import { encodeAppVersion } from '../src/ingest/app-version.ts'
import { parseLoginMessage } from '../src/ingest/message.ts'
import { HttpError } from '../src/http/errors.ts'
import { CursorCodec, pageCursors, parseId } from '../src/logins/cursor.ts'
import { canonicalIp } from '../src/pii/ip.ts'
import { parseKeyring } from '../src/pii/keys.ts'
import { Masker } from '../src/pii/mask.ts'
import { loginAad, open, rejectionAad, seal } from '../src/pii/vault.ts'

const secret = (bytes = 32): string => randomBytes(bytes).toString('base64')
const keyring = (id = 'k1', value = secret()) => parseKeyring('MASK_KEYS', `${id}:${value}`)

describe('encodeAppVersion', () => {
  test('orders versions part by part, as numbers', () => {
    const ordered = ['0.96', '1.0', '2.2.8', '2.3.0', '2.3.1', '2.20', '2.100', '10.0']
    const encoded = ordered.map(encodeAppVersion)
    for (const value of encoded) assert.ok(Number.isInteger(value), 'every one of them is encodable')
    for (let i = 1; i < encoded.length; i++) {
      assert.ok((encoded[i - 1] as number) < (encoded[i] as number), `${ordered[i - 1]} < ${ordered[i]}`)
    }
  })

  test('has the documented values', () => {
    assert.equal(encodeAppVersion('2.3.0'), 2_003_000)
    assert.equal(encodeAppVersion('2.2.8'), 2_002_008)
    assert.equal(encodeAppVersion('2.20'), 2_020_000)
    assert.equal(encodeAppVersion('0.96'), 96_000)
    assert.equal(encodeAppVersion('0'), 0)
    assert.equal(encodeAppVersion('2146.999.999'), 2_146_999_999)
  })

  test('numerically equal spellings share one integer', () => {
    for (const spelling of ['2', '2.0', '2.00', '2.0.0', '02.0', '2.0.0.0']) assert.equal(encodeAppVersion(spelling), 2_000_000, spelling)
    assert.equal(encodeAppVersion('1.2.3.0'), 1_002_003)
  })

  test('gives null, never a wrong number, for what it cannot encode', () => {
    for (const text of ['', 'v1', '1..2', '.1', '1.', '1.2.3.4', '1.2.3.0.5', '1.1000', '1.0.1000', '2147', '2147.0.0', '99999', '1.2-beta', ' 1.2', '1.2\n', '-1', '1e3', '١.٢']) {
      assert.equal(encodeAppVersion(text), null, JSON.stringify(text))
    }
  })

  test('integer order equals part-wise numeric order for any two encodable versions (generated)', () => {
    const version = fc
      .tuple(
        fc.integer({ min: 0, max: 2146 }),
        fc.integer({ min: 0, max: 999 }),
        fc.integer({ min: 0, max: 999 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 3, maxLength: 3 }),
      )
      .map(([major, minor, patch, shown, pads]) => {
        // Drop trailing parts only when they are zero, so the text means the same version.
        let parts = [major, minor, patch]
        while (parts.length > shown && parts.at(-1) === 0) parts = parts.slice(0, -1)
        const text = parts.map((p, i) => '0'.repeat(pads[i] ?? 0) + String(p)).join('.')
        return { text, parts: [major, minor, patch] }
      })
    const compare = (a: number[], b: number[]): number => {
      for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return Math.sign((a[i] ?? 0) - (b[i] ?? 0))
      return 0
    }
    fc.assert(
      fc.property(version, version, (a, b) => {
        const x = encodeAppVersion(a.text)
        const y = encodeAppVersion(b.text)
        assert.notEqual(x, null, a.text)
        assert.notEqual(y, null, b.text)
        assert.equal(Math.sign((x as number) - (y as number)), compare(a.parts, b.parts), `${a.text} vs ${b.text}`)
      }),
      { numRuns: 2000 },
    )
  })

  test('any text gives null or an integer that fits the int4 column (generated)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^\d{1,10}(\.\d{1,10}){0,4}$/)), (text) => {
        const value = encodeAppVersion(text)
        assert.ok(value === null || (Number.isInteger(value) && value >= 0 && value <= 2_147_483_647), text)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('canonicalIp', () => {
  test('every textual form of one IPv6 address is one canonical form', () => {
    const forms = ['2001:db8::1', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:DB8::1', '2001:db8:0:0::1', ' 2001:db8::1 ']
    const canonical = forms.map(canonicalIp)
    assert.equal(canonical[0], '2001:db8:0:0:0:0:0:1')
    for (const [i, value] of canonical.entries()) assert.equal(value, canonical[0], forms[i])
  })

  test('IPv4-mapped IPv6 is its IPv4 address', () => {
    for (const form of ['1.2.3.4', '::ffff:1.2.3.4', '::FFFF:1.2.3.4', '::ffff:102:304', '0:0:0:0:0:ffff:0102:0304']) {
      assert.equal(canonicalIp(form), '1.2.3.4', form)
    }
  })

  test('an IPv4-compatible address is not taken for the IPv4 address, and all its spellings agree', () => {
    assert.notEqual(canonicalIp('::1.2.3.4'), '1.2.3.4')
    assert.equal(canonicalIp('::1.2.3.4'), canonicalIp('::102:304'))
    assert.equal(canonicalIp('0:0:0:0:0:0:1.2.3.4'), canonicalIp('::102:304'))
  })

  test('ambiguous or malformed text is not an address', () => {
    for (const text of ['010.1.1.1', '::ffff:010.1.1.1', '1.2.3', '1.2.3.256', '0x7f.0.0.1', '2130706433', '2001:db8::1::2', '1:2:3:4:5:6:7:1.2.3.4', 'garbage', '', 'localhost', '1.2.3.4.5']) {
      assert.equal(canonicalIp(text), null, JSON.stringify(text))
    }
  })

  test('compressed, expanded and upper-case spellings of random IPv6 addresses agree (generated)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), (parts) => {
        const address = new ipaddr.IPv6(parts)
        const forms = [address.toString(), address.toNormalizedString(), parts.map((p) => p.toString(16).padStart(4, '0')).join(':'), address.toString().toUpperCase()]
        const canonical = new Set(forms.map(canonicalIp))
        assert.equal(canonical.size, 1, forms.join(' '))
        assert.notEqual([...canonical][0], null)
      }),
      { numRuns: 500 },
    )
  })

  test('dotted, mapped-dotted and mapped-hex spellings of random IPv4 addresses agree (generated)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }), (octets) => {
        const dotted = octets.join('.')
        const [a = 0, b = 0, c = 0, d = 0] = octets
        const hex = `::ffff:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
        for (const form of [dotted, `::ffff:${dotted}`, hex]) assert.equal(canonicalIp(form), dotted, form)
      }),
      { numRuns: 500 },
    )
  })
})

describe('Masker', () => {
  const masker = new Masker(keyring('k1'))

  test('equal inputs give equal masks in the documented format', () => {
    assert.equal(masker.maskIp('199.172.111.135'), masker.maskIp('199.172.111.135'))
    assert.equal(masker.maskDeviceId('593-47-5928'), masker.maskDeviceId('593-47-5928'))
    assert.match(masker.maskIp('199.172.111.135'), /^k1:[A-Za-z0-9_-]{43}$/)
    assert.match(masker.maskDeviceId('593-47-5928'), /^k1:[A-Za-z0-9_-]{43}$/)
    assert.equal(masker.keyId, 'k1')
    assert.notEqual(masker.maskIp('199.172.111.135'), masker.maskIp('199.172.111.136'))
    assert.notEqual(masker.maskDeviceId('593-47-5928'), masker.maskDeviceId('593-47-5929'))
  })

  test('different keys give different masks', () => {
    const other = new Masker(keyring('k1'))
    assert.notEqual(other.maskIp('199.172.111.135'), masker.maskIp('199.172.111.135'))
    assert.notEqual(other.maskDeviceId('593-47-5928'), masker.maskDeviceId('593-47-5928'))
    const rotated = new Masker(keyring('k2'))
    assert.match(rotated.maskIp('1.2.3.4'), /^k2:/)
  })

  test('the spellings of one address share one mask', () => {
    const v6 = new Set(['2001:db8::1', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:DB8::1'].map((ip) => masker.maskIp(ip)))
    assert.equal(v6.size, 1)
    const v4 = new Set(['1.2.3.4', '::ffff:1.2.3.4', '::ffff:102:304'].map((ip) => masker.maskIp(ip)))
    assert.equal(v4.size, 1)
  })

  test('an ip and a device id with the same text never share a mask', () => {
    for (const text of ['1.2.3.4', 'not-an-ip', '2001:db8::1']) assert.notEqual(masker.maskIp(text), masker.maskDeviceId(text), text)
  })

  test('an unparseable ip is still masked, deterministically, and not like a parseable one', () => {
    const mask = masker.maskIp('010.1.1.1')
    assert.match(mask, /^k1:[A-Za-z0-9_-]{43}$/)
    assert.equal(masker.maskIp('010.1.1.1'), mask)
    assert.notEqual(mask, masker.maskIp('10.1.1.1'))
    assert.notEqual(mask, masker.maskIp('8.1.1.1'))
    assert.notEqual(masker.maskIp('garbage'), masker.maskDeviceId('garbage'))
  })

  test('the mask is no plain encoding of the value', () => {
    const mask = masker.maskIp('199.172.111.135')
    assert.ok(!mask.includes('199.172.111.135'))
    assert.ok(!mask.includes(Buffer.from('199.172.111.135').toString('base64url')))
  })
})

describe('parseLoginMessage', () => {
  const valid = { user_id: '424cdd21-063a-43a7-b91b-7ca1a833afae', app_version: '2.3.0', device_type: 'android', ip: '199.172.111.135', locale: 'RU', device_id: '593-47-5928' }
  const body = (changes: Record<string, unknown>, remove: string[] = []): string => {
    const record: Record<string, unknown> = { ...valid, ...changes }
    for (const field of remove) delete record[field]
    return JSON.stringify(record)
  }
  const rejects = (text: string, reason: string | RegExp, secretValue?: string): void => {
    const result = parseLoginMessage(text)
    assert.equal(result.ok, false, text)
    if (result.ok) return
    if (typeof reason === 'string') assert.equal(result.reason, reason)
    else assert.match(result.reason, reason)
    if (secretValue !== undefined) assert.ok(!result.reason.includes(secretValue), `reason ${result.reason} does not echo the value`)
    for (const value of [valid.ip, valid.device_id, valid.user_id]) assert.ok(!result.reason.includes(value))
  }

  test('accepts the sample shape and keeps only the known fields', () => {
    const result = parseLoginMessage(body({ extra: 'ignored' }))
    assert.deepEqual(result, { ok: true, login: valid })
  })

  test('locale may be null or missing', () => {
    const nulled = parseLoginMessage(body({ locale: null }))
    assert.ok(nulled.ok)
    assert.equal(nulled.login.locale, null)
    const missing = parseLoginMessage(body({}, ['locale']))
    assert.ok(missing.ok)
    assert.equal(missing.login.locale, null)
  })

  test('limits count characters, as varchar(n) does, not UTF-16 units', () => {
    const emoji = '\u{1F600}'.repeat(32)
    const result = parseLoginMessage(body({ device_type: emoji }))
    assert.ok(result.ok)
    assert.equal(result.login.device_type, emoji)
    assert.ok(parseLoginMessage(body({ device_type: 'x'.repeat(32) })).ok)
  })

  test('reasons name the field and the rule, never the value', () => {
    rejects('ip=199.172.111.135', 'body is not valid JSON', '199.172.111.135')
    rejects('', 'body is not valid JSON')
    rejects(JSON.stringify([valid]), 'body is not a JSON object')
    rejects('null', 'body is not a JSON object')
    rejects('"199.172.111.135"', 'body is not a JSON object', '199.172.111.135')
    rejects(JSON.stringify({ foo: 'oops_wrong_msg_type', bar: '123' }), 'user_id is required')
    rejects(body({}, ['user_id']), 'user_id is required')
    rejects(body({ user_id: null }), 'user_id is required')
    rejects(body({}, ['ip']), 'ip is required')
    rejects(body({ user_id: '' }), /^user_id /)
    rejects(body({ device_type: '   ' }), 'device_type must not be empty')
    const longType = 'secret-device-type-abcdefghijklmn' // 33 characters
    assert.equal(longType.length, 33)
    rejects(body({ device_type: longType }), 'device_type must be at most 32 characters', longType)
    rejects(body({ locale: 'L'.repeat(33) }), 'locale must be at most 32 characters', 'L'.repeat(33))
    rejects(body({ device_id: 'abc\u0000def' }), 'device_id must not contain NUL characters', 'abc')
    rejects('{"user_id":"u1","device_type":"android","ip":"1.2.3.4","device_id":"d\\ud800x","app_version":"1.0"}', /^device_id .*surrogate/)
    rejects(body({ app_version: 2.3 }), 'app_version must be a string')
    rejects(body({ ip: 199172111135 }), 'ip must be a string', '199172111135')
    rejects(body({ device_id: { value: 'nested-secret' } }), 'device_id must be a string', 'nested-secret')
    rejects(body({ locale: 7 }), 'locale must be a string or null')
  })
})

describe('parseKeyring', () => {
  const fails = (text: string, problem: RegExp, secrets: string[]): void => {
    assert.throws(
      () => parseKeyring('VAULT_MASTER_KEYS', text),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, 'a ConfigError')
        assert.equal(error.variable, 'VAULT_MASTER_KEYS')
        assert.ok(error.message.startsWith('VAULT_MASTER_KEYS: '), error.message)
        assert.match(error.message, problem)
        for (const s of secrets) assert.ok(!error.message.includes(s), 'the secret is not in the message')
        return true
      },
    )
  }

  test('parses id:base64 entries, the first being active', () => {
    const [a, b] = [secret(), secret(48)]
    const parsed = parseKeyring('MASK_KEYS', ` m2:${a} , m1:${b}`)
    assert.equal(parsed.active.id, 'm2')
    assert.deepEqual([...parsed.all.keys()], ['m2', 'm1'])
    assert.deepEqual(parsed.all.get('m1')?.secret, Buffer.from(b, 'base64'))
    assert.equal(parsed.all.get('m2')?.secret.length, 32)
    assert.equal(parseKeyring('MASK_KEYS', `k1:${randomBytes(32).toString('base64url')}`).active.secret.length, 32)
  })

  test('errors name the variable and never contain the secret', () => {
    const good = secret()
    const short = secret(16)
    fails('', /at least one key/, [])
    fails(' , ', /at least one key/, [])
    fails(good, /entry 1 must look like/, [good])
    fails(`:${good}`, /entry 1 must look like/, [good])
    fails(`m1:${good},bad id:${good}`, /entry 2 must look like/, [good])
    fails(`this-id-is-far-too-long:${good}`, /entry 1/, [good])
    fails(`m1:${short}`, /key m1 must be base64 of at least 32/, [short])
    fails(`m1:${good}!!`, /key m1 must be base64/, [good])
    fails(`m1:${good},m1:${secret()}`, /key id m1 is listed twice/, [good])
  })
})

describe('API keys', () => {
  const reader = generateApiKey()
  const auditor = generateApiKey()
  const keys = parseApiKeys(`${apiKeyEntry('dashboard', ['logins:read'], reader)};\n${apiKeyEntry('auditor', ['audit:read', 'pii:read'], auditor)}`)

  test('parseApiKeys reads names, scopes and hashes', () => {
    assert.deepEqual(keys.map((k) => k.name), ['dashboard', 'auditor'])
    assert.deepEqual([...(keys[1]?.scopes ?? [])], ['audit:read', 'pii:read'])
    assert.deepEqual(keys[0]?.hash, hashApiKey(reader))
    assert.deepEqual(parseApiKeys(''), [])
  })

  test('authenticate finds the key a token belongs to, and nothing for anything else', () => {
    assert.equal(authenticate(keys, reader)?.name, 'dashboard')
    assert.equal(authenticate(keys, auditor)?.name, 'auditor')
    for (const token of [generateApiKey(), '', `${reader} `, reader.slice(0, -1), hashApiKey(reader).toString('hex'), `Bearer ${reader}`]) {
      assert.equal(authenticate(keys, token), null, 'not a known key')
    }
    assert.equal(authenticate([], reader), null)
  })

  test('errors are ConfigErrors naming API_KEYS, without the key or its hash', () => {
    const token = generateApiKey()
    const hash = hashApiKey(token).toString('hex')
    const cases: [string, RegExp][] = [
      [token, /entry 1 must look like name:scope,scope:sha256-hex/],
      [`ops:logins:read:${token}`, /entry 1 \(ops\) must end with the 64-hex-digit SHA-256/],
      [`ops:${hash}`, /entry 1 must look like/],
      [`bad name:logins:read:${hash}`, /entry 1 has a name/],
      [`ops:logins:write:${hash}`, /entry 1 \(ops\) has an unknown scope logins:write/],
      [`ops::${hash}`, /entry 1 \(ops\) has no scope/],
      [`ops:${token}:${hash}`, /entry 1 holds a key itself/],
      [`${token}::${hash}`, /entry 1 holds a key itself/],
      [`ops:logins:read,${token}:${hash}`, /entry 1 holds a key itself/],
      [`ops:logins:read:${hash};ops:pii:read:${hash}`, /name ops is used twice/],
      [`ops:logins:read:${hash.slice(1)}`, /must end with the 64-hex-digit/],
    ]
    for (const [text, problem] of cases) {
      assert.throws(() => parseApiKeys(text), (error: unknown) => {
        assert.ok(error instanceof ConfigError)
        assert.equal(error.variable, 'API_KEYS')
        assert.ok(error.message.startsWith('API_KEYS: '))
        assert.match(error.message, problem)
        assert.ok(!error.message.includes(token), 'the key is not in the message')
        assert.ok(!error.message.includes(hash) && !error.message.includes(hash.slice(1)), 'the hash is not in the message')
        return true
      })
    }
  })
})

describe('page cursors', () => {
  const codec = new CursorCodec(randomBytes(32))

  test('encode and decode round-trip', () => {
    assert.deepEqual(codec.decode('logins', codec.encode('logins', ['42'])), ['42'])
    assert.deepEqual(codec.decode('audit', codec.encode('audit', ['2026-01-01T00:00:00Z', 7])), ['2026-01-01T00:00:00Z', 7])
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 9_223_372_036_854_775_807n }), (id) => {
        const values = codec.decode('logins', codec.encode('logins', [id.toString()]))
        return parseId(values?.[0]) === id
      }),
      { numRuns: 1000 },
    )
  })

  test('a cursor is opaque and every replica with the same secret reads it', () => {
    const secretBytes = randomBytes(32)
    const cursor = new CursorCodec(secretBytes).encode('logins', ['42'])
    assert.match(cursor, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/)
    assert.deepEqual(new CursorCodec(Buffer.from(secretBytes)).decode('logins', cursor), ['42'])
  })

  test('malformed, edited, foreign or other-kind cursors decode to null', () => {
    const good = codec.encode('logins', ['42'])
    const [body = '', mac = ''] = good.split('.')
    const forged = Buffer.from(JSON.stringify(['logins', '41']), 'utf8').toString('base64url')
    const flip = (text: string, at: number): string => text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1)
    for (const cursor of [
      '', 'not a cursor', body, `${body}.`, `.${mac}`, `${good}=`, `${good}!`, `${good}.${mac}`, good.toUpperCase(),
      `${forged}.${mac}`, flip(good, 0), flip(good, body.length - 1), flip(good, good.length - 1), `${body}.${mac.slice(1)}`,
      new CursorCodec(randomBytes(32)).encode('logins', ['42']),
      codec.encode('audit', ['42']),
      `${'A'.repeat(801)}.${mac}`,
    ]) {
      assert.equal(codec.decode('logins', cursor), null, JSON.stringify(cursor))
    }
  })

  test('each page kind round-trips its sort key, in the same signed form as before', () => {
    const secret = randomBytes(32)
    const cursors = pageCursors(secret)
    const plain = new CursorCodec(secret)
    assert.equal(cursors.logins.decode(cursors.logins.encode('42')), 42n)
    assert.equal(cursors.audit.decode(cursors.audit.encode('7')), 7n)
    assert.deepEqual(cursors.rejected.decode(cursors.rejected.encode({ id: '9', state: 'pending' })), { before: 9n, state: 'pending' })
    const key = { count: 3, field: 'ip_network', masked_value: 'p1:19.214.210.0/24' } as const
    assert.deepEqual(cursors.duplicates.decode(cursors.duplicates.encode(key)), key)
    // Cursors a running replica issued before stay valid.
    assert.equal(cursors.logins.encode('42'), plain.encode('logins', ['42']))
    assert.equal(cursors.rejected.encode({ id: '9', state: 'all' }), plain.encode('rejected', ['9', 'all']))
    assert.equal(cursors.duplicates.encode(key), plain.encode('duplicates', [3, 'ip_network', 'p1:19.214.210.0/24']))
  })

  test('a cursor of one kind, or with values its kind does not hold, decodes to null', () => {
    const secret = randomBytes(32)
    const cursors = pageCursors(secret)
    const plain = new CursorCodec(secret)
    const issued = {
      logins: cursors.logins.encode('5'),
      audit: cursors.audit.encode('5'),
      rejected: cursors.rejected.encode({ id: '5', state: 'resubmitted' }),
      duplicates: cursors.duplicates.encode({ count: 2, field: 'ip', masked_value: 'k1:x' }),
    }
    for (const [kind, codec] of Object.entries(cursors)) {
      for (const [other, cursor] of Object.entries(issued)) {
        if (other !== kind) assert.equal(codec.decode(cursor), null, `${other} cursor read as ${kind}`)
      }
    }
    for (const cursor of [plain.encode('logins', ['0']), plain.encode('logins', [5]), plain.encode('logins', [])]) {
      assert.equal(cursors.logins.decode(cursor), null, cursor)
    }
    assert.equal(cursors.rejected.decode(plain.encode('rejected', ['5', 'lost'])), null)
    assert.equal(cursors.rejected.decode(plain.encode('rejected', ['5'])), null)
    for (const values of [['2', 'ip', 'k1:x'], [2, 'email', 'k1:x'], [2, 'ip', 7], [2, 'ip']]) {
      assert.equal(cursors.duplicates.decode(plain.encode('duplicates', values)), null, JSON.stringify(values))
    }
  })

  test('read: no cursor is undefined, a foreign or unaccepted one the 400 naming the page', () => {
    const cursors = pageCursors(randomBytes(32))
    assert.equal(cursors.logins.read(undefined), undefined)
    assert.equal(cursors.logins.read(cursors.logins.encode('8')), 8n)
    const refused = (page: string) => (error: unknown) =>
      error instanceof HttpError && error.statusCode === 400 && error.message === `querystring/cursor is not a cursor this API issued for ${page}`
    assert.throws(() => cursors.logins.read(cursors.audit.encode('8')), refused('/logins'))
    assert.throws(() => cursors.duplicates.read('x.y'), refused('/logins/duplicates'))
    const pending = cursors.rejected.encode({ id: '8', state: 'pending' })
    assert.deepEqual(cursors.rejected.read(pending, (after) => after.state === 'pending'), { before: 8n, state: 'pending' })
    assert.throws(() => cursors.rejected.read(pending, (after) => after.state === 'all'), refused('/rejected with this state'))
  })

  test('parseId accepts positive bigint ids only', () => {
    assert.equal(parseId('1'), 1n)
    assert.equal(parseId('9223372036854775807'), 9_223_372_036_854_775_807n)
    for (const text of ['', '0', '-1', '042', '4a', '1.5', ' 42', '9223372036854775808', '99999999999999999999', 42, null, undefined, ['42']]) {
      assert.equal(parseId(text), null, JSON.stringify(text))
    }
  })
})

describe('vault seal/open', () => {
  const key = randomBytes(32)
  const plaintext = Buffer.from(JSON.stringify({ ip: '199.172.111.135', device_id: '593-47-5928' }))
  const sealed = seal(key, plaintext, loginAad('message-a'))

  test('decrypts with the right key and the aad of its row', () => {
    assert.deepEqual(open(key, sealed, loginAad('message-a')), plaintext)
  })

  test('the ciphertext hides the plaintext and uses a fresh nonce each time', () => {
    assert.equal(sealed.indexOf(plaintext), -1)
    assert.equal(sealed.indexOf(Buffer.from('199.172.111.135')), -1)
    const again = seal(key, plaintext, loginAad('message-a'))
    assert.notDeepEqual(again, sealed)
    assert.notDeepEqual(again.subarray(0, 12), sealed.subarray(0, 12))
    assert.equal(sealed.length, 12 + 16 + plaintext.length)
  })

  test('fails for another row, another table, a wrong key or a changed byte', () => {
    assert.throws(() => open(key, sealed, loginAad('message-b')))
    assert.throws(() => open(key, sealed, rejectionAad('message-a')))
    assert.throws(() => open(randomBytes(32), sealed, loginAad('message-a')))
    for (const at of [0, 12, 28, sealed.length - 1]) {
      const changed = Buffer.from(sealed)
      changed[at] = (changed[at] ?? 0) ^ 1
      assert.throws(() => open(key, changed, loginAad('message-a')), `byte ${at}`)
    }
    assert.throws(() => open(key, sealed.subarray(0, 20), loginAad('message-a')), /too short/)
  })
})
