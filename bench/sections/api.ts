import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import postgres from 'postgres'
import { encodeAppVersion } from '../../src/ingest/app-version.ts'
import { listDuplicates, listLogins, type DuplicateQuery, type LoginQuery } from '../../src/logins/store.ts'
import { round, type Context } from '../lib/context.ts'
import { rebuildSummary, resetTables } from '../lib/db.ts'
import { cpuSeconds, jsonLine, spawnNode, type Child } from '../lib/proc.ts'
import { startService, type RunningService, type ServiceOptions } from '../lib/service.ts'
import { createQueue, deleteQueue } from '../lib/sqs.ts'

const VERSIONS = ['2.3.0', '0.2.6', '2.2.1', '0.96', '0.4.6', '3.7', '2.2.8', '0.5.5', '0.60', '6.4.8', '0.16', '2.0.8', '7.31', '2.00', '5.4.8', '1.1', '3.0', '10.12.1', '2.20', '1.0.0-beta']
const LOCALES = ['RU', 'PH', 'ID', 'FR', 'BR', 'KE', 'PE', 'KR', 'CN', 'MT', 'GR', 'US', 'DE']
/** The per-key rate limit of the service in this section (default 600 a minute; this is the most the config accepts). */
export const API_RATE_LIMIT_PER_MINUTE = 1_000_000

export interface LoadResult {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  requests: number
  /** non-2xx answers, errors and timeouts: must be 0 for the figures to mean anything */
  failures: number
  /** CPU time of the server process per request, microseconds */
  serverCpuUsPerRequest: number
}

export interface ScenarioResult {
  path: string
  connections: number
  service: LoadResult
  bare: LoadResult
  /** service / bare */
  throughputRatio: number
  p99Ratio: number
  /** the service and the bare server answered the same items */
  sameAnswer: boolean
  plan: { indexes: string[]; seqScan: boolean; executionMs: number; text: string[] }
}

export interface ApiResult {
  rows: number
  fillSeconds: number
  rateLimitPerMinute: number
  serviceLogLevel: string
  scenarios: ScenarioResult[]
}

/**
 * Fills user_logins with `rows` pre-masked rows straight in SQL (INSERT ... SELECT
 * generate_series, with the secondary indexes built afterwards): masked values are
 * `k1:<base64url sha256>` of pooled values, skewed so some repeat often, as real ones do.
 */
