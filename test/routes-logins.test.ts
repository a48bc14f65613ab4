import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { CursorCodec } from '../src/logins/cursor.ts'
import { build } from './helper.ts'
import { bearer, ingestMessages, queueMessage, type LoginBody } from './routes-helpers.ts'

/*
 * GET /logins and GET /logins/duplicates against rows whose answers the test knows: every
 * filter alone and combined, a page walk over thousands of rows while more arrive, cursor
 * tampering, and duplicate counting across textual variants of one IP address. One app and one
 * database for the file; every row it ingests is recorded in `known` to compute expectations.
 */

interface Known {
  id: string
  body: LoginBody
  /** the address the ip means (IPv6 spellings and IPv4-mapped forms of one address share it) */
  canonicalIp: string
  createDate: string
}

interface LoginItem {
  id: string
  user_id: string | null
  device_type: string | null
  masked_ip: string | null
  masked_device_id: string | null
  locale: string | null
  app_version: number | null
  app_version_text: string | null
  create_date: string | null
  message_id: string | null
  mask_key_id: string | null
  ingested_at: string | null
}

interface Page<T> {
  items: T[]
  next: string | null
}

interface Duplicate {
  field: 'ip' | 'device_id'
  masked_value: string
  count: number
  users: number
  first_seen: string | null
  last_seen: string | null
}

const known: Known[] = []

/** Ingests the bodies with their sent times through the real pipeline and records the rows. */
async function ingest(services: Parameters<typeof ingestMessages>[0], rows: { body: LoginBody; sentAt: Date; canonicalIp?: string }[]): Promise<Known[]> {
  const messages = rows.map((r) => queueMessage(r.body, r.sentAt))
  const ids = await ingestMessages(services, messages)
  const added = rows.map((r, i): Known => {
    const id = ids.get((messages[i] as { messageId: string }).messageId)
    assert.ok(id, 'every valid login gets a row')
    return { id, body: r.body, canonicalIp: r.canonicalIp ?? r.body.ip, createDate: r.sentAt.toISOString().slice(0, 10) }
  })
  known.push(...added)
  return added
}

/** Versions compared part by part as numbers, independently of the service's encoding; null when not dotted digits. */
function versionParts(text: string): [number, number, number] | null {
  if (!/^\d+(\.\d+){0,2}$/.test(text)) return null
  const [a = 0, b = 0, c = 0] = text.split('.').map(Number)
  return [a, b, c]
}
function compareVersions(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]
}

const sortDesc = (ids: Iterable<string>): string[] => [...ids].sort((x, y) => (BigInt(y) > BigInt(x) ? 1 : BigInt(y) < BigInt(x) ? -1 : 0))

async function getPage<T>(app: FastifyInstance, token: string, url: string): Promise<Page<T>> {
  const response = await app.inject({ url, headers: bearer(token) })
  assert.equal(response.statusCode, 200, `${url}: ${response.body}`)
  return response.json<Page<T>>()
}

/** Follows `next` to the end with a small page size; checks page sizes and order along the way. */
async function walk(app: FastifyInstance, token: string, query: Record<string, string>, limit = 7): Promise<LoginItem[]> {
  const items: LoginItem[] = []
  let cursor: string | null = null
  for (let pages = 0; pages < 10_000; pages++) {
    const params = new URLSearchParams({ ...query, limit: String(limit), ...(cursor === null ? {} : { cursor }) })
    const page: Page<LoginItem> = await getPage<LoginItem>(app, token, `/logins?${params}`)
    assert.ok(page.items.length <= limit, `page of ${page.items.length} > limit ${limit}`)
    items.push(...page.items)
    if (page.next === null) return items
    assert.equal(page.items.length, limit, 'only the last page is short')
    cursor = page.next
  }
  throw new Error('the walk did not end')
}

function assertStrictlyDescending(ids: string[], what: string): void {
  for (let i = 1; i < ids.length; i++) {
    assert.ok(BigInt(ids[i - 1] as string) > BigInt(ids[i] as string), `${what}: ids strictly descending at ${i} (${ids[i - 1]}, ${ids[i]})`)
  }
}

