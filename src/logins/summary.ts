import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from 'postgres'
import { describeError } from '../db/errors.ts'

/**
 * Folds every committed pending change of user_logins into the duplicates summary (migrations
 * 009 and 010) in one transaction, under an advisory lock so one session at a time does it.
 * With `wait` false it gives up at once when another session holds the lock (a replica's
 * SummaryRefresher); with `wait` true it queues behind it (a reader catching up). Returns the
 * pending rows folded in, or -1 when it gave up.
 */
export async function refreshDuplicates(sql: Sql, options: { wait: boolean }): Promise<number> {
  return sql.begin(async (tx) => {
    // One statement over the whole backlog, however large (a rotation's switch queues two rows
    // per login): the service's statement timeout would end it and leave the backlog forever.
    await tx`SET LOCAL statement_timeout = 0`
    if (options.wait) {
      await tx`SELECT pg_advisory_xact_lock(hashtext('login-ingest:duplicates'))`
    } else {
      const [row] = await tx<{ locked: boolean }[]>`SELECT pg_try_advisory_xact_lock(hashtext('login-ingest:duplicates')) AS locked`
      if (row?.locked !== true) return -1
    }
    const [row] = await tx<{ n: number }[]>`SELECT login_duplicates_refresh() AS n`
    const folded = row?.n ?? 0
    // What the fold deleted stays in the queue's pages until autovacuum, and the report's count
    // of pending changes reads them all: truncated now if nothing else writes the queue (migration 014).
    if (folded > 0) await tx`SELECT login_summary_pending_compact()`
    return folded
  })
}

/** A backlog a read folds before it answers: about a second of ingestion, a fraction of a second to fold. */
export const READ_FOLD_LIMIT = 10_000

/** Pending changes waiting to be folded into the summary, counted up to `limit` + 1 (reads at most that many rows). */
export async function duplicatesPending(sql: Sql, limit = READ_FOLD_LIMIT): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM (SELECT 1 FROM login_summary_pending LIMIT ${limit + 1}) p`
  return row?.n ?? 0
}

/**
 * Folds new logins into the summary while the worker stores them: at most one fold every
 * `intervalMs` (0: after every stored batch), since a fold costs about the same for one batch as
 * for many (the same masked values recur within a second). Quiet while nothing is stored, so
 * an idle replica (or one whose database is down) sends no queries for it; what other writers
 * leave pending (a rotation's switch, an erasure) is folded by the next fold, or by a read of
 * the report before it answers.
 */
export class SummaryRefresher {
  private running: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private again = false
  private stopped = false

  constructor(
    private readonly sql: Sql,
    private readonly log: FastifyBaseLogger,
    private readonly intervalMs = 1000,
  ) {}

  /** Something was stored: fold it within `intervalMs`. */
  kick(): void {
    if (this.stopped) return
    if (this.running !== null) {
      this.again = true
      return
    }
    if (this.timer !== null) return
    if (this.intervalMs === 0) {
      this.fold()
      return
    }
    this.timer = setTimeout(() => {
      this.timer = null
      this.fold()
    }, this.intervalMs)
    this.timer.unref()
  }

  /** Folds now (what a restart finds pending, too). */
  fold(): void {
    if (this.stopped || this.running !== null) return
    this.running = refreshDuplicates(this.sql, { wait: false })
      .then(() => undefined, (error: unknown) => {
        this.log.warn({ err: describeError(error) }, 'duplicates summary refresh failed; the next stored batch retries')
      })
      .finally(() => {
        this.running = null
        if (this.again) {
          this.again = false
          this.kick()
        }
      })
  }

  /** Folds what a pending timer was waiting for, but holds a shutdown at most 2 s for a fold in flight. */
  async stop(): Promise<void> {
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
      this.fold()
    }
    this.stopped = true
    this.again = false
    if (this.running === null) return
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.running, new Promise((resolve) => { timer = setTimeout(resolve, 2000) })])
    clearTimeout(timer)
  }
}