export async function fillTable(ctx: Pick<Context, 'db'>, rows: number): Promise<number> {
  const sql = ctx.db.sql
  await resetTables(sql)
  const started = performance.now()
  // Dropping the secondary indexes and building them afterwards pays off on large fills only.
  const indexes = rows < 100_000 ? [] : await sql<{ indexname: string; indexdef: string }[]>`
    SELECT i.indexname, i.indexdef FROM pg_indexes i
    WHERE i.tablename = 'user_logins' AND i.schemaname = current_schema()
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`
  const users = Math.max(100, Math.floor(rows / 10))
  const ips = Math.max(100, Math.floor(rows / 3))
  const devices = Math.max(100, Math.floor(rows / 3))
  const versionInts = VERSIONS.map((v) => encodeAppVersion(v))
  await sql.begin(async (tx) => {
    // The summary is rebuilt by grouping below instead of folding a million pending rows.
    await tx`ALTER TABLE user_logins DISABLE TRIGGER user_logins_summary_insert`
    await tx`ALTER TABLE user_logins DISABLE TRIGGER user_logins_summary_update`
    for (const { indexname } of indexes) await tx.unsafe(`DROP INDEX ${indexname}`)
    // The months' partitions (migration 011); ingestion makes them on its own.
    await tx`SELECT login_partition_ensure(m::date) FROM generate_series('2026-01-01'::date, '2026-04-01'::date, interval '1 month') m`
    await tx`SELECT setseed(0.42)`
    await tx`
      INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
                               app_version_text, create_date, sent_at, mask_key_id, ingested_at)
      SELECT 'bench-' || g,
             md5('user:' || u)::uuid::text,
             (ARRAY['android', 'android', 'ios', 'ios', 'web', 'ipados'])[1 + floor(random() * 6)::int],
             'k1:' || rtrim(translate(encode(sha256(convert_to('ip:' || ip, 'UTF8')), 'base64'), '+/', '-_'), '='),
             'k1:' || rtrim(translate(encode(sha256(convert_to('device:' || dev, 'UTF8')), 'base64'), '+/', '-_'), '='),
             CASE WHEN random() < 0.3 THEN NULL ELSE (${sql.array(LOCALES)}::text[])[1 + floor(random() * ${LOCALES.length})::int] END,
             (${sql.array(versionInts.map((v) => v ?? 0))}::int[])[1 + v],
             (${sql.array(VERSIONS)}::text[])[1 + v],
             sent::date, sent, 'k1', sent + interval '1 second'
      FROM generate_series(1, ${rows}::int) g,
           LATERAL (SELECT floor(random() * ${users})::int AS u,
                           floor(power(random(), 2) * ${ips})::int AS ip,
                           floor(power(random(), 2) * ${devices})::int AS dev,
                           floor(random() * ${VERSIONS.length})::int AS v,
                           timestamptz '2026-01-01' + (g::float8 / ${rows}) * interval '90 days' AS sent) r`
    // NULL integers where the version has no encoding (1.0.0-beta), as ingestion writes them.
    const unencodable = VERSIONS.filter((v) => encodeAppVersion(v) === null)
    await tx`UPDATE user_logins SET app_version = NULL WHERE app_version_text IN ${tx(unencodable)}`
    await tx`SET LOCAL maintenance_work_mem = '256MB'`
    // pg_indexes gives a partitioned table's index as `CREATE INDEX ... ON ONLY user_logins`,
    // which builds no partition's index (and leaves the parent's invalid): without ONLY it
    // cascades to every month, as migration 011 made them.
    for (const { indexdef } of indexes) await tx.unsafe(indexdef.replace(/ ON ONLY /, ' ON '))
    await tx`ALTER TABLE user_logins ENABLE TRIGGER user_logins_summary_insert`
    await tx`ALTER TABLE user_logins ENABLE TRIGGER user_logins_summary_update`
  })
  await rebuildSummary(sql)
  // Index-only scans need the visibility map; autovacuum would get there on its own, later.
  await sql`VACUUM ANALYZE user_logins`
  return (performance.now() - started) / 1000
}

/** Captures the text and parameters of the query a store function sends, to EXPLAIN it. */
async function explain(ctx: Context, run: (sql: postgres.Sql) => Promise<unknown>): Promise<ScenarioResult['plan']> {
  let captured: { query: string; parameters: unknown[] } | null = null
  const capturing = postgres(ctx.db.url, { max: 1, onnotice: () => {}, debug: (_c, query, parameters) => { captured = { query, parameters } } })
  try {
    await run(capturing)
  } finally {
    await capturing.end({ timeout: 1 })
  }
  const { query, parameters } = captured as unknown as { query: string; parameters: unknown[] }
  const lines = (await ctx.db.sql.unsafe<{ 'QUERY PLAN': string }[]>(`EXPLAIN (ANALYZE, BUFFERS) ${query}`, parameters as never[]))
    .map((row) => row['QUERY PLAN'])
  const indexes = [...new Set(lines.flatMap((line) => /(?:Index(?: Only)? Scan(?: Backward)?|Bitmap Index Scan) (?:using|on) (\S+)/.exec(line)?.[1] ?? []))]
  return {
    indexes,
    seqScan: lines.some((line) => /Seq Scan on user_logins/.test(line)),
    executionMs: Number(/Execution Time: ([\d.]+) ms/.exec(lines.join('\n'))?.[1] ?? NaN),
    text: lines,
  }
}

interface AutocannonJson {
  requests: { average: number; total: number }
  latency: { p50: number; p99: number }
  errors: number
  timeouts: number
  non2xx: number
}

/** One autocannon run from a process of its own, against the server of process `pid`. */
export async function load(pid: number, url: string, token: string, connections: number, seconds: number): Promise<LoadResult> {
  const cpu0 = cpuSeconds(pid)
  const child: Child = spawnNode(
    ['node_modules/autocannon/autocannon.js', '-j', '-c', String(connections), '-d', String(seconds), '-H', `authorization=Bearer ${token}`, url],
    { PATH: process.env.PATH, HOME: process.env.HOME },
  )
  const json = await child.line((line) => jsonLine<AutocannonJson>(line), (seconds + 60) * 1000)
  await child.exited
  const cpu = cpuSeconds(pid) - cpu0
  return {
    requestsPerSecond: round(json.requests.average, 1),
    p50Ms: round(json.latency.p50, 2),
    p99Ms: round(json.latency.p99, 2),
    requests: json.requests.total,
    failures: json.errors + json.timeouts + json.non2xx,
    serverCpuUsPerRequest: round((cpu / Math.max(1, json.requests.total)) * 1e6, 0),
  }
}

