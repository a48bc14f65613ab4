import type { CopyResult } from './lib/copy.ts'
import type { ApiResult } from './sections/api.ts'
import type { DbPathResult } from './sections/dbpath.ts'
import type { DrainResult, LoopResult } from './sections/ingest.ts'
import type { MaskingResult } from './sections/masking.ts'
import { emptyBaseline, type IoPerMessage, type ScaleResult } from './sections/scale.ts'

/** One repetition of sections 1 and 2: the service's drain, a COPY of the rows it wrote, the receive+delete loop. */
export interface Repetition {
  ingestion?: DrainResult
  copy?: CopyResult
  ceiling?: LoopResult
}

export interface Report {
  date: string
  mode: 'quick' | 'full'
  command: string
  git: { commit: string; dirty: boolean }
  machine: { cpus: number; cpuModel: string; memoryGiB: number; os: string; node: string; postgres: string; loadBefore: number[] }
  settings: Record<string, unknown>
  durationSeconds: number
  sections: {
    ingestion?: DrainResult
    ceiling?: LoopResult & { ratio: number }
    repetitions?: Repetition[]
    /** medians over the repetitions: the floor is the receive+delete loop and a COPY of the same rows together */
    floor?: { repetitions: number; copy: CopyResult; floorPerSecond: number; endToEndVsFloor: number; serviceCpuVsCeiling: number; postgresCpuVsCopy: number }
    typical?: LoopResult & { rows: number; rejected: number; ratio: number }
    databasePath?: DbPathResult
    masking?: MaskingResult
    api?: ApiResult
    scale?: ScaleResult
    memory?: { small: { messages: number; peakRssMiB: number } | null; large: DrainResult | null }
  }
  targets: { name: string; target: string; value: string; met: boolean | null }[]
}

const n = (value: number, digits = 0): string => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const yes = (met: boolean | null): string => (met === null ? '–' : met ? 'yes' : '**no**')

