import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from 'postgres'
import { withDeadline } from '../db/deadline.ts'
import { describeError } from '../db/errors.ts'
import { writeAudit, type AuditEntry } from './store.ts'

export interface RefusalAuditOptions {
  /** refusals per bucket and window written as rows of their own */
  perWindow: number
  windowMs: number
}

interface Summary {
  entry: AuditEntry
  calls: number
  firstAt: Date
}

/**
 * Audits refused calls at a bounded cost. Per window and per bucket (action, key name or none,
 * status), the first `perWindow` refusals get a row each; the rest are counted in memory and
 * written when the window ends as ONE row carrying their count. The table stays insert-only, and
 * a kill -9 loses at most the counts of the current window. A bucket never mixes key names, so
 * an anonymous flood does not use up the rows of a caller with a key.
 */
export class RefusalAudit {
  #written = new Map<string, number>()
  #pending = new Map<string, Summary>()
  #timer: NodeJS.Timeout
  #flushing: Promise<void> = Promise.resolve()

  constructor(
    private readonly sql: Sql,
    private readonly options: RefusalAuditOptions,
    private readonly log: FastifyBaseLogger,
  ) {
    this.#timer = setInterval(() => void this.#endWindow(), options.windowMs)
    this.#timer.unref()
  }

  /** Writes the refusal's own row, or counts it into its bucket's summary beyond the rate. */
  async record(entry: AuditEntry): Promise<void> {
    const bucket = `${entry.action}\u0000${entry.keyName ?? ''}\u0000${entry.status}`
    const written = this.#written.get(bucket) ?? 0
    if (written < this.options.perWindow) {
      this.#written.set(bucket, written + 1)
      await writeAudit(this.sql, entry)
      return
    }
    const summary = this.#pending.get(bucket)
    if (summary) summary.calls++
    else this.#pending.set(bucket, { entry, calls: 1, firstAt: new Date() })
  }

  /** Ends the window now: writes the pending summaries (the app calls this when it closes). */
  async flush(): Promise<void> {
    await this.#endWindow()
  }

  /** Stops the timer and writes what is pending; a database that does not answer cannot hold the shutdown. */
  async close(): Promise<void> {
    clearInterval(this.#timer)
    await withDeadline(this.flush(), 2000).catch((error: unknown) =>
      this.log.error({ err: describeError(error) }, 'audit summaries not written at shutdown'))
  }

  #endWindow(): Promise<void> {
    this.#written.clear()
    this.#flushing = this.#flushing.then(() => this.#writeSummaries())
    return this.#flushing
  }

  async #writeSummaries(): Promise<void> {
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    for (const summary of pending) {
      const { entry } = summary
      try {
        // A summary names no single call: target, reason and request id are left empty.
        await writeAudit(this.sql, {
          action: entry.action,
          keyName: entry.keyName,
          target: null,
          reason: null,
          status: entry.status,
          outcome: entry.outcome,
          requestId: null,
          calls: summary.calls,
          firstAt: summary.firstAt,
          notes: [`${summary.calls} refused calls beyond the audit rate, summarised`],
        })
      } catch (error) {
        // Kept for the next window: the count is not lost while the database is away.
        const bucket = `${entry.action}\u0000${entry.keyName ?? ''}\u0000${entry.status}`
        const later = this.#pending.get(bucket)
        this.#pending.set(bucket, later ? { entry, calls: later.calls + summary.calls, firstAt: summary.firstAt } : summary)
        this.log.error({ err: describeError(error), calls: summary.calls }, 'could not write an audit summary; retrying next window')
      }
    }
  }
}