/**
 * The service on the bench's database with its worker off and the per-key rate limit raised,
 * as sections 6 and 8 load it; its queue (which it never polls) is made for it, and is the
 * caller's to delete.
 */
export async function startApiService(ctx: Context, queueName: string, extra: Pick<ServiceOptions, 'cpuProfDir'> = {}): Promise<{ service: RunningService; queueUrl: string }> {
  const queueUrl = await createQueue(ctx.emulator.client, queueName)
  const service = await startService({
    runtime: ctx.runtime,
    databaseUrl: ctx.db.url,
    queueUrl,
    endpoint: ctx.emulator.endpoint,
    keys: ctx.keys,
    pollers: ctx.options.pollers,
    workerEnabled: false,
    logLevel: ctx.options.serviceLogLevel,
    rateLimitPerMinute: API_RATE_LIMIT_PER_MINUTE,
    ...extra,
  })
  return { service, queueUrl }
}

/**
 * The mean of runs measured alternately with another server's (so drift hits both alike):
 * request rate, p50 and p99 averaged, requests and failures summed, CPU per request weighted.
 */
export function meanLoad(runs: readonly LoadResult[]): LoadResult {
  const avg = (f: (r: LoadResult) => number, digits: number) => round(runs.reduce((a, r) => a + f(r), 0) / Math.max(1, runs.length), digits)
  const requests = runs.reduce((a, r) => a + r.requests, 0)
  return {
    requestsPerSecond: avg((r) => r.requestsPerSecond, 1),
    p50Ms: avg((r) => r.p50Ms, 2),
    p99Ms: avg((r) => r.p99Ms, 2),
    requests,
    failures: runs.reduce((a, r) => a + r.failures, 0),
    serverCpuUsPerRequest: round(runs.reduce((a, r) => a + r.serverCpuUsPerRequest * r.requests, 0) / Math.max(1, requests), 0),
  }
}

/**
 * Section 6: GET /logins and GET /logins/duplicates on a large table, loaded by autocannon from
 * a second process, against the service and against a bare node:http + postgres.js server
 * running the same queries, in the same run.
 */
