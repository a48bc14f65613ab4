import { join } from 'node:path'
import { round, type Context } from '../lib/context.ts'
import { backendCpu, cpuDelta, resetTables, storedCounts } from '../lib/db.ts'
import { messageSource } from '../lib/messages.ts'
import { cpuSeconds, jsonLine, memoryMiB, spawnNode } from '../lib/proc.ts'
import { startService } from '../lib/service.ts'
import { CREDENTIALS, REGION, createQueue, deleteQueue, depth, fill, waitEmpty } from '../lib/sqs.ts'

export interface DrainResult {
  messages: number
  /** messages stored (as rows or rejections) before the clock started, left out of the rates */
  beforeClock: number
  seconds: number
  perSecond: number
  /** CPU time per message of the service process, microseconds */
  serviceCpuUsPerMessage: number
  emulatorCpuUsPerMessage: number
  /** CPU time per message of the PostgreSQL backends serving the service */
  postgresCpuUsPerMessage: number
  peakRssMiB: number
  /** largest VmRSS seen while draining (sampled every 100 ms) */
  maxSampledRssMiB: number
  rows: number
  rejected: number
  expectedMalformed: number
  fillPerSecond: number
  /** stores of the worker (one transaction and its deletes each), from its metrics */
  transactions: number
  messagesPerTransaction: number
  /** mean time of one store, commit and deletes included */
  msPerTransaction: number
}

let queueSerial = 0

/**
 * Section 1 (and 7): fills a queue with `count` generated messages, starts the service on it in
 * its own process, and times its worker draining the queue into user_logins until the queue is
 * empty (every message is deleted only after its commit, so empty means committed). With
 * `fillWhileDraining` the service starts once a backlog of `startAfter` messages is waiting and
 * the fill goes on meanwhile (section 7: memory under a large backlog, not a rate).
 */
export async function drainWithService(
  ctx: Context,
  count: number,
  options: { seed: number; fillWhileDraining?: { startAfter: number }; profile?: boolean },
): Promise<DrainResult> {
  const { client } = ctx.emulator
  const sql = ctx.db.sql
  await resetTables(sql)
  const url = await createQueue(client, `bench-drain-${++queueSerial}`)
  const source = messageSource(count, options.seed)
  let expectedMalformed = 0
  for (let i = 0; i < count; i++) if (source.malformed(i)) expectedMalformed++

  let fillPerSecond = 0
  let filling: Promise<number> | null = null
  if (options.fillWhileDraining === undefined) {
    ctx.log(`filling the queue with ${count} messages`)
    fillPerSecond = await fill(client, url, source, count, { concurrency: ctx.options.fillConcurrency })
  } else {
    const first = Math.min(count, options.fillWhileDraining.startAfter)
    ctx.log(`filling the queue with ${first} messages, then ${count - first} more while the service drains`)
    fillPerSecond = await fill(client, url, source, first, { concurrency: ctx.options.fillConcurrency })
    filling = fill(client, url, source, count, { from: first, concurrency: ctx.options.fillConcurrency })
  }

  const profileDir = options.profile ? join(process.cwd(), 'bench', 'results') : undefined
  const service = await startService({
    runtime: ctx.runtime,
    databaseUrl: ctx.db.url,
    queueUrl: url,
    endpoint: ctx.emulator.endpoint,
    keys: ctx.keys,
    pollers: ctx.options.pollers,
    workerEnabled: true,
    logLevel: ctx.options.serviceLogLevel,
    ...(profileDir === undefined ? {} : { cpuProfDir: profileDir }),
  })
  const started = performance.now()
  const cpu0 = cpuSeconds(service.pid)
  const emulator0 = cpuSeconds(ctx.emulator.pid)
  const postgres0 = await backendCpu(sql, ctx.db.name, 'login-ingest')
  const before = await storedCounts(sql)
  ctx.log(`draining (service pid ${service.pid}, ${ctx.options.pollers} pollers)`)
  let maxSampledRss = 0
  let lastReport = Date.now()
  const sample = (): void => {
    maxSampledRss = Math.max(maxSampledRss, memoryMiB(service.pid).rss)
    if (Date.now() - lastReport > 15_000) {
      lastReport = Date.now()
      void depth(client, url).then((d) => ctx.log(`  ${d.visible} waiting, ${d.inFlight} in flight`), () => {})
    }
  }
  if (filling !== null) {
    // The queue may run dry while the fill is still going; wait for the fill first.
    while (await Promise.race([filling.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 100))]) === false) sample()
  }
  const ended = await waitEmpty(client, url, { timeoutMs: 3_600_000, onTick: sample, explain: () => `the service's last lines:\n${service.child.tail()}` })
  const cpu1 = cpuSeconds(service.pid)
  const emulator1 = cpuSeconds(ctx.emulator.pid)
  const postgres1 = await backendCpu(sql, ctx.db.name, 'login-ingest')
  const memory = memoryMiB(service.pid)
  // The worker's own view, from its Prometheus metrics: how many stores, and how long each took.
  const metrics = await fetch(`${service.url}/metrics`).then((r) => r.text(), () => '')
  const metric = (name: string): number => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(metrics)?.[1] ?? NaN)
  const transactions = metric('login_ingest_batch_duration_seconds_count')
  const storeSeconds = metric('login_ingest_batch_duration_seconds_sum')
  await service.child.stop()
  await deleteQueue(client, url)

  const after = await storedCounts(sql)
  if (after.rows + after.rejected !== count) {
    throw new Error(`expected ${count} messages stored, found ${after.rows} rows and ${after.rejected} rejections`)
  }
  if (after.vault !== after.rows) throw new Error(`expected a vault row per login, found ${after.vault} for ${after.rows}`)
  const beforeClock = before.rows + before.rejected
  const timed = count - beforeClock
  const seconds = (ended - started) / 1000
  return {
    messages: count,
    beforeClock,
    seconds: round(seconds, 3),
    perSecond: round(timed / seconds, 0),
    serviceCpuUsPerMessage: round(((cpu1 - cpu0) / timed) * 1e6, 1),
    emulatorCpuUsPerMessage: round(((emulator1 - emulator0) / timed) * 1e6, 1),
    postgresCpuUsPerMessage: round((cpuDelta(postgres0, postgres1) / timed) * 1e6, 1),
    peakRssMiB: round(memory.peak, 1),
    maxSampledRssMiB: round(Math.max(maxSampledRss, memory.rss), 1),
    rows: after.rows,
    rejected: after.rejected,
    expectedMalformed,
    fillPerSecond: round(fillPerSecond, 0),
    transactions,
    messagesPerTransaction: round(count / transactions, 1),
    msPerTransaction: round((storeSeconds / transactions) * 1000, 1),
  }
}

