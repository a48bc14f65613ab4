import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { totalmem } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Readable } from 'node:stream'
import { pipeline as streamPipeline } from 'node:stream/promises'
import { encodeAppVersion } from '../../src/ingest/app-version.ts'
import { LoginPipeline } from '../../src/ingest/pipeline.ts'
import type { QueueMessage } from '../../src/ingest/queue.ts'
import { listDuplicates, listLogins } from '../../src/logins/store.ts'
import { refreshDuplicates } from '../../src/logins/summary.ts'
import { Masker } from '../../src/pii/mask.ts'
import { Vault, keyringProvider } from '../../src/pii/vault.ts'
import { round, type Context } from '../lib/context.ts'
import { createBenchDatabase, rebuildSummary, resetTables } from '../lib/db.ts'
import { messageSource } from '../lib/messages.ts'
import { deleteQueue } from '../lib/sqs.ts'
import { prepareDatabase } from '../../src/prepare.ts'
import type { RunningService } from '../lib/service.ts'
import { load, meanLoad, startApiService, type LoadResult } from './api.ts'

export interface ScalePoint {
  rows: number
  /** seconds the COPY (and the summary rebuild) took to reach this size from the previous one */
  loadSeconds: number
  /** the pipeline's store path (masking, vault, INSERT, summary trigger) on this table, 2 batches of 10 in flight, into a new month */
  ingestPerSecond: number
  /** the same into the last loaded month, the largest partition (null on the empty table) */
  ingestFullMonthPerSecond: number | null
  /** each run's msg/s, in the order they ran (interleaved: new, last, new, last); the two figures above are their means */
  ingestRuns: { newMonth: number[]; lastLoadedMonth: number[] }
  /**
   * Sizes above 0: the empty table's msg/s (another database, emptied before each run) measured
   * in turns with this table's runs (empty, new, last, empty, new, last); the ingestion ratios
   * compare with their mean.
   */
  emptyRuns?: number[]
  /** the first run into each month, before those (not in the means), and its reads per message */
  firstRuns: { newMonth: number; lastLoadedMonth: number | null; io: { newMonth: IoPerMessage; lastLoadedMonth: IoPerMessage | null } }
  /** folding the ingested messages (foldedMessages of them) into the duplicates summary, once after all runs */
  refreshMs: number
  foldedMessages: number
  /** GET /logins?limit=100 (no filter and user_id, alternately), store level, one at a time, 1,000 pages */
  pageP50Ms: number
  pageP99Ms: number
  /** GET /logins/duplicates?limit=100, store level, 10 at a time, 1,000 reports */
  duplicatesP50Ms: number
  duplicatesP99Ms: number
  /**
   * Through the service over HTTP (autocannon from a process of its own, 10 connections, the
   * service on this database with its worker off): GET /logins?limit=100 and
   * GET /logins/duplicates?field=all&limit=100, the endpoints the targets name; the mean of
   * `rounds` runs of each, and each run's p99.
   */
  http: { connections: number; seconds: number; rounds: number; page: LoadResult; duplicates: LoadResult; p99Runs: { page: number[]; duplicates: number[] } }
  /** Sizes above the reference (the smallest): the reference table's HTTP figures, measured in turns with this table's. */
  reference?: { rows: number; http: ScalePoint['http'] }
  /**
   * Reads and writes per message of the ingestion runs into each month and of the fold:
   * PostgreSQL's blocks read (not in shared_buffers: from the OS page cache or the disk) and hit,
   * WAL written, and the machine's disk reads and writes (/proc/diskstats; null elsewhere).
   */
  io: { newMonth: IoPerMessage; lastLoadedMonth: IoPerMessage | null; fold: IoPerMessage }
  tableMiB: number
  indexesMiB: number
  vaultMiB: number
  summaryMiB: number
  /** bytes per row: table + indexes of user_logins, and the summary tables */
  bytesPerLogin: number
  summaryBytesPerLogin: number
}