/** The report as Markdown tables: printed by the bench and pasted into the README. */
export function markdown(report: Report): string {
  const out: string[] = []
  const s = report.sections
  out.push(`Run of ${report.date.slice(0, 10)} (${report.mode}), commit ${report.git.commit.slice(0, 10)}${report.git.dirty ? ' (+ local changes)' : ''}: ` +
    `${report.machine.cpus} cores (${report.machine.cpuModel}), Node.js ${report.machine.node}, PostgreSQL ${report.machine.postgres}, ` +
    `load average before ${report.machine.loadBefore.map((l) => n(l, 2)).join(' / ')}.`)
  out.push('')
  out.push('| target | value | met |', '| --- | --- | --- |')
  for (const t of report.targets) out.push(`| ${t.name}: ${t.target} | ${t.value} | ${yes(t.met)} |`)
  out.push('')

  if (s.ingestion || s.ceiling || s.typical) {
    out.push('| ingestion (1–3) | messages | msg/s | consumer CPU µs/msg | emulator CPU µs/msg | PostgreSQL CPU µs/msg |', '| --- | ---: | ---: | ---: | ---: | ---: |')
    const i = s.ingestion
    if (i) out.push(`| 1. the service's worker, end to end | ${n(i.messages)} | **${n(i.perSecond)}** | ${n(i.serviceCpuUsPerMessage)} | ${n(i.emulatorCpuUsPerMessage)} | ${n(i.postgresCpuUsPerMessage)} |`)
    const c = s.ceiling
    if (c) out.push(`| 2. queue ceiling: receive 10 + batch delete, same pollers | ${n(c.messages)} | ${n(c.perSecond)} | ${n(c.cpuUsPerMessage)} | ${n(c.emulatorCpuUsPerMessage)} | – |`)
    const f = s.floor
    if (f) {
      out.push(`| COPY of section 1's rows into the same tables (one transaction) | ${n(f.copy.rows)} | ${n(f.copy.rowsPerSecond)} | – | – | ${n(f.copy.postgresCpuUsPerRow)} |`)
      out.push(`| the floor: receive+delete loop and COPY together, 1 / (1/ceiling + 1/COPY) | | ${n(f.floorPerSecond)} | – | – | – |`)
    }
    const t = s.typical
    if (t) out.push(`| 3. typical: receive 1, insert 1, delete 1 | ${n(t.messages)} | ${n(t.perSecond)} | ${n(t.cpuUsPerMessage)} | ${n(t.emulatorCpuUsPerMessage)} | – |`)
    if (s.repetitions && s.repetitions.length > 1) {
      out.push('')
      out.push('| repetition | service msg/s | service CPU µs/msg | PostgreSQL CPU µs/msg | COPY rows/s | COPY PostgreSQL CPU µs/row | ceiling msg/s | ceiling CPU µs/msg |', '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
      s.repetitions.forEach((rep, i) => {
        const v = (value: number | undefined): string => (value === undefined ? '–' : n(value))
        out.push(`| ${i + 1} | ${v(rep.ingestion?.perSecond)} | ${v(rep.ingestion?.serviceCpuUsPerMessage)} | ${v(rep.ingestion?.postgresCpuUsPerMessage)} | ` +
          `${v(rep.copy?.rowsPerSecond)} | ${v(rep.copy?.postgresCpuUsPerRow)} | ${v(rep.ceiling?.perSecond)} | ${v(rep.ceiling?.cpuUsPerMessage)} |`)
      })
    }
    out.push('')
  }
  const d = s.databasePath
  if (d) {
    out.push(`| database path (4), ${n(d.messages)} messages | rows/s |`, '| --- | ---: |')
    out.push(`| LoginPipeline.process on pre-received batches of 10, ${d.concurrency} at a time (${n(d.pipeline.cpuUsPerMessage)} µs CPU/msg in Node.js) | ${n(d.pipeline.rowsPerSecond)} |`)
    out.push(`| plain COPY of the same rows (user_logins + pii_vault, one transaction) | ${n(d.copy.rowsPerSecond)} |`)
    out.push('')
    const b = d.breakdown
    out.push(`| one batch of 10, one at a time (${b.batches} batches) | ms |`, '| --- | ---: |')
    for (const [label, value] of [
      ['parse + validate', b.parseValidateMs], ['mask + encrypt', b.maskEncryptMs], ['SQL: data keys (before the transaction)', b.dataKeySqlMs],
      ['SQL: lock, INSERTs (in the transaction)', b.transactionSqlMs], ['COMMIT', b.commitMs], ['SQS DeleteMessageBatch', b.deleteMs],
      ['other (JavaScript around the calls)', b.otherMs], ['**total**', b.totalMs],
    ] as const) out.push(`| ${label} | ${n(value, 3)} |`)
    out.push('')
  }
  const m = s.masking
  if (m) {
    out.push('| masking cost (5), tinybench | µs mean | µs p50 | ± % |', '| --- | ---: | ---: | ---: |')
    for (const [name, task] of Object.entries(m.tasks)) out.push(`| ${name} | ${n(task.meanUs, 2)} | ${n(task.p50Us, 2)} | ${n(task.rmePercent, 1)} |`)
    out.push('')
  }
  const a = s.api
  if (a) {
    out.push(`| API (6), ${n(a.rows)} rows | conns | service req/s | bare req/s | ratio | service p50 / p99 ms | bare p50 / p99 ms | p99 ratio | server CPU µs/req, service / bare | indexes (EXPLAIN ANALYZE) |`,
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
    for (const sc of a.scenarios) {
      const plan = `${sc.plan.indexes.join(', ') || 'none'}${sc.plan.seqScan ? ', **seq scan**' : ''}; ${n(sc.plan.executionMs, 1)} ms`
      out.push(`| \`${sc.path}\` | ${sc.connections} | ${n(sc.service.requestsPerSecond)} | ${n(sc.bare.requestsPerSecond)} | ${n(sc.throughputRatio, 2)} | ` +
        `${n(sc.service.p50Ms, 1)} / ${n(sc.service.p99Ms, 1)} | ${n(sc.bare.p50Ms, 1)} / ${n(sc.bare.p99Ms, 1)} | ${n(sc.p99Ratio, 2)} | ` +
        `${n(sc.service.serverCpuUsPerRequest)} / ${n(sc.bare.serverCpuUsPerRequest)} | ${plan} |`)
    }
    out.push('')
  }
  const sc8 = s.scale
  if (sc8) {
    const c = sc8.points[0]?.http.connections ?? 10
    out.push(`| growing dataset (8), rows in user_logins | ingest msg/s, new month | vs empty | ingest msg/s, last loaded month | vs empty | fold µs/msg | GET /logins p50 / p99 ms, HTTP ${c} conns | duplicates p50 / p99 ms, HTTP ${c} conns | GET /logins p50 / p99 ms, store, 1 at a time | duplicates p50 / p99 ms, store, 10 at a time | table + indexes MiB | B/login (table + indexes) | summary B/login | reads per msg, PostgreSQL blocks / disk KiB: ingest new month; last month; fold |`,
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    const reads = (io: IoPerMessage | null): string => (io ? `${n(io.blocksRead, 2)} / ${io.diskReadKiB === null ? '—' : n(io.diskReadKiB, 2)}` : '—')
    const first = sc8.points[0]?.ingestPerSecond ?? NaN
    for (const p of sc8.points) {
      const full = p.ingestFullMonthPerSecond ?? null
      const empty = emptyBaseline(p, first)
      out.push(`| ${n(p.rows)} | ${n(p.ingestPerSecond)} | ${n(p.ingestPerSecond / empty, 2)} | ${full === null ? '—' : n(full)} | ${full === null ? '—' : n(full / empty, 2)} | ${n((p.refreshMs * 1000) / Math.max(1, p.foldedMessages))} | ${n(p.http.page.p50Ms, 2)} / ${n(p.http.page.p99Ms, 2)} | ${n(p.http.duplicates.p50Ms, 2)} / ${n(p.http.duplicates.p99Ms, 2)} | ${n(p.pageP50Ms, 2)} / ${n(p.pageP99Ms, 2)} | ` +
        `${n(p.duplicatesP50Ms, 2)} / ${n(p.duplicatesP99Ms, 2)} | ${n(p.tableMiB + p.indexesMiB, 1)} | ${n(p.bytesPerLogin)} | ${n(p.summaryBytesPerLogin)} | ` +
        `${reads(p.io.newMonth)}; ${reads(p.io.lastLoadedMonth)}; ${reads(p.io.fold)} |`)
    }
    for (const p of sc8.points) {
      const r = p.reference
      if (r) {
        out.push(`\nOver HTTP in turns, ${n(p.rows)} and ${n(r.rows)} rows (${p.http.rounds} runs of ${p.http.seconds} s each, p99 of each run): ` +
          `GET /logins ${p.http.p99Runs.page.join(', ')} ms against ${r.http.p99Runs.page.join(', ')} ms (mean ${n(p.http.page.p99Ms, 1)} / ${n(r.http.page.p99Ms, 1)}: ${n(p.http.page.p99Ms / r.http.page.p99Ms, 2)}x); ` +
          `duplicates ${p.http.p99Runs.duplicates.join(', ')} ms against ${r.http.p99Runs.duplicates.join(', ')} ms.`)
      }
    }
    const inTurns = sc8.points.flatMap((p) => (p.emptyRuns ? [`with ${n(p.rows)} rows ${p.emptyRuns.map((r) => n(r)).join(' and ')} msg/s`] : []))
    if (inTurns.length > 0) out.push(`\nThe empty table in turns (another database, emptied before each run; the "vs empty" columns compare with their mean): ${inTurns.join('; ')}.`)
    out.push(`\nFirst runs (before the two measured ones, not in their means): ${sc8.points.map((p) => `${n(p.rows)} rows: ${n(p.firstRuns.newMonth)} msg/s new month` +
      `${p.firstRuns.lastLoadedMonth === null ? '' : `, ${n(p.firstRuns.lastLoadedMonth)} last loaded month (${reads(p.firstRuns.io.lastLoadedMonth)} blocks / disk KiB read a message)`}`).join('; ')}.`)
    out.push(`\nVault: ${n(sc8.vaultBytesPerLogin)} B per login with originals (${n(sc8.ingestMessages)} messages a run through the pipeline's store path, two runs into each month, interleaved; msg/s are their means)` +
      `; shared_buffers ${n(sc8.memory.sharedBuffersMiB)} MiB, RAM ${n(sc8.memory.ramGiB, 1)} GiB.`, '')
  }
  const mem = s.memory
  if (mem) {
    out.push('| memory (7): peak RSS of the service (VmHWM) | messages | MiB |', '| --- | ---: | ---: |')
    if (mem.small) out.push(`| draining a backlog (section 1's run) | ${n(mem.small.messages)} | ${n(mem.small.peakRssMiB, 1)} |`)
    if (mem.large) out.push(`| draining a backlog, filled while it drains | ${n(mem.large.messages)} | ${n(mem.large.peakRssMiB, 1)} |`)
    out.push('')
  }
  return out.join('\n')
}
