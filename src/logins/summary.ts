import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from 'postgres'
import { describeError } from '../db/errors.ts'

/** Pending rows one refresh transaction folds in at most (a few tens of milliseconds). */
export const REFRESH_BATCH = 5_000

/**
 * Folds pending changes of user_logins into the duplicates summary (migration 009), one batch
 * per transaction under an advisory lock so one session at a time does it. With `wait` false it
 * gives up at once when another session holds the lock (a replica's SummaryRefresher);
 * with `wait` true it queues behind it (a reader catching up). Returns the pending rows folded in.
 */
export async function refreshDuplicates(sql: Sql, options: { wait: boolean; maxBatches?: number }): Promise<number> {
  let total = 0
  for (let i = 0; i < (options.maxBatches ?? Number.POSITIVE_INFINITY); i++) {
    const taken = await sql.begin(async (tx) => {
      if (options.wait) {
        await tx`SELECT pg_advisory_xact_lock(hashtext('login-ingest:duplicates'))`
      } else {
        const [row] = await tx<{ locked: boolean }[]>`SELECT pg_try_advisory_xact_lock(hashtext('login-ingest:duplicates')) AS locked`
        if (row?.locked !== true) return -1
      }
      const [row] = await tx<{ n: number }[]>`SELECT login_duplicates_refresh(${REFRESH_BATCH}::int) AS n`
      return row?.n ?? 0
    })
    if (taken <= 0) break
    total += taken
    if (taken < REFRESH_BATCH) break
  }
  return total
}

/** Whether changes are waiting to be folded into the summary (a cheap primary-key probe). */
export async function duplicatesPending(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ pending: boolean }[]>`SELECT EXISTS (SELECT 1 FROM login_summary_pending) AS pending`
  return row?.pending === true
}

/**
 * Folds new logins into the summary after the worker stores them: one refresh at a time, and
 * one more when batches arrived meanwhile. Quiet while nothing is stored, so an idle replica
 * (or one whose database is down) sends no queries for it; what other writers leave pending
 * (a rotation's switch, an erasure) is folded by the next batch, or by a read before it answers.
 */
export class SummaryRefresher {
  private running: Promise<void> | null = null
  private again = false

  constructor(
    private readonly sql: Sql,
    private readonly log: FastifyBaseLogger,
  ) {}

  kick(): void {
    if (this.running !== null) {
      this.again = true
      return
    }
    this.running = (async () => {
      do {
        this.again = false
        await refreshDuplicates(this.sql, { wait: false })
      } while (this.again)
    })()
      .catch((error: unknown) => this.log.warn({ err: describeError(error) }, 'duplicates summary refresh failed; the next stored batch retries'))
      .finally(() => { this.running = null })
  }

  /** Lets a refresh in flight finish (one short transaction), but never holds a shutdown for long. */
  async stop(): Promise<void> {
    this.again = false
    if (this.running === null) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.running, new Promise((resolve) => { timer = setTimeout(resolve, 2000) })])
    clearTimeout(timer)
  }
}
