import { Readable } from 'node:stream'
import { pipeline as streamPipeline } from 'node:stream/promises'
import type { Sql, TransactionSql } from 'postgres'
import { parseLoginMessage } from '../../src/ingest/message.ts'
import { LoginPipeline } from '../../src/ingest/pipeline.ts'
import type { QueueMessage } from '../../src/ingest/queue.ts'
import { LoginQueue } from '../../src/ingest/queue.ts'
import { Masker } from '../../src/pii/mask.ts'
import { Vault, keyringProvider, loginAad, rejectionAad, seal } from '../../src/pii/vault.ts'
import { round, type Context } from '../lib/context.ts'
import { resetTables, storedCounts } from '../lib/db.ts'
import { messageSource } from '../lib/messages.ts'
import { createQueue, deleteQueue, fill } from '../lib/sqs.ts'

export interface DbPathResult {
  messages: number
  batches: number
  concurrency: number
  /** cpuUsPerMessage: CPU time of this (Node.js) process per message: the pipeline's own cost, without any queue call */
  pipeline: { seconds: number; rowsPerSecond: number; rows: number; rejected: number; cpuUsPerMessage: number }
  copy: { seconds: number; rowsPerSecond: number; rows: number }
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

/** One COPY text-format field. */
const copyField = (value: string | null): string =>
  value === null ? '\\N' : value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')

const LOGIN_COLUMNS = ['id', 'message_id', 'user_id', 'device_type', 'masked_ip', 'masked_device_id', 'locale', 'app_version',
  'app_version_text', 'create_date', 'sent_at', 'ingested_at', 'mask_key_id'] as const

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
  // json, not text[]: postgres.js reads a NULL element of a text array as the string 'NULL'.
  const loginRows = await sql.unsafe<{ line: (string | null)[] }[]>(
    `SELECT json_build_array(${LOGIN_COLUMNS.map((c) => `${c}::text`).join(', ')}) AS line FROM user_logins ORDER BY id`)
  const vaultRows = await sql<{ line: (string | null)[] }[]>`
    SELECT json_build_array(login_id::text, data_key_id::text, '\\x' || encode(ciphertext, 'hex')) AS line FROM pii_vault ORDER BY login_id`
  await sql`TRUNCATE user_logins, pii_vault`
  await sql`VACUUM ANALYZE user_logins`
  ctx.log(`COPY of the same ${loginRows.length} rows`)
  const copyStarted = performance.now()
  // postgres.js never settles a COPY that the server refused: give up after a while instead of hanging.
  let copyTimer: NodeJS.Timeout | undefined
  const copyTimeout = new Promise<never>((_, reject) => {
    copyTimer = setTimeout(() => reject(new Error('COPY did not finish within 5 minutes (refused data?)')), 300_000)
  })
  await Promise.race([copyTimeout, sql.begin(async (tx) => {
    const lines = (rows: { line: (string | null)[] }[]) => Readable.from((function* () {
      for (const { line } of rows) yield `${line.map(copyField).join('\t')}\n`
    })())
    await streamPipeline(lines(loginRows), await tx.unsafe(`COPY user_logins (${LOGIN_COLUMNS.join(', ')}) FROM STDIN`).writable())
    await streamPipeline(lines(vaultRows), await tx`COPY pii_vault (login_id, data_key_id, ciphertext) FROM STDIN`.writable())
  })]).finally(() => clearTimeout(copyTimer))
  const copySeconds = (performance.now() - copyStarted) / 1000

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
    copy: { seconds: round(copySeconds, 3), rowsPerSecond: round(loginRows.length / copySeconds, 0), rows: loginRows.length },
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