test('GET /logins and /logins/duplicates', async (t) => {
  const { app, services, tokens } = await build(t)
  const token = tokens['logins:read']

  // The filter data set: every combination of a few users, device types, locales (with null),
  // versions and dates, and ips that repeat, in several spellings.
  const users = ['user-ann', 'user-bob', 'user-cyd', 'user-dee']
  const deviceTypes = ['android', 'ios', 'web']
  const locales = ['RU', 'DE', null, 'en-US']
  const versions = ['2.2.8', '2.3.0', '2.20', '0.96', '2.3', 'beta-1']
  const dates = ['2025-11-15T10:00:00Z', '2025-12-31T23:59:59.999Z', '2026-01-01T00:00:00Z', '2026-02-10T12:30:00Z', '2026-03-05T08:00:00Z']
  const ips: { ip: string; canonical: string }[] = [
    { ip: '203.0.113.5', canonical: '203.0.113.5' },
    { ip: '::ffff:203.0.113.5', canonical: '203.0.113.5' },
    { ip: '2001:db8::7', canonical: '2001:db8::7' },
    { ip: '2001:0DB8:0000:0000:0000:0000:0000:0007', canonical: '2001:db8::7' },
    { ip: '2001:db8:0:0::7', canonical: '2001:db8::7' },
    { ip: '198.51.100.9', canonical: '198.51.100.9' },
  ]
  const rows = Array.from({ length: 72 }, (_, i) => {
    const ip = ips[i % ips.length] as { ip: string; canonical: string }
    return {
      body: {
        user_id: users[i % users.length] as string,
        device_type: deviceTypes[i % deviceTypes.length] as string,
        locale: locales[Math.floor(i / 3) % locales.length] as string | null,
        app_version: versions[Math.floor(i / 2) % versions.length] as string,
        ip: ip.ip,
        // each device id is used by 1 to 4 rows, some across users
        device_id: `filter-dev-${i % 29}`,
      },
      sentAt: new Date(dates[Math.floor(i / 4) % dates.length] as string),
      canonicalIp: ip.canonical,
    }
  })
  const filterRows = await ingest(services, rows)

  await t.test('rows carry masks, the version encoding and the UTC date of the SentTimestamp; never the originals', async () => {
    const items = await walk(app, token, {}, 1000)
    assert.equal(items.length, filterRows.length)
    const byId = new Map(items.map((item) => [item.id, item]))
    for (const row of filterRows) {
      const item = byId.get(row.id)
      assert.ok(item)
      assert.equal(item.user_id, row.body.user_id)
      assert.equal(item.device_type, row.body.device_type)
      assert.equal(item.locale, row.body.locale)
      assert.equal(item.app_version_text, row.body.app_version)
      assert.equal(item.create_date, row.createDate)
      assert.match(item.masked_ip ?? '', /^k1:[A-Za-z0-9_-]{43}$/)
      assert.match(item.masked_device_id ?? '', /^k1:[A-Za-z0-9_-]{43}$/)
      const parts = versionParts(row.body.app_version)
      assert.equal(item.app_version, parts === null ? null : parts[0] * 1_000_000 + parts[1] * 1000 + parts[2])
      const text = JSON.stringify(item)
      assert.ok(!text.includes(row.body.ip) && !text.includes(row.body.device_id), 'no original in a row')
    }
    // Textual variants of one address share one mask; different addresses do not.
    const maskOf = new Map<string, Set<string>>()
    for (const row of filterRows) {
      const set = maskOf.get(row.canonicalIp) ?? new Set()
      set.add(byId.get(row.id)?.masked_ip as string)
      maskOf.set(row.canonicalIp, set)
    }
    for (const [canonical, masks] of maskOf) assert.equal(masks.size, 1, `every spelling of ${canonical} has one mask`)
    assert.equal(new Set([...maskOf.values()].map((s) => [...s][0])).size, maskOf.size, 'different addresses, different masks')
  })

  await t.test('each filter alone, and combinations, give exactly the rows that match', async () => {
    const all = await walk(app, token, {}, 1000)
    const byId = new Map(all.map((item) => [item.id, item]))
    const row0 = filterRows[0] as Known
    const maskedIp = byId.get(row0.id)?.masked_ip as string
    const maskedDevice = byId.get((filterRows[30] as Known).id)?.masked_device_id as string
    const deviceOf30 = (filterRows[30] as Known).body.device_id
    const atLeast = (text: string, min: string) => {
      const v = versionParts(text)
      return v !== null && compareVersions(v, versionParts(min) as [number, number, number]) >= 0
    }
    const atMost = (text: string, max: string) => {
      const v = versionParts(text)
      return v !== null && compareVersions(v, versionParts(max) as [number, number, number]) <= 0
    }
    const cases: [Record<string, string>, (r: Known) => boolean][] = [
      [{ user_id: 'user-bob' }, (r) => r.body.user_id === 'user-bob'],
      [{ user_id: 'nobody' }, () => false],
      [{ device_type: 'ios' }, (r) => r.body.device_type === 'ios'],
      [{ locale: 'DE' }, (r) => r.body.locale === 'DE'],
      [{ locale: 'en-US' }, (r) => r.body.locale === 'en-US'],
      [{ masked_ip: maskedIp }, (r) => r.canonicalIp === row0.canonicalIp],
      [{ masked_device_id: maskedDevice }, (r) => r.body.device_id === deviceOf30],
      [{ app_version: '2.3.0' }, (r) => r.body.app_version === '2.3.0'],
      [{ app_version: '2.3' }, (r) => r.body.app_version === '2.3'],
      [{ app_version: '2.20' }, (r) => r.body.app_version === '2.20'],
      [{ version_min: '2.3' }, (r) => atLeast(r.body.app_version, '2.3')],
      [{ version_min: '2.3.0' }, (r) => atLeast(r.body.app_version, '2.3')],
      [{ version_max: '2.2.9' }, (r) => atMost(r.body.app_version, '2.2.9')],
      [{ version_min: '2.20', version_max: '2.20' }, (r) => r.body.app_version === '2.20'],
      [{ version_min: '0.96', version_max: '2.3' }, (r) => atLeast(r.body.app_version, '0.96') && atMost(r.body.app_version, '2.3')],
      [{ version_min: '3' }, () => false],
      [{ date_from: '2026-01-01' }, (r) => r.createDate >= '2026-01-01'],
      [{ date_to: '2025-12-31' }, (r) => r.createDate <= '2025-12-31'],
      [{ date_from: '2025-12-31', date_to: '2026-01-01' }, (r) => r.createDate === '2025-12-31' || r.createDate === '2026-01-01'],
      [{ date_from: '2026-02-10', date_to: '2026-02-10' }, (r) => r.createDate === '2026-02-10'],
      [{ date_from: '2026-03-06' }, () => false],
      [{ user_id: 'user-ann', device_type: 'android' }, (r) => r.body.user_id === 'user-ann' && r.body.device_type === 'android'],
      [{ device_type: 'web', locale: 'RU', version_min: '2.3' }, (r) => r.body.device_type === 'web' && r.body.locale === 'RU' && atLeast(r.body.app_version, '2.3')],
      [
        { version_min: '2.2.8', version_max: '2.3.0', date_from: '2025-12-01', date_to: '2026-02-28' },
        (r) => atLeast(r.body.app_version, '2.2.8') && atMost(r.body.app_version, '2.3.0') && r.createDate >= '2025-12-01' && r.createDate <= '2026-02-28',
      ],
      [{ masked_ip: maskedIp, user_id: row0.body.user_id }, (r) => r.canonicalIp === row0.canonicalIp && r.body.user_id === row0.body.user_id],
      [
        { user_id: 'user-cyd', device_type: 'ios', locale: 'DE', app_version: '2.3.0', date_from: '2025-01-01', date_to: '2026-12-31' },
        (r) => r.body.user_id === 'user-cyd' && r.body.device_type === 'ios' && r.body.locale === 'DE' && r.body.app_version === '2.3.0',
      ],
    ]
    let nonEmpty = 0
    for (const [query, matches] of cases) {
      const expected = sortDesc(filterRows.filter(matches).map((r) => r.id))
      const got = (await walk(app, token, query)).map((item) => item.id)
      assert.deepEqual(got, expected, `/logins?${new URLSearchParams(query)}`)
      if (expected.length > 0) nonEmpty++
      if (expected.length > 0 && expected.length < filterRows.length) {
        // the same answer in one page
        const one = await getPage<LoginItem>(app, token, `/logins?${new URLSearchParams({ ...query, limit: '1000' })}`)
        assert.deepEqual(one.items.map((i) => i.id), expected)
        assert.equal(one.next, null)
      }
    }
    assert.ok(nonEmpty >= cases.length - 4, 'the data set makes most cases non-trivial')
    // null locales are kept and listed, but no locale filter selects them
    assert.ok(all.some((item) => item.locale === null))
  })

  await t.test('pagination: a walk sees every row that existed when it began exactly once, while rows keep arriving', async () => {
    // A few thousand more rows, fast: 500 per pipeline batch, unique ips and device ids.
    let serial = 0
    const fresh = (count: number, sentAt = new Date('2026-04-01T00:00:00Z')) =>
      Array.from({ length: count }, () => {
        const n = serial++
        return {
          body: {
            user_id: `page-user-${n % 40}`,
            app_version: `1.${n % 50}.0`,
            device_type: 'android',
            ip: `172.${16 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`,
            locale: 'FR',
            device_id: `page-dev-${n}`,
          },
          sentAt,
        }
      })
    await ingest(services, fresh(3000))
    const existing = await services.sql<{ id: string }[]>`SELECT id::text AS id FROM user_logins`
    const atStart = new Set(existing.map((r) => r.id))
    const maxAtStart = sortDesc(atStart)[0] as string
    assert.ok(atStart.size >= 3000)

    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    let arrived = 0
    do {
      const url: string = `/logins?limit=100${cursor === null ? '' : `&cursor=${cursor}`}`
      // New rows are written while the page is read, and between pages.
      const [page] = await Promise.all([getPage<LoginItem>(app, token, url), ingest(services, fresh(15))])
      arrived += 15
      assert.ok(page.items.length <= 100, `page ${pages} has ${page.items.length} rows`)
      seen.push(...page.items.map((i) => i.id))
      cursor = page.next
      pages++
    } while (cursor !== null && pages < 1000)
    assert.equal(cursor, null, 'the walk ends')
    assertStrictlyDescending(seen, 'walk')
    assert.equal(new Set(seen).size, seen.length, 'no row twice')
    const missing = [...atStart].filter((id) => !seen.includes(id))
    assert.deepEqual(missing, [], 'every row that existed at the start is seen')
    for (const id of seen) {
      if (!atStart.has(id)) assert.ok(BigInt(id) > BigInt(maxAtStart), `a row seen that was not there at the start (${id}) is newer than all of them`)
    }
    assert.ok(pages >= Math.ceil(atStart.size / 100), `${pages} pages`)
    assert.ok(arrived > 0)

    // Largest page, smallest page.
    const big = await getPage<LoginItem>(app, token, '/logins?limit=1000')
    assert.equal(big.items.length, 1000)
    assertStrictlyDescending(big.items.map((i) => i.id), 'limit=1000')
    const small = await getPage<LoginItem>(app, token, '/logins?limit=1')
    assert.equal(small.items.length, 1)
    assert.equal(small.items[0]?.id, big.items[0]?.id)
    const second = await getPage<LoginItem>(app, token, `/logins?limit=1&cursor=${small.next}`)
    assert.equal(second.items[0]?.id, big.items[1]?.id)
    // Default page size is 100.
    assert.equal((await getPage<LoginItem>(app, token, '/logins')).items.length, 100)
  })

  await t.test('cursor tampering gives 400', async () => {
    const page = await getPage<LoginItem>(app, token, '/logins?limit=5')
    const cursor = page.next as string
    assert.match(cursor, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    const status = async (c: string, path = '/logins') =>
      (await app.inject({ url: `${path}?cursor=${encodeURIComponent(c)}`, headers: bearer(tokens.all) })).statusCode
    assert.equal(await status(cursor), 200, 'the untouched cursor works')
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    for (let i = 0; i < cursor.length; i++) {
      const c = cursor[i] as string
      if (c === '.') continue
      const other = alphabet[(alphabet.indexOf(c) + 1 + (i % 7)) % alphabet.length] as string
      const tampered = cursor.slice(0, i) + other + cursor.slice(i + 1)
      assert.equal(await status(tampered), 400, `cursor with character ${i} (${i < cursor.indexOf('.') ? 'body' : 'signature'}) changed`)
    }
    const [body = '', mac = ''] = cursor.split('.')
    for (const bad of [
      body,
      `${body}.`,
      `.${mac}`,
      `${body}.${mac}x`,
      `${body}.${mac.slice(1)}`,
      `${body}x.${mac}`,
      `${body}.${mac}.${mac}`,
      Buffer.from(JSON.stringify(['logins', '1'])).toString('base64url') + `.${mac}`,
      // well formed and signed, but with another key (another deployment, or a rotated key)
      new CursorCodec(randomBytes(32)).encode('logins', [String(page.items.at(-1)?.id)]),
    ]) {
      assert.equal(await status(bad), 400, `cursor ${bad.slice(0, 40)}`)
    }

    // A cursor of another route is refused, in both directions.
    for (let i = 0; i < 2; i++) {
      await app.inject({ url: `/logins/${page.items[0]?.id}/pii`, headers: bearer(tokens.all, { 'x-access-reason': 'TICKET-7 cursor test' }) })
    }
    const audit = await getPage<unknown>(app, tokens.all, '/audit?limit=1')
    assert.ok(audit.next, 'an audit cursor')
    assert.equal(await status(audit.next), 400, '/audit cursor on /logins')
    assert.equal(await status(cursor, '/audit'), 400, '/logins cursor on /audit')
    const dups = await getPage<Duplicate>(app, token, '/logins/duplicates?limit=1')
    assert.ok(dups.next, 'a duplicates cursor')
    assert.equal(await status(dups.next), 400, '/logins/duplicates cursor on /logins')
    assert.equal(await status(cursor, '/logins/duplicates'), 400, '/logins cursor on /logins/duplicates')
  })

  await t.test('duplicates: counts and users per masked value, most frequent first, paged', async () => {
    const all = await walk(app, token, {}, 1000)
    const byId = new Map(all.map((item) => [item.id, item]))
    const expected = new Map<string, Duplicate>()
    for (const field of ['ip', 'device_id'] as const) {
      const groups = new Map<string, Known[]>()
      for (const row of known) {
        const key = field === 'ip' ? row.canonicalIp : row.body.device_id
        groups.set(key, [...(groups.get(key) ?? []), row])
      }
      for (const group of groups.values()) {
        if (group.length < 2) continue
        const item = byId.get((group[0] as Known).id) as LoginItem
        const masked = (field === 'ip' ? item.masked_ip : item.masked_device_id) as string
        for (const row of group) {
          const other = byId.get(row.id) as LoginItem
          assert.equal(field === 'ip' ? other.masked_ip : other.masked_device_id, masked, 'one mask per value')
        }
        const dates = group.map((r) => (byId.get(r.id) as LoginItem).create_date).filter((d) => d !== null).sort()
        expected.set(`${field}:${masked}`, {
          field, masked_value: masked, count: group.length, users: new Set(group.map((r) => r.body.user_id)).size,
          first_seen: dates.at(0) ?? null, last_seen: dates.at(-1) ?? null,
        })
      }
    }
    assert.ok(expected.size > 10, 'the data set has duplicates')
    // 203.0.113.5 in two spellings and 2001:db8::7 in three spellings are one value each
    const ipCounts = [...expected.values()].filter((d) => d.field === 'ip').map((d) => [d.count, d.users])
    assert.deepEqual(ipCounts.sort((a, b) => (b[0] as number) - (a[0] as number)), [[36, 4], [24, 4], [12, 2]])

    const walkDuplicates = async (query: string, limit: number): Promise<Duplicate[]> => {
      const items: Duplicate[] = []
      let cursor: string | null = null
      for (let i = 0; i < 1000; i++) {
        const page: Page<Duplicate> = await getPage<Duplicate>(app, token, `/logins/duplicates?limit=${limit}${query}${cursor === null ? '' : `&cursor=${cursor}`}`)
        assert.ok(page.items.length <= limit)
        items.push(...page.items)
        if (page.next === null) return items
        cursor = page.next
      }
      throw new Error('duplicates walk did not end')
    }

    const full = await walkDuplicates('', 1000)
    assert.deepEqual(
      new Map(full.map((d) => [`${d.field}:${d.masked_value}`, d])),
      expected,
      'every value seen more than once, with its count and distinct users',
    )
    for (let i = 1; i < full.length; i++) {
      const [a, b] = [full[i - 1] as Duplicate, full[i] as Duplicate]
      assert.ok(a.count > b.count || (a.count === b.count && a.field <= b.field), `sorted by count desc, then field (${i})`)
    }
    assert.deepEqual(await walkDuplicates('', 3), full, 'paging with next gives the same list')
    assert.deepEqual(await walkDuplicates('&field=all&min_count=2', 1), full)

    for (const field of ['ip', 'device_id'] as const) {
      const only = await walkDuplicates(`&field=${field}`, 4)
      assert.deepEqual(only, full.filter((d) => d.field === field), `field=${field}`)
    }
    const three = await walkDuplicates('&min_count=3', 5)
    assert.deepEqual(three, full.filter((d) => d.count >= 3), 'min_count=3')
    assert.ok(three.length > 0 && three.length < full.length)
    assert.deepEqual(await walkDuplicates('&min_count=1000000', 10), [])

    // Read from the service alone: 2001:db8::7 written three ways is one value seen 36 times, by all 4 users;
    // 203.0.113.5 and ::ffff:203.0.113.5 are one value seen 24 times.
    assert.deepEqual(full.filter((d) => d.field === 'ip').map((d) => [d.count, d.users]), [[36, 4], [24, 4], [12, 2]])
  })
})
