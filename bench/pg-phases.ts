/**
 * node --import tsx bench/pg-phases.ts [messages]: PostgreSQL backend CPU per message of the
 * store path's phases (data keys, the transaction), on in-memory messages (no queue), in
 * batches of 100 as the group commit forms them, and the duplicates summary's fold after every
 * PHASES_FOLD_EVERY batches (default 1; PHASES_FOLD=off: never); next to a COPY of the same rows.
 * PHASES_SETUP_SQL runs after the migrations (e.g. an index to try). DATABASE_URL as for the
 * bench. A tool for finding where the database's time goes.
 */
import { randomUUID } from 'node:crypto'
import { LoginPipeline } from '../src/ingest/pipeline.ts'
import type { QueueMessage } from '../src/ingest/queue.ts'
import { Masker } from '../src/pii/mask.ts'
import { Vault, keyringProvider } from '../src/pii/vault.ts'
import { prepareDatabase } from '../src/prepare.ts'
import { copyStoredRows } from './lib/copy.ts'
import { DEFAULT_DATABASE_URL, backendCpu, cpuDelta, createBenchDatabase } from './lib/db.ts'
import { messageSource } from './lib/messages.ts'
import { benchKeys } from './lib/service.ts'
import { refreshDuplicates } from '../src/logins/summary.ts'

const count = Number(process.argv[2] ?? 20_000)
const db = await createBenchDatabase(process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL)
try {
  const keys = benchKeys()
  await prepareDatabase(db.sql, keys)
  const source = messageSource(count, 4)
  const now = Date.now()
  const messages: QueueMessage[] = Array.from({ length: count }, (_, i) => ({
    messageId: randomUUID(), receiptHandle: 'x', body: source.body(i), sentAt: new Date(now - (count - i) * 10), receiveCount: 1,
  }))
  const pipeline = new LoginPipeline(db.sql, new Masker(keys.mask), new Vault(db.sql, keyringProvider(keys.master)))
  const cpu = () => backendCpu(db.sql, db.name, 'login-ingest-bench')
  let sealCpu = 0
  let storeCpu = 0
  let foldCpu = 0
  if (process.env.PHASES_SETUP_SQL) await db.sql.unsafe(process.env.PHASES_SETUP_SQL)
  for (let start = 0; start < count; start += 100) {
    const batch = messages.slice(start, start + 100)
    const c0 = await cpu()
    const sealed = await pipeline.seal(batch)
    const c1 = await cpu()
    await pipeline.storeOrSplit(sealed)
    const c2 = await cpu()
    sealCpu += cpuDelta(c0, c1)
    storeCpu += cpuDelta(c1, c2)
    if (process.env.PHASES_FOLD !== 'off' && ((start / 100) + 1) % Number(process.env.PHASES_FOLD_EVERY ?? 1) === 0) {
      await refreshDuplicates(db.sql, { wait: true })
      foldCpu += cpuDelta(c2, await cpu())
    }
  }
  const copy = await copyStoredRows(db.sql, db.name, 'login-ingest-bench')
  const us = (seconds: number): number => Math.round((seconds / count) * 1e6 * 10) / 10
  console.log(JSON.stringify({ messages: count, dataKeysUsPerMessage: us(sealCpu), transactionUsPerMessage: us(storeCpu), foldUsPerMessage: us(foldCpu), totalUsPerMessage: us(sealCpu + storeCpu + foldCpu), copyUsPerRow: copy.postgresCpuUsPerRow }))
} finally {
  await db.drop()
}
