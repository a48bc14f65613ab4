/**
 * npm run bench [-- --quick] [--messages N] [--rows N] ...: the benchmarks of issue 6, each
 * printing ratios measured side by side in this one run. Runs against the PostgreSQL server of
 * DATABASE_URL (a database of its own, created and dropped) and the SQS emulator in a process of
 * its own; the service under test runs in its own process too. Writes a JSON report under
 * bench/results/ and prints Markdown tables. See README.md, "Benchmarks".
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { prepareDatabase } from '../src/prepare.ts'
import type { Context, Options } from './lib/context.ts'
import { round } from './lib/context.ts'
import { copyStoredRows } from './lib/copy.ts'
import { DEFAULT_DATABASE_URL, createBenchDatabase, dropBenchDatabases, serverVersion, type BenchDatabase } from './lib/db.ts'
import { jsonLine, spawnNode, stopAll } from './lib/proc.ts'
import { benchKeys, prepareRuntime } from './lib/service.ts'
import { sqsClient } from './lib/sqs.ts'
import { markdown, type Report, type Repetition } from './report.ts'
import { apiLatency } from './sections/api.ts'
import { databasePath } from './sections/dbpath.ts'
import { drainWithService, queueCeiling, typicalLoop } from './sections/ingest.ts'
import { maskingCost } from './sections/masking.ts'
import { emptyBaseline, scale } from './sections/scale.ts'

const HELP = `npm run bench -- [options]
  --quick                 a few seconds, small sizes (CI smoke)
  --messages N            section 1 and 2: messages drained (default 100000; quick 1000)
  --repeat N              sections 1 and 2 (and the COPY of section 1's rows) run N times, side by side;
                          ratios are the median of the N (default 3; quick 1)
  --typical-messages N    section 3 (default 5000; quick 100)
  --db-messages N         section 4 (default 20000; quick 1000)
  --memory-messages N     section 7, the large backlog; 0 skips it (default 500000; quick 2000)
  --rows N                section 6: rows in user_logins (default 1000000; quick 20000)
  --api-seconds N         section 6: seconds per autocannon run (default 5; quick 1)
  --connections N         section 6: autocannon connections (default 10)
  --pollers N             WORKER_CONCURRENCY of the service and pollers of the ceiling loop (default 2)
  --fill-concurrency N    SendMessageBatch calls in flight while filling (default 8)
  --service-log-level L   LOG_LEVEL of the service (default info, as in production)
  --service-runtime R     build: compile the service first and run node <build>/src/server.js, as the
                          image does (default); tsx: node --import tsx src/server.ts (default with --quick)
  --scale-rows N,N        section 8: table sizes compared with the empty table (default 1000000,10000000; quick 20000,100000);
                          each larger size is loaded into a database of its own, and loaded over HTTP in turns with the smallest
  --scale-messages N      section 8: messages ingested at each size (default 5000; quick 1000)
  --sections 1,2,...      run only these sections (7 needs 1 for its small figure)
  --profile               write V8 CPU profiles of the service in sections 1 and 6 (bench/results/*.cpuprofile)
  --out FILE              where to write the JSON report (default bench/results/<date>-<mode>.json)
Environment: DATABASE_URL (default ${DEFAULT_DATABASE_URL}), a server where the bench may create databases;
  SERVICE_NODE_FLAGS (e.g. "--max-semi-space-size=8 --max-old-space-size=128"): node flags of the service process;
  BENCH_IP_PREFIX=on: the service writes the ipcrypt-pfx pseudonym (IP_PREFIX_KEYS set), off by default.`

function options(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      messages: { type: 'string' },
      repeat: { type: 'string' },
      'typical-messages': { type: 'string' },
      'db-messages': { type: 'string' },
      'memory-messages': { type: 'string' },
      rows: { type: 'string' },
      'api-seconds': { type: 'string' },
      connections: { type: 'string' },
      pollers: { type: 'string' },
      'fill-concurrency': { type: 'string' },
      'service-log-level': { type: 'string' },
      'service-runtime': { type: 'string' },
      sections: { type: 'string' },
      'scale-rows': { type: 'string' },
      'scale-messages': { type: 'string' },
      profile: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    console.log(HELP)
    process.exit(0)
  }
  const quick = values.quick ?? false
  const int = (name: string, value: string | undefined, full: number, small: number): number => {
    if (value === undefined) return quick ? small : full
    const parsed = Number(value)
    if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`--${name} must be a whole number`)
    return parsed
  }
  return {
    quick,
    messages: int('messages', values.messages, 100_000, 1_000),
    repeat: Math.max(1, int('repeat', values.repeat, 3, 1)),
    typicalMessages: int('typical-messages', values['typical-messages'], 5_000, 100),
    dbMessages: int('db-messages', values['db-messages'], 20_000, 1_000),
    memoryMessages: int('memory-messages', values['memory-messages'], 500_000, 2_000),
    rows: int('rows', values.rows, 1_000_000, 20_000),
    apiSeconds: Math.max(1, int('api-seconds', values['api-seconds'], 5, 1)),
    apiConnections: Math.max(1, int('connections', values.connections, 10, 10)),
    pollers: Math.max(1, int('pollers', values.pollers, 2, 2)),
    fillConcurrency: Math.max(1, int('fill-concurrency', values['fill-concurrency'], 8, 8)),
    serviceLogLevel: values['service-log-level'] ?? 'info',
    serviceRuntime: ((): 'tsx' | 'build' => {
      const runtime = values['service-runtime'] ?? (quick ? 'tsx' : 'build')
      if (runtime !== 'tsx' && runtime !== 'build') throw new Error('--service-runtime must be tsx or build')
      return runtime
    })(),
    sections: new Set((values.sections ?? '1,2,3,4,5,6,7,8').split(',').map(Number)),
    scaleRows: (values['scale-rows'] ?? (quick ? '20000,100000' : '1000000,10000000')).split(',').map((v) => {
      const parsed = Number(v)
      if (!Number.isInteger(parsed) || parsed <= 0) throw new Error('--scale-rows must be whole numbers separated by commas')
      return parsed
    }).sort((a, b) => a - b),
    scaleMessages: Math.max(10, int('scale-messages', values['scale-messages'], 5_000, 1_000)),
    profile: values.profile ?? false,
    databaseUrl: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    out: values.out,
  }
}

function git(): Report['git'] {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src', 'routes', 'bench'], { encoding: 'utf8' }).trim() !== ''
    return { commit, dirty }
  } catch {
    return { commit: 'unknown', dirty: false }
  }
}

const log = (message: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

async function main(): Promise<void> {
  const opts = options()
  const startedAt = new Date()
  const started = performance.now()
  const loadBefore = loadavg().map((l) => round(l, 2))
  log(`${opts.quick ? 'quick' : 'full'} run; load average ${loadBefore.join(' ')} on ${cpus().length} cores`)
  if (!opts.quick && (loadBefore[0] ?? 0) > 1.5) log('the machine is busy (load > 1.5): absolute figures will be low; the ratios are what to read')

  if (opts.serviceRuntime === 'build') log('compiling the service (tsc), as the image runs it')
  const runtime = prepareRuntime(opts.serviceRuntime)
  const emulator = spawnNode(['--import', 'tsx', 'bench/lib/emulator.ts'], { PATH: process.env.PATH, HOME: process.env.HOME })
  let db: BenchDatabase | null = null
  const interrupted = (): void => {
    log('interrupted: stopping children and dropping the databases')
    void stopAll().then(() => dropBenchDatabases()).finally(() => {
      runtime.cleanup()
      process.exit(130)
    })
  }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  try {
    const { address } = await emulator.line((line) => jsonLine<{ address: string }>(line))
    db = await createBenchDatabase(opts.databaseUrl)
    log(`database ${db.name}, emulator ${address} (pid ${emulator.pid})`)
    const keys = benchKeys()
    await prepareDatabase(db.sql, keys)
    const ctx: Context = { options: opts, db, keys, runtime, emulator: { endpoint: address, pid: emulator.pid, client: sqsClient(address) }, log }
    const report: Report = {
      date: startedAt.toISOString(),
      mode: opts.quick ? 'quick' : 'full',
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      git: git(),
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
        memoryGiB: round(totalmem() / 2 ** 30, 1),
        os: `${process.platform} ${process.arch}`,
        node: process.versions.node,
        postgres: await serverVersion(db.sql),
        loadBefore,
      },
      settings: {
        pollers: opts.pollers,
        serviceLogLevel: opts.serviceLogLevel,
        serviceRuntime: opts.serviceRuntime === 'build' ? 'compiled (tsc), node <build>/src/server.js' : 'node --import tsx src/server.ts',
        fillConcurrency: opts.fillConcurrency,
        apiSeconds: opts.apiSeconds,
        apiConnections: opts.apiConnections,
        serviceEnv: 'NODE_ENV=production, SQS_WAIT_TIME_SECONDS=20, DATABASE_POOL_MAX=10 (defaults)',
      },
      durationSeconds: 0,
      sections: {},
      targets: [],
    }
    const s = report.sections
    const folder = join(process.cwd(), 'bench', 'results')
    mkdirSync(folder, { recursive: true })
    const file = opts.out ?? join(folder, `${startedAt.toISOString().slice(0, 19).replace(/[:T]/g, '-')}-${report.mode}.json`)
    // Written after every section, so an interrupted run keeps what it measured.
    const save = (): void => {
      report.targets = targets(report)
      report.durationSeconds = round((performance.now() - started) / 1000, 1)
      writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
    }
    const section = (n: number): boolean => {
      if (Object.keys(s).length > 0) save()
      return opts.sections.has(n)
    }

    if (section(5)) {
      log('5. masking cost')
      s.masking = await maskingCost(ctx)
    }
    if (section(4)) {
      log('4. the database path')
      s.databasePath = await databasePath(ctx, opts.dbMessages)
    }
    if (section(1) || opts.sections.has(2)) {
      // Repetitions side by side: the service, a COPY of the rows it wrote, the receive+delete loop.
      const reps: Repetition[] = []
      s.repetitions = reps
      for (let r = 1; r <= opts.repeat; r++) {
        const rep: Repetition = {}
        reps.push(rep)
        if (opts.sections.has(1)) {
          log(`1. ingestion end to end, ${opts.messages} messages (repetition ${r} of ${opts.repeat})`)
          rep.ingestion = await drainWithService(ctx, opts.messages, { seed: 1, profile: opts.profile && r === 1 })
          log(`   ${rep.ingestion.perSecond} msg/s, ${rep.ingestion.serviceCpuUsPerMessage} µs CPU/msg`)
          log('   COPY of the same rows into the same tables')
          rep.copy = await copyStoredRows(ctx.db.sql, ctx.db.name, 'login-ingest-bench')
          log(`   ${rep.copy.rowsPerSecond} rows/s, PostgreSQL ${rep.copy.postgresCpuUsPerRow} µs CPU/row`)
        }
        if (opts.sections.has(2)) {
          log(`2. the queue's ceiling, ${opts.messages} messages (repetition ${r} of ${opts.repeat})`)
          rep.ceiling = await queueCeiling(ctx, opts.messages)
          log(`   ${rep.ceiling.perSecond} msg/s, ${rep.ceiling.cpuUsPerMessage} µs CPU/msg`)
        }
        save()
      }
      const median = (values: number[]): number => {
        const sorted = values.filter((v) => Number.isFinite(v)).sort((x, y) => x - y)
        if (sorted.length === 0) return NaN
        const middle = Math.floor(sorted.length / 2)
        return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
      }
      const medianOf = <T>(items: T[], key: (item: T) => number): T | undefined =>
        [...items].sort((x, y) => key(x) - key(y))[Math.floor((items.length - 1) / 2)]
      const ingestions = reps.flatMap((rep) => (rep.ingestion ? [rep.ingestion] : []))
      const ceilings = reps.flatMap((rep) => (rep.ceiling ? [rep.ceiling] : []))
      const copies = reps.flatMap((rep) => (rep.copy ? [rep.copy] : []))
      const ingestion = medianOf(ingestions, (i) => i.perSecond)
      if (ingestion) s.ingestion = ingestion
      const perRep = (f: (rep: Required<Repetition>) => number): number =>
        round(median(reps.map((rep) => (rep.ingestion && rep.ceiling && rep.copy ? f(rep as Required<Repetition>) : NaN))), 3)
      const ceiling = medianOf(ceilings, (c) => c.perSecond)
      if (ceiling) s.ceiling = { ...ceiling, ratio: round(median(reps.map((rep) => (rep.ingestion && rep.ceiling ? rep.ingestion.perSecond / rep.ceiling.perSecond : NaN))), 3) }
      const copy = medianOf(copies, (c) => c.rowsPerSecond)
      if (copy) {
        s.floor = {
          repetitions: reps.length,
          copy,
          floorPerSecond: round(median(reps.map((rep) => (rep.ceiling && rep.copy ? 1 / (1 / rep.ceiling.perSecond + 1 / rep.copy.rowsPerSecond) : NaN))), 0),
          endToEndVsFloor: perRep((rep) => rep.ingestion.perSecond * (1 / rep.ceiling.perSecond + 1 / rep.copy.rowsPerSecond)),
          serviceCpuVsCeiling: perRep((rep) => rep.ingestion.serviceCpuUsPerMessage / rep.ceiling.cpuUsPerMessage),
          postgresCpuVsCopy: round(median(reps.map((rep) => (rep.ingestion && rep.copy ? rep.ingestion.postgresCpuUsPerMessage / rep.copy.postgresCpuUsPerRow : NaN))), 3),
        }
      }
    }
    if (section(3)) {
      log(`3. the typical answer, ${opts.typicalMessages} messages`)
      const typical = await typicalLoop(ctx, opts.typicalMessages)
      s.typical = { ...typical, ratio: s.ingestion ? round(s.ingestion.perSecond / typical.perSecond, 2) : NaN }
      log(`   ${typical.perSecond} msg/s`)
    }
    if (section(7)) {
      const large = opts.memoryMessages > 0
        ? (log(`7. memory while draining ${opts.memoryMessages} messages`),
          await drainWithService(ctx, opts.memoryMessages, { seed: 7, fillWhileDraining: { startAfter: Math.min(opts.memoryMessages, Math.max(opts.messages, 1)) } }))
        : null
      const small = s.repetitions?.flatMap((rep) => (rep.ingestion ? [rep.ingestion.peakRssMiB] : [])) ?? []
      s.memory = { small: s.ingestion ? { messages: s.ingestion.messages, peakRssMiB: Math.max(...small) } : null, large }
    }
    if (section(6)) {
      log(`6. API on ${opts.rows} rows`)
      s.api = await apiLatency(ctx)
    }

    if (section(8)) {
      log(`8. a growing dataset: ${opts.scaleRows.join(', ')} rows beside the empty table`)
      s.scale = await scale(ctx, opts.scaleRows, opts.scaleMessages)
    }

    save()
    console.log(markdown(report))
    log(`report written to ${file} (${report.durationSeconds} s)`)
    ctx.emulator.client.destroy()
  } finally {
    await stopAll()
    await db?.drop()
    runtime.cleanup()
  }
}

function targets(report: Report): Report['targets'] {
  const s = report.sections
  const out: Report['targets'] = []
  const f = s.floor
  if (f && s.ceiling) {
    out.push({ name: `service CPU per message / receive+delete loop's (median of ${f.repetitions})`, target: '≤ 1.3x', value: `${f.serviceCpuVsCeiling}x`, met: f.serviceCpuVsCeiling <= 1.3 })
  }
  if (f) {
    out.push({ name: `PostgreSQL CPU per message / COPY of the same rows (median of ${f.repetitions})`, target: '≤ 1.5x', value: `${f.postgresCpuVsCopy}x`, met: f.postgresCpuVsCopy <= 1.5 })
  }
  if (f && s.ceiling) {
    out.push({ name: `end to end / floor (receive+delete and COPY together, median of ${f.repetitions})`, target: '≥ 0.8', value: String(f.endToEndVsFloor), met: f.endToEndVsFloor >= 0.8 })
  }
  if (s.ceiling && s.ingestion) {
    out.push({ name: 'end to end / queue ceiling', target: '–', value: String(s.ceiling.ratio), met: null })
  }
  if (s.typical && s.ingestion) {
    out.push({ name: 'end to end / typical loop', target: '≥ 12x', value: `${s.typical.ratio}x`, met: s.typical.ratio >= 12 })
  }
  for (const sc of s.api?.scenarios ?? []) {
    const failures = sc.service.failures + sc.bare.failures
    out.push({
      name: `\`${sc.path}\` throughput / bare`,
      target: '≥ 0.85',
      value: `${sc.throughputRatio}${failures > 0 ? ` (${failures} failed requests)` : ''}${sc.sameAnswer ? '' : ' (answers differ!)'}`,
      met: failures === 0 && sc.sameAnswer && sc.throughputRatio >= 0.85,
    })
    out.push({ name: `\`${sc.path}\` p99 / bare`, target: '≤ 1.25x', value: `${sc.p99Ratio}x`, met: failures === 0 && sc.p99Ratio <= 1.25 })
  }
  const points = s.scale?.points ?? []
  const empty = points[0]
  for (const p of points.slice(1)) {
    const d = p.http.duplicates
    out.push({
      name: `\`GET /logins/duplicates?limit=100\` p99, ${p.http.connections} connections (HTTP, through the service, mean of ${p.http.rounds} runs), ${p.rows} rows`,
      target: '≤ 20 ms',
      value: `${d.p99Ms} ms (runs: ${p.http.p99Runs.duplicates.join(', ')})${d.failures > 0 ? ` (${d.failures} failed requests)` : ''}`,
      met: d.failures === 0 && d.p99Ms <= 20,
    })
    out.push({ name: `duplicates p99, store level in the bench's process, 10 at a time, ${p.rows} rows`, target: '–', value: `${p.duplicatesP99Ms} ms`, met: null })
    if (empty) {
      const baseline = emptyBaseline(p, empty.ingestPerSecond)
      const how = p.emptyRuns ? `, in turns with the empty table's ${p.emptyRuns.join(', ')} msg/s` : ''
      const ratio = round(p.ingestPerSecond / baseline, 2)
      out.push({ name: `ingestion at ${p.rows} rows / empty table (new month${how})`, target: '≥ 0.9', value: `${ratio} (${p.ingestRuns.newMonth.join(', ')} msg/s)`, met: ratio >= 0.9 })
      if (p.ingestFullMonthPerSecond !== null) {
        const full = round(p.ingestFullMonthPerSecond / baseline, 2)
        out.push({ name: `ingestion at ${p.rows} rows / empty table (into the last loaded month, ${round(p.rows / 12, 0)} rows${how})`, target: '≥ 0.9', value: `${full} (${p.ingestRuns.lastLoadedMonth.join(', ')} msg/s)`, met: full >= 0.9 })
        if (p.firstRuns.lastLoadedMonth !== null) {
          const first = round(p.firstRuns.lastLoadedMonth / baseline, 2)
          out.push({ name: `the first run into the last loaded month right after the load, ${p.rows} rows / empty table (not in the figure above)`, target: '–', value: String(first), met: null })
        }
      }
    }
  }
  const [small, large] = [points[1], points.at(-1)]
  if (small && large && large !== small) {
    // The reference table loaded in turns with the large one when the run has it (section 8 since 6 December 2026).
    const beside = large.reference?.http ?? small.http
    const ratio = round(large.http.page.p99Ms / beside.page.p99Ms, 2)
    const failures = large.http.page.failures + beside.page.failures
    out.push({
      name: `\`GET /logins?limit=100\` p99 at ${large.rows} / at ${small.rows} rows (HTTP, ${large.http.connections} connections${large.reference ? `, ${large.http.rounds} runs each, in turns` : ''})`,
      target: '≤ 1.2x',
      value: `${ratio}x (${beside.page.p99Ms} → ${large.http.page.p99Ms} ms)${failures > 0 ? ` (${failures} failed requests)` : ''}`,
      met: failures === 0 && ratio <= 1.2,
    })
    const storeRatio = round(large.pageP99Ms / small.pageP99Ms, 2)
    out.push({ name: `GET /logins p99 at ${large.rows} / at ${small.rows} rows, store level, one at a time`, target: '–', value: `${storeRatio}x`, met: null })
  }
  const peaks = [s.memory?.small?.peakRssMiB, s.memory?.large?.peakRssMiB].filter((p): p is number => p !== undefined)
  if (peaks.length > 0) {
    out.push({ name: 'peak RSS while draining', target: '≤ 160 MiB', value: `${peaks.map((p) => `${p} MiB`).join(', ')}`, met: peaks.every((p) => p <= 160) })
  }
  if (peaks.length === 2) {
    const spread = round(Math.max(...peaks) / Math.min(...peaks), 3)
    out.push({ name: 'peak RSS, large backlog / small', target: '≤ 1.1', value: String(spread), met: spread <= 1.1 })
  }
  return out
}

main().then(() => process.exit(0), async (error: unknown) => {
  log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
  await stopAll()
  process.exit(1)
})
