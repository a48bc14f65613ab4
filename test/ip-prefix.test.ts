import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import ipaddr from 'ipaddr.js'
import { ConfigError, loadConfig } from '../src/config.ts'
import { sendBodies } from '../src/embedded/samples.ts'
import { loadOrCreateEmbeddedSecrets } from '../src/embedded/secrets.ts'
import { applyRetention } from '../src/pii/erasure.ts'
import type { QueueMessage } from '../src/ingest/queue.ts'
import { IpPrefixer, parseIpPrefixKeys, parsePseudonymNetwork, pseudonymAddress } from '../src/pii/ip-prefix.ts'
import { retireIpPrefixKey, rotateIpPrefixKey } from '../src/pii/ip-prefix-rotation.ts'
import { KeyMismatchError } from '../src/pii/key-registry.ts'
import { prepareDatabase } from '../src/prepare.ts'
import { build, needsServer, randomKeyring, testKeys, testQueue, testServices, type TestServices } from './helper.ts'
import { ingestBodies, loginRecord, receiveMessages, type LoginRecord } from './ingest-helpers.ts'

/*
 * The opt-in prefix-preserving ip pseudonym (IP_PREFIX_KEYS, ipcrypt-pfx) end to end, on the
 * real pipeline, PostgreSQL or PGlite and the SQS emulator: what ingestion stores, the network
 * filter and report of the API, that the filter is index-backed, erasure and retention, and the
 * key registry.
 */

const prefixKey = (id = 'p1'): string => randomKeyring(id)

interface Row {
  id: string
  user_id: string
  masked_ip_prefix: string | null
  ip_prefix_net: string | null
}

async function rowsOf(services: TestServices, userIds: readonly string[]): Promise<Row[]> {
  return [...await services.sql<Row[]>`
    SELECT id::text AS id, user_id, masked_ip_prefix, ip_prefix_net::text AS ip_prefix_net
    FROM user_logins WHERE user_id = ANY(${services.sql.array([...userIds])}::text[]) ORDER BY id`]
}

/** The network of a pseudonym: `bits` leading bits of it, as the filter takes them. */
function networkOf(pseudonym: string, bits: number): string {
  const address = pseudonym.slice(pseudonym.indexOf(':') + 1)
  const parsed = ipaddr.parse(address)
  const network = parsed.kind() === 'ipv4'
    ? ipaddr.IPv4.networkAddressFromCIDR(`${address}/${bits}`).toString()
    : ipaddr.IPv6.networkAddressFromCIDR(`${address}/${bits}`).toRFC5952String()
  return `${network}/${bits}`
}

test('IP_PREFIX_KEYS: parsed like MASK_KEYS, with the draft rules for an ipcrypt-pfx key', () => {
  const good = `p1:${randomBytes(32).toString('base64')},p0:${randomBytes(32).toString('base64')}`
  assert.equal(loadConfig({ NODE_ENV: 'test', IP_PREFIX_KEYS: good }).IP_PREFIX_KEYS, good)
  assert.equal(loadConfig({ NODE_ENV: 'production', DATABASE_URL: 'postgres://x', SQS_QUEUE_URL: 'http://q', MASK_KEYS: 'x', VAULT_MASTER_KEYS: 'y', API_KEYS: 'z' }).IP_PREFIX_KEYS, undefined, 'off by default, even in production')
  const keys = parseIpPrefixKeys(good)
  assert.equal(keys.active.id, 'p1')
  const half = randomBytes(16)
  for (const [text, problem] of [
    [`p1:${randomBytes(16).toString('base64')}`, /at least 32/],
    [`p1:${randomBytes(48).toString('base64')}`, /exactly 32/],
    [`p1:${Buffer.concat([half, half]).toString('base64')}`, /equal 16-byte halves/],
    ['no-secret', /<id>:<base64 secret>/],
  ] as const) {
    assert.throws(() => parseIpPrefixKeys(text), (error: unknown) => {
      assert.ok(error instanceof ConfigError)
      assert.equal(error.variable, 'IP_PREFIX_KEYS')
      assert.match(error.message, problem)
      assert.ok(!error.message.includes(text.slice(3, 20)) || text === 'no-secret', 'the secret is not echoed')
      return true
    })
  }
})

