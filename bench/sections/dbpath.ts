import type { Sql, TransactionSql } from 'postgres'
import { parseLoginMessage } from '../../src/ingest/message.ts'
import { LoginPipeline } from '../../src/ingest/pipeline.ts'
import type { QueueMessage } from '../../src/ingest/queue.ts'
import { LoginQueue } from '../../src/ingest/queue.ts'
import { Masker } from '../../src/pii/mask.ts'
import { Vault, keyringProvider, loginAad, rejectionAad, seal } from '../../src/pii/vault.ts'
import { round, type Context } from '../lib/context.ts'
import { copyStoredRows, type CopyResult } from '../lib/copy.ts'
import { resetTables, storedCounts } from '../lib/db.ts'
import { messageSource } from '../lib/messages.ts'
import { createQueue, deleteQueue, fill } from '../lib/sqs.ts'

export interface DbPathResult {
  messages: number
  batches: number
  concurrency: number
  /** cpuUsPerMessage: CPU time of this (Node.js) process per message: the pipeline's own cost, without any queue call */
  pipeline: { seconds: number; rowsPerSecond: number; rows: number; rejected: number; cpuUsPerMessage: number }
  copy: CopyResult
  /** average milliseconds per batch of 10, one batch at a time */
  breakdown: {
    batches: number
    parseValidateMs: number
    maskEncryptMs: number
    dataKeySqlMs: number
    transactionSqlMs: number
    commitMs: number
    deleteMs: number
    /** what the real calls took (seal + storeOrSplit + delete), timed around them */
    totalMs: number
    /** total minus the phases: JavaScript around them (building rows, postgres.js encoding, scheduling) */
    otherMs: number
  }
}

/** Times the queries of a postgres.js instance (and of its transactions) without touching the code that runs them. */
function timedSql(sql: Sql, clock: { outside: number; inside: number; bodyEnd: number }): Sql {
  const isTemplate = (args: unknown[]): boolean => Array.isArray(args[0]) && 'raw' in (args[0] as object)
  const wrap = <T extends Sql | TransactionSql>(target: T, where: 'outside' | 'inside'): T =>
    new Proxy(target, {
      apply(fn, thisArg, args: unknown[]) {
        const result: unknown = Reflect.apply(fn as (...a: unknown[]) => unknown, thisArg, args)
        if (!isTemplate(args)) return result
        return (async () => {
          const started = performance.now()
          try {
            return await (result as Promise<unknown>)
          } finally {
            clock[where] += performance.now() - started
          }
        })()
      },
      get(fn, property, receiver) {
        if (property === 'begin') {
          return (body: (tx: TransactionSql) => Promise<unknown>) =>
            (fn as Sql).begin(async (tx) => {
              const value = await body(wrap(tx, 'inside'))
              clock.bodyEnd = performance.now()
              return value
            })
        }
        return Reflect.get(fn, property, receiver) as unknown
      },
    })
  return wrap(sql, 'outside')
}

/**
 * Section 4: the pipeline's store path on pre-received batches (no queue calls), next to a plain
 * COPY of the very rows it wrote; then, one batch at a time, where the time of a batch goes.
 */