export interface IoPerMessage {
  blocksRead: number
  blocksHit: number
  walBytes: number
  diskReadKiB: number | null
  diskWrittenKiB: number | null
}

export interface ScaleResult {
  ingestMessages: number
  /** what bounds the working set in memory: the server's shared_buffers and the machine's RAM */
  memory: { sharedBuffersMiB: number; ramGiB: number }
  /** bytes per vault row, from the rows ingestion wrote (COPY-loaded rows have no originals) */
  vaultBytesPerLogin: number
  points: ScalePoint[]
}

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN, 2)
}

const copyField = (value: string | null): string =>
  value === null ? '\\N' : value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')

interface IoSnapshot { blocksRead: number; blocksHit: number; lsn: string; diskRead: number | null; diskWritten: number | null }

/** Sectors (512 B) read and written by the machine's disks, partitions and virtual devices left out; null without /proc. */
async function diskSectors(): Promise<{ read: number; written: number } | null> {
  try {
    let read = 0
    let written = 0
    for (const line of (await readFile('/proc/diskstats', 'utf8')).split('\n')) {
      const f = line.trim().split(/\s+/)
      if (!/^(sd[a-z]+|vd[a-z]+|xvd[a-z]+|nvme\d+n\d+)$/.test(f[2] ?? '')) continue
      read += Number(f[5])
      written += Number(f[9])
    }
    return { read, written }
  } catch {
    return null
  }
}

async function ioSnapshot(sql: Context['db']['sql']): Promise<IoSnapshot> {
  // A backend reports its block counts within a second of going idle (PostgreSQL 15).
  await sleep(1200)
  const [row] = await sql<{ r: number; h: number; lsn: string }[]>`
    SELECT blks_read::float8 AS r, blks_hit::float8 AS h, pg_current_wal_lsn()::text AS lsn FROM pg_stat_database WHERE datname = current_database()`
  const disk = await diskSectors()
  return { blocksRead: row?.r ?? 0, blocksHit: row?.h ?? 0, lsn: row?.lsn ?? '0/0', diskRead: disk?.read ?? null, diskWritten: disk?.written ?? null }
}

/** A WAL position (`pg_lsn` text, two hex halves) in bytes. */
const lsnBytes = (lsn: string): number => {
  const [hi = '0', lo = '0'] = lsn.split('/')
  return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16)
}

/** The difference of snapshot pairs (summed over the pairs), per message. */
function ioPerMessage(pairs: [IoSnapshot, IoSnapshot][], messages: number): IoPerMessage {
  let blocksRead = 0
  let blocksHit = 0
  let wal = 0
  let diskRead: number | null = 0
  let diskWritten: number | null = 0
  for (const [a, b] of pairs) {
    blocksRead += b.blocksRead - a.blocksRead
    blocksHit += b.blocksHit - a.blocksHit
    wal += lsnBytes(b.lsn) - lsnBytes(a.lsn)
    diskRead = diskRead === null || a.diskRead === null || b.diskRead === null ? null : diskRead + b.diskRead - a.diskRead
    diskWritten = diskWritten === null || a.diskWritten === null || b.diskWritten === null ? null : diskWritten + b.diskWritten - a.diskWritten
  }
  const per = (v: number, digits: number) => round(v / Math.max(1, messages), digits)
  return {
    blocksRead: per(blocksRead, 2),
    blocksHit: per(blocksHit, 1),
    walBytes: per(wal, 0),
    diskReadKiB: diskRead === null ? null : per(diskRead / 2, 2),
    diskWrittenKiB: diskWritten === null ? null : per(diskWritten / 2, 2),
  }
}

const PAGE_SAMPLES = 1000
/** runs of `--scale-messages` messages into each month at each size */
const INGEST_RUNS = 2
/** autocannon connections of the HTTP figures: the issue's targets say 10 */
const HTTP_CONNECTIONS = 10
/** autocannon runs of each endpoint on each table (2 with --quick); a table's figures are their mean */
const HTTP_ROUNDS = 4