export async function apiLatency(ctx: Context): Promise<ApiResult> {
  const { options } = ctx
  ctx.log(`filling user_logins with ${options.rows} rows`)
  const fillSeconds = await fillTable(ctx, options.rows)
  const sql = ctx.db.sql
  const [sampleUser] = await sql<{ user_id: string }[]>`SELECT user_id FROM user_logins ORDER BY id DESC LIMIT 1`
  const [sampleIp] = await sql<{ masked_ip: string }[]>`SELECT masked_ip FROM user_logins ORDER BY id DESC LIMIT 1 OFFSET 7`
  const [lastDay] = await sql<{ day: string }[]>`SELECT to_char(max(create_date) - 3, 'YYYY-MM-DD') AS day FROM user_logins`
  if (sampleUser === undefined || sampleIp === undefined || lastDay === undefined) throw new Error('the table is empty')

  const logins = (query: Omit<LoginQuery, 'limit'>) => (s: postgres.Sql) => listLogins(s, { limit: 100, ...query })
  const duplicates = (query: Omit<DuplicateQuery, 'limit'>) => (s: postgres.Sql) => listDuplicates(s, { limit: 100, ...query })
  const scenarios: { path: string; connections: number; query: (s: postgres.Sql) => Promise<unknown> }[] = [
    { path: '/logins?limit=100', connections: options.apiConnections, query: logins({}) },
    { path: `/logins?limit=100&user_id=${sampleUser.user_id}`, connections: options.apiConnections, query: logins({ user_id: sampleUser.user_id }) },
    { path: `/logins?limit=100&masked_ip=${encodeURIComponent(sampleIp.masked_ip)}`, connections: options.apiConnections, query: logins({ masked_ip: sampleIp.masked_ip }) },
    {
      path: `/logins?limit=100&device_type=ios&locale=RU&date_from=${lastDay.day}&date_to=${lastDay.day}`,
      connections: options.apiConnections,
      query: logins({ device_type: 'ios', locale: 'RU', date_from: lastDay.day, date_to: lastDay.day }),
    },
    { path: '/logins/duplicates?field=all&limit=100', connections: 2, query: duplicates({ fields: ['device_id', 'ip'], minCount: 2 }) },
  ]

  const { client } = ctx.emulator
  const { service, queueUrl } = await startApiService(ctx, 'bench-api', options.profile ? { cpuProfDir: join(process.cwd(), 'bench', 'results') } : {})
  const bare = spawnNode(['--import', 'tsx', 'bench/consumers/bare-server.ts'], {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: ctx.db.url,
    MASK_KEYS: ctx.keys.MASK_KEYS,
    API_KEY_SHA256: ctx.keys.API_KEYS.slice(ctx.keys.API_KEYS.lastIndexOf(':') + 1),
  })
  const bareUrl = (await bare.line((line) => jsonLine<{ address?: string }>(line)?.address)) as string

  const results: ScenarioResult[] = []
  try {
    for (const scenario of scenarios) {
      const get = async (base: string): Promise<unknown> => {
        const response = await fetch(`${base}${scenario.path}`, { headers: { authorization: `Bearer ${ctx.keys.token}` } })
        if (!response.ok) throw new Error(`${base}${scenario.path}: HTTP ${response.status} ${await response.text()}`)
        return ((await response.json()) as { items: unknown }).items
      }
      const sameAnswer = isDeepStrictEqual(await get(service.url), await get(bareUrl))
      ctx.log(`${scenario.path}: EXPLAIN, then autocannon -c ${scenario.connections}`)
      const plan = await explain(ctx, scenario.query)
      const seconds = options.apiSeconds
      if (!options.quick) {
        // Warm-up runs, not counted: JIT, connection pools, PostgreSQL's buffers.
        const warm = Math.max(1, Math.round(seconds / 3))
        await load(service.pid, `${service.url}${scenario.path}`, ctx.keys.token, scenario.connections, warm)
        await load(bare.pid, `${bareUrl}${scenario.path}`, ctx.keys.token, scenario.connections, warm)
      }
      let serviceResult: LoadResult
      let bareResult: LoadResult
      if (options.quick) {
        serviceResult = await load(service.pid, `${service.url}${scenario.path}`, ctx.keys.token, scenario.connections, seconds)
        bareResult = await load(bare.pid, `${bareUrl}${scenario.path}`, ctx.keys.token, scenario.connections, seconds)
      } else {
        // service, bare, bare, service: a drift of the machine during the runs hits both alike.
        const s1 = await load(service.pid, `${service.url}${scenario.path}`, ctx.keys.token, scenario.connections, seconds)
        const b1 = await load(bare.pid, `${bareUrl}${scenario.path}`, ctx.keys.token, scenario.connections, seconds)
        const b2 = await load(bare.pid, `${bareUrl}${scenario.path}`, ctx.keys.token, scenario.connections, seconds)
        const s2 = await load(service.pid, `${service.url}${scenario.path}`, ctx.keys.token, scenario.connections, seconds)
        serviceResult = meanLoad([s1, s2])
        bareResult = meanLoad([b1, b2])
      }
      results.push({
        path: scenario.path.replace(/(user_id|masked_ip)=[^&]+/, '$1=…'),
        connections: scenario.connections,
        service: serviceResult,
        bare: bareResult,
        throughputRatio: round(serviceResult.requestsPerSecond / bareResult.requestsPerSecond, 3),
        p99Ratio: round(serviceResult.p99Ms / bareResult.p99Ms, 3),
        sameAnswer,
        plan,
      })
    }
  } finally {
    await service.child.stop()
    await bare.stop()
    await deleteQueue(client, queueUrl)
  }
  return { rows: options.rows, fillSeconds: round(fillSeconds, 1), rateLimitPerMinute: API_RATE_LIMIT_PER_MINUTE, serviceLogLevel: options.serviceLogLevel, scenarios: results }
}