export async function databasePath(ctx: Context, count: number): Promise<DbPathResult> {
  const { client } = ctx.emulator
  const sql = ctx.db.sql
  const url = await createQueue(client, 'bench-dbpath', 3600)
  ctx.log(`filling and receiving ${count} messages`)
  await fill(client, url, messageSource(count, 4), count, { concurrency: ctx.options.fillConcurrency })
  const queue = new LoginQueue(client, url)
  const batches: QueueMessage[][] = []
  let received = 0
  while (received < count) {
    const batch = await queue.receive({ maxMessages: 10, waitTimeSeconds: 1, visibilityTimeoutSeconds: 3600 })
    if (batch.length === 0) continue
    batches.push(batch)
    received += batch.length
  }

  const masker = new Masker(ctx.keys.mask)
  const vault = new Vault(sql, keyringProvider(ctx.keys.master))
  const loginPipeline = new LoginPipeline(sql, masker, vault)

  // The store path with the service's concurrency: P batches in flight, each its own transaction.
  await resetTables(sql)
  await sql`VACUUM ANALYZE user_logins`
  ctx.log(`pipeline: ${batches.length} batches, ${ctx.options.pollers} at a time`)
  let next = 0
  const started = performance.now()
  const cpu = process.cpuUsage()
  await Promise.all(Array.from({ length: ctx.options.pollers }, async () => {
    while (next < batches.length) await loginPipeline.process(batches[next++] as QueueMessage[])
  }))
  const pipelineSeconds = (performance.now() - started) / 1000
  const used = process.cpuUsage(cpu)
  const stored = await storedCounts(sql)
  if (stored.rows + stored.rejected !== count) throw new Error(`database path: expected ${count} stored, found ${stored.rows} + ${stored.rejected}`)

  // The same rows (and their vault rows) written back with COPY, in one transaction.
  ctx.log(`COPY of the same ${stored.rows} rows`)
  const copy = await copyStoredRows(sql, ctx.db.name, 'login-ingest-bench')

  // Where the time of one batch goes, one batch at a time, on fresh tables.
  await resetTables(sql)
  await sql`VACUUM ANALYZE user_logins`
  const sample = batches.slice(0, Math.min(batches.length, ctx.options.quick ? 50 : 300))
  ctx.log(`breakdown over ${sample.length} batches`)
  const clock = { outside: 0, inside: 0, bodyEnd: 0 }
  const timedPipeline = new LoginPipeline(timedSql(sql, clock), masker, new Vault(timedSql(sql, clock), keyringProvider(ctx.keys.master)))
  const sum = { parse: 0, maskEncrypt: 0, dataKeys: 0, transaction: 0, commit: 0, delete: 0, total: 0 }
  for (const batch of sample) {
    clock.outside = 0
    clock.inside = 0
    const t0 = performance.now()
    const sealed = await timedPipeline.seal(batch)
    sum.dataKeys += clock.outside
    await timedPipeline.storeOrSplit(sealed)
    const stored = performance.now()
    sum.commit += stored - clock.bodyEnd
    sum.transaction += clock.inside
    await queue.delete(batch)
    const t1 = performance.now()
    sum.delete += t1 - stored
    sum.total += t1 - t0

    // The pure CPU phases, measured on the same batch apart from the calls above.
    const p0 = performance.now()
    const parsed = batch.map((m) => parseLoginMessage(m.body))
    const p1 = performance.now()
    sealed.forEach((item, i) => {
      const result = parsed[i]
      if (item.kind === 'login' && result?.ok) {
        masker.maskIp(result.login.ip)
        masker.maskDeviceId(result.login.device_id)
        seal(item.dataKey.key, Buffer.from(JSON.stringify({ ip: result.login.ip, device_id: result.login.device_id }), 'utf8'), loginAad(item.message.messageId))
      } else {
        seal(item.dataKey.key, Buffer.from(item.message.body, 'utf8'), rejectionAad(item.message.messageId))
      }
    })
    const p2 = performance.now()
    sum.parse += p1 - p0
    sum.maskEncrypt += p2 - p1
  }
  await deleteQueue(client, url)
  const per = (value: number): number => round(value / sample.length, 3)
  const phases = sum.parse + sum.maskEncrypt + sum.dataKeys + sum.transaction + sum.commit + sum.delete
  return {
    messages: count,
    batches: batches.length,
    concurrency: ctx.options.pollers,
    pipeline: {
      seconds: round(pipelineSeconds, 3),
      rowsPerSecond: round(count / pipelineSeconds, 0),
      rows: stored.rows,
      rejected: stored.rejected,
      cpuUsPerMessage: round(((used.user + used.system) / count), 1),
    },
    copy,
    breakdown: {
      batches: sample.length,
      parseValidateMs: per(sum.parse),
      maskEncryptMs: per(sum.maskEncrypt),
      dataKeySqlMs: per(sum.dataKeys),
      transactionSqlMs: per(sum.transaction),
      commitMs: per(sum.commit),
      deleteMs: per(sum.delete),
      totalMs: per(sum.total),
      otherMs: per(sum.total - phases),
    },
  }
}