/**
 * The two endpoints through the service as it runs in production (its own process, NODE_ENV
 * production, its pool and its serialization), loaded from a third process, on one table or on
 * two side by side: a service on each database, loaded in turns (A B, then B A, ...), so that
 * the machine's drift from one minute to the next hits both tables alike. A warm-up run of each
 * first, not counted; then HTTP_ROUNDS runs of each (2 with --quick), whose mean is the table's figure.
 */
async function httpLatency(tables: Context[]): Promise<ScalePoint['http'][]> {
  const seconds = tables[0]?.options.apiSeconds ?? 5
  const rounds = tables[0]?.options.quick === true ? 2 : HTTP_ROUNDS
  const services: { ctx: Context; service: RunningService; queueUrl: string }[] = []
  try {
    for (const [i, ctx] of tables.entries()) services.push({ ctx, ...(await startApiService(ctx, `bench-scale-${i}`)) })
    const measure = async (path: string): Promise<{ mean: LoadResult; p99Runs: number[] }[]> => {
      const warm = Math.max(1, Math.round(seconds / 3))
      for (const { ctx, service } of services) {
        const url = `${service.url}${path}`
        const check = await fetch(url, { headers: { authorization: `Bearer ${ctx.keys.token}` } })
        if (!check.ok) throw new Error(`${path}: HTTP ${check.status} ${await check.text()}`)
        await check.arrayBuffer()
        await load(service.pid, url, ctx.keys.token, HTTP_CONNECTIONS, warm)
      }
      const runs = services.map(() => [] as LoadResult[])
      for (let round = 0; round < rounds; round++) {
        const order = [...services.keys()]
        if (round % 2 === 1) order.reverse()
        for (const i of order) {
          const { ctx, service } = services[i] as (typeof services)[number]
          runs[i]?.push(await load(service.pid, `${service.url}${path}`, ctx.keys.token, HTTP_CONNECTIONS, seconds))
        }
      }
      return runs.map((r) => ({ mean: meanLoad(r), p99Runs: r.map((x) => x.p99Ms) }))
    }
    const page = await measure('/logins?limit=100')
    const duplicates = await measure('/logins/duplicates?field=all&limit=100')
    return services.map((_, i) => ({
      connections: HTTP_CONNECTIONS,
      seconds,
      rounds,
      page: page[i]?.mean as LoadResult,
      duplicates: duplicates[i]?.mean as LoadResult,
      p99Runs: { page: page[i]?.p99Runs ?? [], duplicates: duplicates[i]?.p99Runs ?? [] },
    }))
  } finally {
    for (const { ctx, service, queueUrl } of services) {
      await service.child.stop()
      await deleteQueue(ctx.emulator.client, queueUrl)
    }
  }
}

/** The loaded rows' dates: a year, April 2025 to March 2026, in order (a table grows by appending). */
const LOAD_FIRST_DAY = Date.UTC(2025, 3, 1)
const LOAD_DAYS = 365
/** Ingestion on each table: into a new month (April 2026, as on the first of a month), and into the last loaded one. */
const NEW_MONTH = new Date(Date.UTC(2026, 3, 1))
const LAST_LOADED_MONTH = new Date(Date.UTC(2026, 2, 31))

/**
 * Loads `rows` rows with COPY into the (empty) table: bodies of bench/lib/messages.ts with UUID
 * message ids, masked by the real masker, one create_date per ~(rows/365) logins over a year.
 * The summary trigger is off during the COPY and the summary is built afterwards by grouping
 * (faster than folding).
 */
