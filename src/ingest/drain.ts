import { randomUUID } from 'node:crypto'
import type { Sql } from 'postgres'
import { DependencyError, type BatchReport, type BatchStore } from './batches.ts'
import { addCounts } from './pipeline.ts'
import type { LoginQueue } from './queue.ts'

export interface DrainLimits {
  /** stop after receiving this many messages */
  maxMessages: number
  /** stop receiving after this many seconds (batches in flight still finish) */
  maxSeconds: number
}

/** The batch counts, summed over the drain, and what ended it. */
export interface DrainReport extends BatchReport {
  stoppedBy: 'empty' | 'maxMessages' | 'maxSeconds' | 'shutdown'
}

/** Another drain holds the lease (on this replica or another). */
export class DrainBusyError extends Error {
  readonly code = 'INGEST_RUNNING'
}

/** The drain stopped because a dependency failed; what was stored before stays stored. */
export class DrainFailedError extends Error {
  constructor(
    readonly dependency: 'queue' | 'database',
    readonly partial: DrainReport,
  ) {
    super(`${dependency} unavailable`)
  }
}

const LEASE = 'ingest-run-lease'

const emptyReport = (): DrainReport => ({
  received: 0, inserted: 0, duplicates: 0, rejected: 0, rejectedReasons: {}, deleted: 0, deleteFailures: 0, durationMs: 0, stoppedBy: 'empty',
})

/**
 * One drain at a time across all replicas, through a lease row rather than a session advisory
 * lock: the lease needs no connection held for the whole drain (PGlite has only one), and a
 * crashed holder's lease simply expires.
 */
async function takeLease(sql: Sql, owner: string, seconds: number): Promise<boolean> {
  const rows = await sql`
    INSERT INTO service_state (name, value, updated_at)
    VALUES (${LEASE}, ${sql.json({ owner, expires: new Date(Date.now() + seconds * 1000).toISOString() })}, now())
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
      WHERE (service_state.value->>'expires')::timestamptz < now()
    RETURNING name`
  return rows.length === 1
}

async function releaseLease(sql: Sql, owner: string): Promise<void> {
  await sql`DELETE FROM service_state WHERE name = ${LEASE} AND value->>'owner' = ${owner}`
}

/**
 * Drains the queue now, for a scheduler: `concurrency` receive loops (short polls) share the
 * limits and stop when the queue answers empty, a limit is reached, or a dependency fails.
 * Batches go through the worker's BatchStore (group commit, heartbeat, delete after commit), so
 * counts and guarantees are the worker's. A loop receives again once its batch is committed;
 * the deletes finish before the drain answers.
 */
export async function drainQueue(
  deps: { sql: Sql; queue: LoginQueue; batches: BatchStore; concurrency: number; visibilityTimeoutSeconds: number },
  limits: DrainLimits,
  /** aborted when the service shuts down: no new receive, batches in hand still finish */
  signal?: AbortSignal,
): Promise<DrainReport> {
  const owner = randomUUID()
  let leased: boolean
  try {
    leased = await takeLease(deps.sql, owner, limits.maxSeconds + deps.visibilityTimeoutSeconds + 30)
  } catch {
    throw new DrainFailedError('database', emptyReport())
  }
  if (!leased) {
    throw new DrainBusyError('another POST /ingest is running; try again when it has finished')
  }
  const started = performance.now()
  const deadline = Date.now() + limits.maxSeconds * 1000
  const report = emptyReport()
  let reserved = 0
  let stop: DrainReport['stoppedBy'] | null = null
  let failure: DrainFailedError | null = null

  const add = (batch: BatchReport): void => {
    report.received += batch.received
    addCounts(report, batch)
    report.deleted += batch.deleted
    report.deleteFailures += batch.deleteFailures
  }

  const reports: Promise<void>[] = []
  const submitter = Symbol('drain')
  const loop = async (): Promise<void> => {
    while (stop === null && failure === null) {
      if (signal?.aborted === true) {
        stop = 'shutdown'
        return
      }
      if (Date.now() >= deadline) {
        stop = 'maxSeconds'
        return
      }
      const want = Math.min(10, limits.maxMessages - reserved)
      if (want <= 0) {
        stop = 'maxMessages'
        return
      }
      reserved += want
      let messages
      try {
        messages = await deps.queue.receive({ maxMessages: want, waitTimeSeconds: 1, visibilityTimeoutSeconds: deps.visibilityTimeoutSeconds })
      } catch {
        failure = new DrainFailedError('queue', report)
        return
      }
      reserved -= want - messages.length
      if (messages.length === 0) {
        stop ??= 'empty'
        return
      }
      const batch = deps.batches.submit(messages, submitter)
      reports.push(batch.report.then(add, () => {}))
      try {
        await batch.committed
      } catch (error) {
        report.received += messages.length
        failure = new DrainFailedError(error instanceof DependencyError ? error.dependency : 'database', report)
        return
      }
    }
  }

  try {
    await Promise.all(Array.from({ length: deps.concurrency }, loop))
    await Promise.all(reports)
  } finally {
    report.durationMs = Math.round(performance.now() - started)
    await releaseLease(deps.sql, owner).catch(() => {})
  }
  if (failure !== null) throw failure
  report.stoppedBy = stop ?? 'empty'
  return report
}