export interface LoopResult {
  messages: number
  seconds: number
  perSecond: number
  cpuUsPerMessage: number
  emulatorCpuUsPerMessage: number
}

/** Fills a queue, then runs a consumer process (bench/consumers/<name>.ts) on it and reads its result line. */
async function runConsumer(ctx: Context, name: 'ceiling' | 'typical', count: number, extraEnv: NodeJS.ProcessEnv, seed: number): Promise<LoopResult> {
  const { client } = ctx.emulator
  const url = await createQueue(client, `bench-${name}-${++queueSerial}`)
  ctx.log(`filling the queue with ${count} messages`)
  await fill(client, url, messageSource(count, seed), count, { concurrency: ctx.options.fillConcurrency })
  ctx.log(`running the ${name} loop`)
  const emulator0 = cpuSeconds(ctx.emulator.pid)
  const child = spawnNode(['--import', 'tsx', `bench/consumers/${name}.ts`], {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AWS_REGION: REGION,
    AWS_ENDPOINT_URL: ctx.emulator.endpoint,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    SQS_QUEUE_URL: url,
    COUNT: String(count),
    ...extraEnv,
  })
  const result = await child.line((line) => jsonLine<{ result?: { messages: number; seconds: number; cpuSeconds: number } }>(line)?.result, 3_600_000)
  await child.exited
  const emulator1 = cpuSeconds(ctx.emulator.pid)
  await deleteQueue(client, url)
  return {
    messages: result.messages,
    seconds: round(result.seconds, 3),
    perSecond: round(result.messages / result.seconds, 0),
    cpuUsPerMessage: round((result.cpuSeconds / result.messages) * 1e6, 1),
    emulatorCpuUsPerMessage: round(((emulator1 - emulator0) / result.messages) * 1e6, 1),
  }
}

/** Section 2: the same emulator and number of pollers, receiving and batch-deleting only. */
export function queueCeiling(ctx: Context, count: number): Promise<LoopResult> {
  return runConsumer(ctx, 'ceiling', count, { POLLERS: String(ctx.options.pollers) }, 2)
}

/** Section 3: one poller, one message at a time, one row, one delete. */
export async function typicalLoop(ctx: Context, count: number): Promise<LoopResult & { rows: number; rejected: number }> {
  await resetTables(ctx.db.sql)
  const result = await runConsumer(ctx, 'typical', count, {
    DATABASE_URL: ctx.db.url,
    MASK_KEYS: ctx.keys.MASK_KEYS,
    VAULT_MASTER_KEYS: ctx.keys.VAULT_MASTER_KEYS,
  }, 3)
  const stored = await storedCounts(ctx.db.sql)
  if (stored.rows + stored.rejected !== count) throw new Error(`typical loop: expected ${count} stored, found ${stored.rows} + ${stored.rejected}`)
  return { ...result, rows: stored.rows, rejected: stored.rejected }
}