async function loadRows(ctx: Context, masker: Masker, rows: number): Promise<void> {
  const sql = ctx.db.sql
  const source = messageSource(Math.max(rows, 1), 3)
  const lines = Readable.from((function* () {
    for (let i = 0; i < rows; i++) {
      if (source.malformed(i)) continue
      const b = JSON.parse(source.body(i)) as { user_id: string; app_version: string; device_type: string; ip: string; locale?: string | null; device_id: string }
      const sent = new Date(LOAD_FIRST_DAY + Math.floor((i / Math.max(rows, 1)) * LOAD_DAYS * 86_400_000))
      const version = encodeAppVersion(b.app_version)
      yield `${[
        randomUUID(), b.user_id, b.device_type, masker.maskIp(b.ip), masker.maskDeviceId(b.device_id), b.locale ?? null,
        version === null ? null : String(version), b.app_version, sent.toISOString().slice(0, 10), sent.toISOString(), masker.keyId, sent.toISOString(),
      ].map(copyField).join('\t')}\n`
    }
  })())
  // The months' partitions (migration 011): ingestion makes them on its own, a COPY does not.
  await sql`SELECT login_partition_ensure(m::date) FROM generate_series(${new Date(LOAD_FIRST_DAY).toISOString().slice(0, 10)}::date,
    ${new Date(LOAD_FIRST_DAY + LOAD_DAYS * 86_400_000).toISOString().slice(0, 10)}::date, interval '1 month') m`
  await sql`ALTER TABLE user_logins DISABLE TRIGGER user_logins_summary_insert`
  try {
    await streamPipeline(lines, await sql`COPY user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
      app_version_text, create_date, sent_at, mask_key_id, ingested_at) FROM STDIN`.writable())
  } finally {
    await sql`ALTER TABLE user_logins ENABLE TRIGGER user_logins_summary_insert`
  }
  await rebuildSummary(sql)
  await sql`VACUUM ANALYZE user_logins`
  // The load's dirty pages written out now, so that the measurements that follow do not race
  // the checkpointer writing gigabytes of them (the table's steady state, not its bulk load).
  await sql`CHECKPOINT`.catch((error: Error) => ctx.log(`   no CHECKPOINT (${error.message}): the measurements may race the write-back of the load`))
}

/**
 * `count` generated messages (seeded) through the pipeline's store path, `inFlight` batches of
 * 10 at a time; msg/s. Message ids are UUIDs, as SQS's are: each insert takes a random leaf of
 * the unique (message_id, create_date) index, as in production.
 */
async function storeRun(pipeline: LoginPipeline, count: number, seed: number, sentAt: Date, inFlight: number): Promise<number> {
  const source = messageSource(count, seed)
  const batches: QueueMessage[][] = []
  for (let i = 0; i < count; i += 10) {
    batches.push(Array.from({ length: Math.min(10, count - i) }, (_, j) => ({
      messageId: randomUUID(), receiptHandle: `rh-${i + j}`, body: source.body(i + j), sentAt, receiveCount: 1,
    })))
  }
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < batches.length) await pipeline.process(batches[next++] as QueueMessage[])
  }))
  return count / ((performance.now() - started) / 1000)
}

/** Runs the store path once on the empty table, then empties it: code compiled, statements prepared, connections made before anything is timed. */
async function warmUp(loginPipeline: LoginPipeline, sql: Context['db']['sql'], messages: number): Promise<void> {
  await storeRun(loginPipeline, Math.min(messages, 5000), 99, NEW_MONTH, 1)
  await refreshDuplicates(sql, { wait: true })
  await resetTables(sql)
}

/** A database beside the one measured, and the pipeline storing into it. */
interface Table {
  ctx: Context
  pipeline: LoginPipeline
}

/**
 * One table's figures: ingestion into a new month and into the last loaded one, the fold, pages
 * and reports at store level, sizes (HTTP is measured by the caller). With `empty`, a run into
 * that database, emptied first, before each measured pair: the empty table's rate from the same
 * minutes, as the ingestion ratios compare it.
 */