test('embedded defaults generate a usable prefix key into DATA_DIR/secrets.json', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'li-ip-prefix-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const { secrets, created } = await loadOrCreateEmbeddedSecrets(dir)
  assert.equal(created, true)
  assert.match(secrets.IP_PREFIX_KEYS ?? '', /^p1:/)
  const keys = parseIpPrefixKeys(secrets.IP_PREFIX_KEYS ?? '')
  assert.equal(keys.active.secret.length, 32)
  const again = await loadOrCreateEmbeddedSecrets(dir)
  assert.equal(again.secrets.IP_PREFIX_KEYS, secrets.IP_PREFIX_KEYS, 'kept across starts')
  // A DATA_DIR written before the option existed stays without it: the option is off there.
  const { IP_PREFIX_KEYS: _dropped, ...older } = secrets
  await writeFile(join(dir, 'secrets.json'), JSON.stringify(older))
  assert.equal((await loadOrCreateEmbeddedSecrets(dir)).secrets.IP_PREFIX_KEYS, undefined)
  assert.ok(!(await readFile(join(dir, 'secrets.json'), 'utf8')).includes('IP_PREFIX_KEYS'))
})

test('with IP_PREFIX_KEYS: ingestion, network filter and report, index use, erasure, retention, key registry', async (t) => {
  const keys = testKeys(undefined, undefined, prefixKey('p1'))
  const { app, services, tokens } = await build(t, { keys })
  const prefixer = services.ipPrefixer
  assert.ok(prefixer !== null, 'the option is on')
  const get = (url: string) => app.inject({ url, headers: { authorization: `Bearer ${tokens.all}` } })

  // Three users in one /24, one more in the neighbouring /24, two in one IPv6 /64, one with an ip that is no address.
  const users = { a: randomUUID(), b: randomUUID(), c: randomUUID(), d: randomUUID(), e: randomUUID(), f: randomUUID(), g: randomUUID() }
  const records: LoginRecord[] = [
    loginRecord({ user_id: users.a, ip: '10.1.2.3' }),
    loginRecord({ user_id: users.a, ip: '10.1.2.3' }),
    loginRecord({ user_id: users.b, ip: '10.1.2.200' }),
    loginRecord({ user_id: users.c, ip: '::ffff:10.1.2.77' }),
    loginRecord({ user_id: users.d, ip: '10.1.3.3' }),
    loginRecord({ user_id: users.e, ip: '2001:db8:1:2::10' }),
    loginRecord({ user_id: users.f, ip: '2001:DB8:1:2:ffff::1' }),
    loginRecord({ user_id: users.g, ip: 'not-an-address' }),
  ]
  await ingestBodies(services, records.map((r) => JSON.stringify(r)))
  const all = Object.values(users)

  await t.test('ingestion stores <key id>:<pseudonym> and the pseudonym as inet; NULL for a non-address', async () => {
    const rows = await rowsOf(services, all)
    assert.equal(rows.length, records.length)
    for (const record of records) {
      const row = rows.find((r) => r.user_id === record.user_id)
      assert.ok(row)
      if (record.ip === 'not-an-address') {
        assert.equal(row.masked_ip_prefix, null)
        assert.equal(row.ip_prefix_net, null)
        continue
      }
      assert.equal(row.masked_ip_prefix, prefixer.pseudonym(record.ip))
      assert.match(row.masked_ip_prefix ?? '', /^p1:/)
      const address = (row.masked_ip_prefix ?? '').slice(3)
      assert.equal(row.ip_prefix_net, `${address}/${address.includes(':') ? 128 : 32}`, 'the inet column holds the same pseudonym')
      assert.equal(ipaddr.parse(prefixer.reveal(row.masked_ip_prefix ?? '') ?? '').toString(), ipaddr.process(record.ip).toString(), 'reversible by the key holder')
      assert.ok(!(row.masked_ip_prefix ?? '').includes(record.ip), 'the address itself is not stored')
    }
    const [ipv4Mapped] = rows.filter((r) => r.user_id === users.c)
    assert.ok(!(ipv4Mapped?.masked_ip_prefix ?? '').slice(3).includes(':'), 'IPv4-mapped IPv6 gets the IPv4 pseudonym')
  })

  const pseudonymA = prefixer.pseudonym('10.1.2.3') ?? ''
  const pseudonymE = prefixer.pseudonym('2001:db8:1:2::10') ?? ''

  await t.test('GET /logins?ip_network=<pseudonym>/<bits> lists exactly the rows of that network', async () => {
    const idsOf = async (url: string) => {
      const response = await get(url)
      assert.equal(response.statusCode, 200, response.body)
      return response.json<{ items: { user_id: string; masked_ip_prefix: string | null }[] }>().items
    }
    const v4 = await idsOf(`/logins?ip_network=${encodeURIComponent(networkOf(pseudonymA, 24))}`)
    assert.deepEqual(v4.map((i) => i.user_id).sort(), [users.a, users.a, users.b, users.c].sort())
    for (const item of v4) assert.match(item.masked_ip_prefix ?? '', /^p1:/)
    // The report's <key id>:<network> form is accepted as well; /16 takes the neighbouring /24 in.
    const v4wide = await idsOf(`/logins?ip_network=${encodeURIComponent(`p1:${networkOf(pseudonymA, 16)}`)}`)
    assert.deepEqual(v4wide.map((i) => i.user_id).sort(), [users.a, users.a, users.b, users.c, users.d].sort())
    const host = await idsOf(`/logins?ip_network=${encodeURIComponent(`${pseudonymA.slice(3)}/32`)}`)
    assert.deepEqual(host.map((i) => i.user_id), [users.a, users.a])
    const v6 = await idsOf(`/logins?ip_network=${encodeURIComponent(networkOf(pseudonymE, 64))}`)
    assert.deepEqual(v6.map((i) => i.user_id).sort(), [users.e, users.f].sort())
    assert.deepEqual(await idsOf(`/logins?ip_network=${encodeURIComponent(networkOf(pseudonymE, 64))}&user_id=${users.f}`).then((items) => items.map((i) => i.user_id)), [users.f], 'combines with other filters')
    const v6host = await idsOf(`/logins?ip_network=${encodeURIComponent(`${pseudonymE.slice(3)}/128`)}`)
    assert.deepEqual(v6host.map((i) => i.user_id), [users.e])
  })

  await t.test('GET /logins?ip_network answers 400 naming what is wrong', async () => {
    const v4 = pseudonymA.slice(3)
    const v6 = pseudonymE.slice(3)
    for (const [value, problem] of [
      [`${v4}/7`, /ip_network bits after the \/ must be an integer from 8 to 32 for an IPv4 network/],
      [`${v4}/33`, /from 8 to 32/],
      [`${v6}/15`, /from 16 to 128 for an IPv6 network/],
      [`${v6}/129`, /from 16 to 128/],
      [`${v4}/2x`, /from 8 to 32/],
      [v4, /must look like <pseudonymised address>\/<bits>/],
      ['not-an-ip/24', /must start with an IPv4 or IPv6 address/],
      [`zz:${v4}/24`, /must start with an IPv4 or IPv6 address/],
    ] as const) {
      const response = await get(`/logins?ip_network=${encodeURIComponent(value)}`)
      assert.equal(response.statusCode, 400, value)
      const body = response.json<{ statusCode: number; error: string; message: string }>()
      assert.equal(body.error, 'Bad Request')
      assert.match(body.message, /^querystring\/ip_network /)
      assert.match(body.message, problem, value)
    }
  })

  await t.test('GET /logins/duplicates?field=ip_network: networks with more than one user, with login and user counts', async () => {
    const report = async (query: string) => {
      const response = await get(`/logins/duplicates?field=ip_network${query}`)
      assert.equal(response.statusCode, 200, response.body)
      const page = response.json<{ items: { field: string; masked_value: string; count: number; users: number; first_seen: string | null; last_seen: string | null }[]; next: string | null }>()
      // Every row here was sent today: the network's first and last seen are its create_date.
      for (const item of page.items) assert.match(`${item.first_seen} ${item.last_seen}`, /^\d{4}-\d\d-\d\d \d{4}-\d\d-\d\d$/)
      return { ...page, items: page.items.map(({ field, masked_value, count, users }) => ({ field, masked_value, count, users })) }
    }
    assert.deepEqual((await report('&bits=24')).items, [{ field: 'ip_network', masked_value: `p1:${networkOf(pseudonymA, 24)}`, count: 4, users: 3 }])
    assert.deepEqual((await report('')).items, (await report('&bits=24')).items, 'bits defaults to 24')
    assert.deepEqual((await report('&bits=16')).items, [{ field: 'ip_network', masked_value: `p1:${networkOf(pseudonymA, 16)}`, count: 5, users: 4 }])
    assert.deepEqual((await report('&bits=32')).items, [], 'no single address is shared by two users')
    assert.deepEqual((await report('&bits=64')).items, [{ field: 'ip_network', masked_value: `p1:${networkOf(pseudonymE, 64)}`, count: 2, users: 2 }])
    assert.deepEqual((await report('&bits=48')).items, [{ field: 'ip_network', masked_value: `p1:${networkOf(pseudonymE, 48)}`, count: 2, users: 2 }])
    assert.deepEqual((await report('&bits=24&family=6')).items, [{ field: 'ip_network', masked_value: `p1:${networkOf(pseudonymE, 24)}`, count: 2, users: 2 }])
    assert.deepEqual((await report('&bits=24&min_count=5')).items, [], 'min_count applies')
    // Paging with the cursor: one network per page.
    const first = await report('&bits=16&family=4&limit=1')
    assert.equal(first.items.length, 1)
    assert.equal(first.next, null)
    // The report's value is a filter the list takes as is.
    const listed = await get(`/logins?ip_network=${encodeURIComponent(first.items[0]?.masked_value ?? '')}`)
    assert.equal(listed.json<{ items: unknown[] }>().items.length, 5)

    for (const [query, problem] of [
      ['&bits=33&family=4', /querystring\/bits must be from 8 to 32 for IPv4 networks/],
      ['&bits=8&family=6', /querystring\/bits must be from 16 to 128 for IPv6/],
      ['&bits=7', /querystring\/bits must be >= 8/],
      ['&bits=40&family=4', /querystring\/bits must be from 8 to 32 for IPv4/],
    ] as const) {
      const response = await get(`/logins/duplicates?field=ip_network${query}`)
      assert.equal(response.statusCode, 400, query)
      assert.match(response.json<{ message: string }>().message, problem, query)
    }
    const exact = await get('/logins/duplicates?field=ip&bits=24')
    assert.equal(exact.statusCode, 200, 'bits is ignored for the exact-mask fields')
    assert.ok(exact.json<{ items: { field: string }[] }>().items.every((i) => i.field === 'ip'))
  })

  await t.test('the network filter is a range scan of user_logins_ip_prefix_net_idx, also in a generic plan', async () => {
    const plan = async (first: string, last: string) => services.sql.begin(async (tx) => {
      // Seq scans off so that the plan shows whether the index serves the condition, whatever the
      // table's size; a forced generic plan is what a prepared statement may get after five runs.
      await tx`SET LOCAL enable_seqscan = off`
      await tx`SET LOCAL plan_cache_mode = force_generic_plan`
      await tx.unsafe(`PREPARE ip_network_plan(inet, inet, text) AS SELECT id FROM user_logins
        WHERE ip_prefix_net >= $1 AND ip_prefix_net <= $2 AND starts_with(masked_ip_prefix, $3) ORDER BY id DESC LIMIT 101`)
      const rows = await tx.unsafe<{ 'QUERY PLAN': string }[]>(`EXPLAIN EXECUTE ip_network_plan('${first}', '${last}', 'p1:')`)
      await tx.unsafe('DEALLOCATE ip_network_plan')
      return rows.map((r) => r['QUERY PLAN']).join('\n')
    })
    for (const [pseudonym, bits] of [[pseudonymA, 24], [pseudonymE, 48]] as const) {
      const parsed = parsePseudonymNetwork(networkOf(pseudonym, bits), prefixer)
      assert.ok(typeof parsed !== 'string')
      const text = await plan(parsed.first, parsed.last)
      // the partitions' indexes of user_logins_ip_prefix_net_idx (migration 011), e.g. user_logins_2026_12_ip_prefix_net_user_id_idx
      assert.match(text, /Index Scan using user_logins_\w*ip_prefix_net\w*_idx/, text)
      assert.match(text, /Index Cond: \(\(ip_prefix_net >= \$1\) AND \(ip_prefix_net <= \$2\)\)/, text)
    }
  })

  await t.test('DELETE /users/{user_id}/pii clears that user\'s pseudonyms and no one else\'s', async () => {
    const response = await app.inject({
      method: 'DELETE',
      url: `/users/${users.a}/pii`,
      headers: { authorization: `Bearer ${tokens['pii:erase']}`, 'x-access-reason': 'SEC-15 erasure check' },
    })
    assert.equal(response.statusCode, 200, response.body)
    const rows = await rowsOf(services, all)
    for (const row of rows.filter((r) => r.user_id === users.a)) {
      assert.equal(row.masked_ip_prefix, null)
      assert.equal(row.ip_prefix_net, null)
    }
    assert.equal(rows.filter((r) => r.user_id !== users.a && r.masked_ip_prefix !== null).length, records.length - 3, 'the others keep theirs')
    const listed = await get(`/logins?ip_network=${encodeURIComponent(networkOf(pseudonymA, 24))}`)
    assert.deepEqual(listed.json<{ items: { user_id: string }[] }>().items.map((i) => i.user_id).sort(), [users.b, users.c].sort())
  })

  await t.test('retention clears the pseudonyms of expired months with their originals', async () => {
    const old = randomUUID()
    const oldRecord = loginRecord({ user_id: old, ip: '10.9.9.9' })
    const recentRecord = loginRecord({ user_id: old, ip: '10.9.9.10' })
    const sentAt = new Map([[JSON.stringify(oldRecord), new Date(Date.UTC(2021, 0, 15, 12))], [JSON.stringify(recentRecord), new Date()]])
    await sendBodies(services.queue.client, services.queue.url, [...sentAt.keys()])
    const batch = (await receiveMessages(services.queue, 2)).map((m) => ({ ...m, sentAt: sentAt.get(m.body) ?? m.sentAt }))
    const outcome = await services.pipeline.process(batch)
    await services.queue.delete(outcome.stored)
    const before = await rowsOf(services, [old])
    assert.equal(before.filter((r) => r.masked_ip_prefix !== null).length, 2)
    await applyRetention(services.sql, { days: 365, dryRun: true })
    assert.deepEqual(await rowsOf(services, [old]), before, 'a dry run changes nothing')
    const report = await applyRetention(services.sql, { days: 365, dryRun: false })
    assert.ok(report.originals >= 1)
    const after = await rowsOf(services, [old])
    assert.deepEqual(after.map((r) => r.masked_ip_prefix).sort(), [null, prefixer.pseudonym('10.9.9.10')], 'the January 2021 row lost its pseudonym, the recent one kept it')
    assert.equal(after.find((r) => r.masked_ip_prefix === null)?.ip_prefix_net, null)
  })

  await t.test('the key registry refuses another secret or a missing key for existing pseudonyms; off is allowed', async () => {
    const base = { mask: keys.mask, master: keys.master }
    await assert.rejects(prepareDatabase(services.sql, { ...base, ipPrefix: parseIpPrefixKeys(prefixKey('p1')) }), (error: unknown) => {
      assert.ok(error instanceof KeyMismatchError)
      assert.match(error.message, /^IP_PREFIX_KEYS: key p1 is not the key that existing data was written with/)
      return true
    })
    await assert.rejects(prepareDatabase(services.sql, { ...base, ipPrefix: parseIpPrefixKeys(prefixKey('p2')) }), /IP_PREFIX_KEYS: key p1, which protects existing data, is not configured/)
    await prepareDatabase(services.sql, { ...base, ipPrefix: null })
    await prepareDatabase(services.sql, { ...base, ipPrefix: keys.ipPrefix })
    // A second key beside the first is registered, and from then on protected too.
    const both = parseIpPrefixKeys(`${keys.IP_PREFIX_KEYS ?? ''},${prefixKey('p2')}`)
    await prepareDatabase(services.sql, { ...base, ipPrefix: both })
    const [row] = await services.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM key_fingerprints WHERE kind = 'ip_prefix'`
    assert.equal(row?.n, 2)
    assert.ok((await IpPrefixer.create(both)).has('p2'))
  })
})

test('without IP_PREFIX_KEYS: no pseudonyms, and the network filter and report say the option is off', async (t) => {
  const { app, services, tokens } = await build(t)
  assert.equal(services.ipPrefixer, null)
  const record = loginRecord()
  await ingestBodies(services, [JSON.stringify(record)])
  const [row] = await rowsOf(services, [record.user_id])
  assert.equal(row?.masked_ip_prefix, null)
  assert.equal(row?.ip_prefix_net, null)
  const headers = { authorization: `Bearer ${tokens.all}` }
  const listed = await app.inject({ url: '/logins', headers })
  assert.equal(listed.json<{ items: { masked_ip_prefix: string | null }[] }>().items[0]?.masked_ip_prefix, null)
  for (const url of ['/logins?ip_network=1.2.3.0%2F24', '/logins/duplicates?field=ip_network&bits=24']) {
    const response = await app.inject({ url, headers })
    assert.equal(response.statusCode, 400, url)
    assert.match(response.json<{ message: string }>().message, /needs IP_PREFIX_KEYS, which this service is not configured with/)
  }
})

test('rotate-keys --ip-prefix: moves every pseudonym to the new key from the vault, resumably; retiring the old key', async (t) => {
  const p1 = prefixKey('p1')
  const p2 = prefixKey('p2')
  const before = testKeys(undefined, undefined, `${p1},${p2}`)
  const queue = await testQueue(t)
  const old = await testServices(t, queue.queue, { keys: before })
  const ips = Array.from({ length: 25 }, (_, i) => (i % 5 === 4 ? `2001:db8:${i}::${i}` : `10.${i % 3}.${i % 2}.${i}`))
  const messages = ips.map((ip): QueueMessage => ({
    messageId: randomUUID(),
    receiptHandle: 'unused',
    body: JSON.stringify(loginRecord({ ip })),
    sentAt: new Date(),
    receiveCount: 1,
  }))
  await old.pipeline.process(messages)
  const ipOf = new Map(messages.map((m, i) => [m.messageId, ips[i] as string]))
  const rows = () => old.sql<{ message_id: string; masked_ip_prefix: string | null; ip_prefix_net: string | null }[]>`
    SELECT message_id, masked_ip_prefix, ip_prefix_net::text AS ip_prefix_net FROM user_logins ORDER BY id`
  assert.ok((await rows()).every((r) => r.masked_ip_prefix?.startsWith('p1:')))

  // p2 goes first on every replica; then the backfill.
  const after = testKeys(before.MASK_KEYS, before.VAULT_MASTER_KEYS, `${p2},${p1}`)
  const next = await testServices(t, queue.queue, { keys: after, db: old.db })
  const prefixer = next.ipPrefixer
  assert.ok(prefixer)
  const deps = { sql: next.sql, prefixer, vault: next.vault, log: { info: () => {} } }
  await assert.rejects(rotateIpPrefixKey({ ...deps, prefixer: old.ipPrefixer as IpPrefixer }, 'p2'), /must be the first \(active\) key/)
  await assert.rejects(rotateIpPrefixKey(deps, 'p3'), /key p3 is not configured/)
  await assert.rejects(retireIpPrefixKey(next.sql, 'p1', 'p2'), /still pseudonymises 25 rows/)

  const partial = await rotateIpPrefixKey(deps, 'p2', { batchSize: 10, stopAfterBatches: 1 })
  assert.deepEqual(partial, { to: 'p2', repseudonymised: 10, withoutOriginals: 0, done: false })
  // A login ingested during the rotation is written under p2 at once.
  const live: QueueMessage = { messageId: randomUUID(), receiptHandle: 'unused', body: JSON.stringify(loginRecord({ ip: '10.0.0.99' })), sentAt: new Date(), receiveCount: 1 }
  await next.pipeline.process([live])
  ipOf.set(live.messageId, '10.0.0.99')
  const midway = await rows()
  assert.equal(midway.filter((r) => r.masked_ip_prefix?.startsWith('p2:')).length, 11)

  const done = await rotateIpPrefixKey(deps, 'p2', { batchSize: 10 })
  assert.deepEqual(done, { to: 'p2', repseudonymised: 25, withoutOriginals: 0, done: true }, 'resumed where it stopped: each row moved once')
  const final = await rows()
  for (const row of final) {
    const ip = ipOf.get(row.message_id) ?? ''
    assert.equal(row.masked_ip_prefix, prefixer.pseudonym(ip, 'p2'))
    const address = pseudonymAddress(row.masked_ip_prefix) ?? ''
    assert.equal(row.ip_prefix_net, `${address}/${address.includes(':') ? 128 : 32}`)
  }
  assert.deepEqual(await rotateIpPrefixKey(deps, 'p2'), { to: 'p2', repseudonymised: 0, withoutOriginals: 0, done: true }, 'running it again does nothing')

  await retireIpPrefixKey(next.sql, 'p1', 'p2')
  await assert.rejects(retireIpPrefixKey(next.sql, 'p2', 'p2'), /is the active one/)
  // p1 can now leave IP_PREFIX_KEYS: the service starts with p2 alone.
  await prepareDatabase(next.sql, { mask: after.mask, master: after.master, ipPrefix: parseIpPrefixKeys(p2) })
})

test('npm run rotate-keys -- --ip-prefix p2 (the command itself)', { skip: needsServer }, async (t) => {
  const p1 = prefixKey('p1')
  const p2 = prefixKey('p2')
  const before = testKeys(undefined, undefined, p1)
  const queue = await testQueue(t)
  const old = await testServices(t, queue.queue, { keys: before })
  await old.pipeline.process(Array.from({ length: 12 }, (): QueueMessage => ({
    messageId: randomUUID(), receiptHandle: 'unused', body: JSON.stringify(loginRecord()), sentAt: new Date(), receiveCount: 1,
  })))
  const run = (args: string[], IP_PREFIX_KEYS: string) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/rotate-keys.ts', ...args], {
      env: { ...process.env, DATABASE_URL: old.db.url, MASK_KEYS: before.MASK_KEYS, VAULT_MASTER_KEYS: before.VAULT_MASTER_KEYS, IP_PREFIX_KEYS, LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
  const refused = await run(['--ip-prefix', 'p2'], `${p1},${p2}`)
  assert.equal(refused.code, 1)
  assert.match(refused.stderr, /key p2 must be the first \(active\) key/)
  const moved = await run(['--ip-prefix', 'p2', '--batch-size', '5'], `${p2},${p1}`)
  assert.equal(moved.code, 0, moved.stderr)
  // stdout carries the log lines (pino, written asynchronously) and the report, the one line without a msg.
  const lines = moved.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  assert.deepEqual(lines.filter((line) => !('msg' in line)), [{ to: 'p2', repseudonymised: 12, withoutOriginals: 0, done: true }])
  const retired = await run(['--retire-ip-prefix', 'p1'], `${p2},${p1}`)
  assert.equal(retired.code, 0, retired.stderr)
  const [row] = await old.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE starts_with(masked_ip_prefix, 'p2:')`
  assert.equal(row?.n, 12)
})