async function measureTable(table: Table, size: number, loadSeconds: number, ingestMessages: number, round_: number, empty?: Table): Promise<Omit<ScalePoint, 'http'>> {
  const { ctx, pipeline: loginPipeline } = table
  const sql = ctx.db.sql
  // Ingestion through the pipeline's store path, 2 batches of 10 in flight as the service runs it.
  const ingest = (sentAt: Date, seed: number, into = loginPipeline): Promise<number> => storeRun(into, ingestMessages, seed, sentAt, 2)
  const emptyRuns: number[] = []
  // Two runs of each, interleaved (new, last, new, last): one run of 20,000 messages lasts
  // seconds, and on a shared machine a checkpoint or a neighbour's burst moved a single run's
  // ratio between 0.66 and 1.01 at 10M rows from one day to the next.
  const newRuns: number[] = []
  const fullRuns: number[] = []
  const newIo: [IoSnapshot, IoSnapshot][] = []
  const fullIo: [IoSnapshot, IoSnapshot][] = []
  const measured = async (ios: [IoSnapshot, IoSnapshot][], run: () => Promise<number>): Promise<number> => {
    const before = await ioSnapshot(sql)
    const perSecond = await run()
    ios.push([before, await ioSnapshot(sql)])
    return perSecond
  }
  // A first run into each month, reported but not in the means: a service writing a month keeps
  // its pages in memory, and a table just loaded with gigabytes does not (the first run into the
  // last loaded month at 10M rows read 7 KiB a message from the disk, the fourth 0.2). Every
  // table, the empty one too, gets its first runs.
  const firstNewIo: [IoSnapshot, IoSnapshot][] = []
  const firstFullIo: [IoSnapshot, IoSnapshot][] = []
  const firstNew = await measured(firstNewIo, () => ingest(NEW_MONTH, 90 + round_ * 10))
  const firstFull = size > 0 ? await measured(firstFullIo, () => ingest(LAST_LOADED_MONTH, 91 + round_ * 10)) : null
  for (let run = 0; run < INGEST_RUNS; run++) {
    if (empty) {
      await resetTables(empty.ctx.db.sql)
      emptyRuns.push(await ingest(NEW_MONTH, 100 + round_ * 10 + run * 2, empty.pipeline))
    }
    newRuns.push(await measured(newIo, () => ingest(NEW_MONTH, 100 + round_ * 10 + run * 2)))
    if (size > 0) fullRuns.push(await measured(fullIo, () => ingest(LAST_LOADED_MONTH, 101 + round_ * 10 + run * 2)))
  }
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length
  const ingestPerSecond = mean(newRuns)
  const ingestFullMonthPerSecond = fullRuns.length > 0 ? mean(fullRuns) : null
  const foldedMessages = ingestMessages * (newRuns.length + fullRuns.length + 1 + (firstFull === null ? 0 : 1))
  const foldBefore = await ioSnapshot(sql)
  const refreshStarted = performance.now()
  await refreshDuplicates(sql, { wait: true })
  const refreshMs = performance.now() - refreshStarted
  const io: ScalePoint['io'] = {
    newMonth: ioPerMessage(newIo, ingestMessages * newRuns.length),
    lastLoadedMonth: fullRuns.length > 0 ? ioPerMessage(fullIo, ingestMessages * fullRuns.length) : null,
    fold: ioPerMessage([[foldBefore, await ioSnapshot(sql)]], foldedMessages),
  }

  const [sample] = await sql<{ user_id: string }[]>`SELECT user_id FROM user_logins ORDER BY id DESC LIMIT 1 OFFSET 50`
  // Warm-up, not counted: prepared statements, plans, buffers.
  for (let i = 0; i < 20; i++) {
    await listLogins(sql, { limit: 100, ...(sample ? { user_id: sample.user_id } : {}) })
    await Promise.all(Array.from({ length: 10 }, () => listDuplicates(sql, { fields: ['device_id', 'ip'], minCount: 2, limit: 100 })))
  }
  const pages: number[] = []
  // 1,000 pages and 1,000 reports: a p99 is then the 10th-slowest, not one stray pause.
  for (let i = 0; i < PAGE_SAMPLES; i++) {
    const t0 = performance.now()
    await listLogins(sql, { limit: 100, ...(i % 2 === 1 && sample ? { user_id: sample.user_id } : {}) })
    pages.push(performance.now() - t0)
  }
  const dups: number[] = []
  let left = PAGE_SAMPLES
  await Promise.all(Array.from({ length: 10 }, async () => {
    while (left-- > 0) {
      const t0 = performance.now()
      await listDuplicates(sql, { fields: ['device_id', 'ip'], minCount: 2, limit: 100 })
      dups.push(performance.now() - t0)
    }
  }))
  const [sizesRow] = await sql<{ rows: number; table: number; indexes: number; vault: number; summary: number }[]>`
    SELECT (SELECT count(*) FROM user_logins)::int AS rows,
           (SELECT sum(pg_table_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'user_logins'::regclass)::float8 AS table,
           (SELECT sum(pg_indexes_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'user_logins'::regclass)::float8 AS indexes,
           pg_total_relation_size('pii_vault')::float8 AS vault,
           (pg_total_relation_size('login_duplicates') + pg_total_relation_size('login_duplicate_pairs') + pg_total_relation_size('login_single_values'))::float8 AS summary`
  const s = sizesRow ?? { rows: 0, table: 0, indexes: 0, vault: 0, summary: 0 }
  const mib = (b: number) => round(b / 2 ** 20, 1)
  return {
    rows: size,
    loadSeconds: round(loadSeconds, 1),
    ingestPerSecond: round(ingestPerSecond, 0),
    ingestFullMonthPerSecond: ingestFullMonthPerSecond === null ? null : round(ingestFullMonthPerSecond, 0),
    ingestRuns: { newMonth: newRuns.map((r) => round(r, 0)), lastLoadedMonth: fullRuns.map((r) => round(r, 0)) },
    ...(empty ? { emptyRuns: emptyRuns.map((r) => round(r, 0)) } : {}),
    firstRuns: {
      newMonth: round(firstNew, 0),
      lastLoadedMonth: firstFull === null ? null : round(firstFull, 0),
      io: { newMonth: ioPerMessage(firstNewIo, ingestMessages), lastLoadedMonth: firstFull === null ? null : ioPerMessage(firstFullIo, ingestMessages) },
    },
    refreshMs: round(refreshMs, 1),
    foldedMessages,
    pageP50Ms: percentile(pages, 50),
    pageP99Ms: percentile(pages, 99),
    duplicatesP50Ms: percentile(dups, 50),
    duplicatesP99Ms: percentile(dups, 99),
    io,
    tableMiB: mib(s.table),
    indexesMiB: mib(s.indexes),
    vaultMiB: mib(s.vault),
    summaryMiB: mib(s.summary),
    bytesPerLogin: round((s.table + s.indexes) / Math.max(1, s.rows), 0),
    summaryBytesPerLogin: round(s.summary / Math.max(1, s.rows), 0),
  }
}

/**
 * The empty table's msg/s a size's ingestion compares with: the mean of its runs made in turns
 * with that size's (since 6 December 2026), else the first point's (the empty table measured first).
 */
export function emptyBaseline(point: ScalePoint, first: number): number {
  const runs = point.emptyRuns ?? []
  return runs.length > 0 ? runs.reduce((a, b) => a + b, 0) / runs.length : first
}

/**
 * Section 8: ingestion, pages and the duplicates report on an empty table and on large ones.
 * The empty table and the smallest size (the reference) are the bench's database, its rows
 * loaded after the empty round; each larger size is a database of its own, so that the reference is still there
 * to be loaded over HTTP beside it, in turns: the page target compares the two, and a comparison
 * of runs half an hour apart on this shared machine moved between 0.79x and 1.47x. Likewise the
 * ingestion runs at each size alternate with runs into an empty table kept in a third database.
 */
export async function scale(ctx: Context, sizes: number[], ingestMessages: number): Promise<ScaleResult> {
  const masker = new Masker(ctx.keys.mask)
  const tableOf = (c: Context): Table => ({ ctx: c, pipeline: new LoginPipeline(c.db.sql, masker, new Vault(c.db.sql, keyringProvider(c.keys.master))) })
  const points: ScalePoint[] = []
  let round_ = 0
  const report = (point: ScalePoint): void => {
    ctx.log(`   ${point.rows} rows: ${point.ingestPerSecond} msg/s (new month), ${point.ingestFullMonthPerSecond ?? '-'} msg/s (last loaded month), ` +
      `${point.emptyRuns ? `empty table in turns ${point.emptyRuns.join(', ')} msg/s, ` : ''}` +
      `page p99 ${point.pageP99Ms} ms (HTTP, ${HTTP_CONNECTIONS} connections: ${point.http.page.p99Ms} ms), ` +
      `duplicates p99 ${point.duplicatesP99Ms} ms (10 at a time; HTTP: ${point.http.duplicates.p99Ms} ms), ${point.bytesPerLogin} B/login`)
    points.push(point)
  }
  // The empty table of the ratios: a database of its own, emptied before each run, run in turns
  // with each size's (the empty table measured first and the 10M table half an hour later moved
  // the ratio by more than the target's margin: 1M came out at 0.75x and 10M at 0.89x).
  const emptyDb = await createBenchDatabase(ctx.options.databaseUrl)
  try {
    await prepareDatabase(emptyDb.sql, ctx.keys)
    const empty = tableOf({ ...ctx, db: emptyDb })
    await warmUp(empty.pipeline, emptyDb.sql, ingestMessages)

    const reference = sizes[0]
    const main = tableOf(ctx)
    await resetTables(ctx.db.sql)
    await warmUp(main.pipeline, ctx.db.sql, ingestMessages)
    for (const size of reference === undefined ? [0] : [0, reference]) {
      const loadStarted = performance.now()
      if (size > 0) {
        ctx.log(`   COPY of ${size} rows`)
        await loadRows(ctx, masker, size)
      }
      const table = await measureTable(main, size, (performance.now() - loadStarted) / 1000, ingestMessages, ++round_, size > 0 ? empty : undefined)
      const [http] = await httpLatency([ctx])
      report({ ...table, http: http as ScalePoint['http'] })
    }
    for (const size of sizes.slice(1)) {
      const db = await createBenchDatabase(ctx.options.databaseUrl)
      try {
        const large = tableOf({ ...ctx, db })
        await prepareDatabase(db.sql, ctx.keys)
        await warmUp(large.pipeline, db.sql, ingestMessages)
        ctx.log(`   COPY of ${size} rows into ${db.name}`)
        const loadStarted = performance.now()
        await loadRows(large.ctx, masker, size)
        const table = await measureTable(large, size, (performance.now() - loadStarted) / 1000, ingestMessages, ++round_, empty)
        ctx.log(`   HTTP: ${size} rows and ${reference} rows side by side`)
        const [http, beside] = await httpLatency([large.ctx, ctx])
        report({ ...table, http: http as ScalePoint['http'], reference: { rows: reference as number, http: beside as ScalePoint['http'] } })
      } finally {
        await db.drop()
      }
    }
  } finally {
    await emptyDb.drop()
  }
  const sql = ctx.db.sql
  const [v] = await sql<{ b: number }[]>`SELECT (pg_total_relation_size('pii_vault')::float8 / greatest(1, (SELECT count(*) FROM pii_vault))) AS b`
  const [buffers] = await sql<{ b: number }[]>`SELECT pg_size_bytes(current_setting('shared_buffers'))::float8 AS b`
  return {
    ingestMessages,
    memory: { sharedBuffersMiB: round((buffers?.b ?? 0) / 2 ** 20, 0), ramGiB: round(totalmem() / 2 ** 30, 1) },
    vaultBytesPerLogin: round(v?.b ?? 0, 0),
    points,
  }
}
