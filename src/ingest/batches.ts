import type { FastifyBaseLogger } from 'fastify'
import { describeError } from '../db/errors.ts'
import type { LoginPipeline, StoreCounts, StoreResult } from './pipeline.ts'
import type { LoginQueue, QueueMessage } from './queue.ts'

export type Dependency = 'queue' | 'database'

/** A failure of a dependency: the batch it hit stays on the queue. */
export class DependencyError extends Error {
  constructor(
    readonly dependency: Dependency,
    readonly failure: unknown,
  ) {
    super(`${dependency} failed`)
  }
}

export interface BatchReport extends StoreCounts {
  received: number
  deleted: number
  deleteFailures: number
  durationMs: number
}

export interface BatchStoreOptions {
  visibilityTimeoutSeconds: number
  /** most messages one transaction stores when it takes several waiting batches together (default 100) */
  maxMessagesPerTransaction?: number
  /** store transactions running at once (default 1: batches that arrive meanwhile go into the next, as a group commit) */
  maxTransactions?: number
}

export interface BatchStoreHooks {
  /** every report, once per transaction, after its deletes: the one place that counts */
  report: (report: BatchReport) => void
  failure: (dependency: Dependency, cause: unknown) => void
}

/** A submitted batch: `committed` settles when its transaction does, `report` after its deletes too. */
export interface SubmittedBatch {
  committed: Promise<void>
  report: Promise<BatchReport>
}

interface Pending {
  /** who submitted it (a poller number, or a drain's own key), to count its uncommitted batches */
  owner: unknown
  messages: readonly QueueMessage[]
  phase: 'waiting' | 'storing' | 'deleting'
  submittedAt: number
  stopHeartbeat: () => void
  commit: PromiseWithResolvers<void>
  report: PromiseWithResolvers<BatchReport>
}

/**
 * The one store-and-delete path, for the poll loop and `POST /ingest` alike. Submitted batches
 * wait for a transaction; a transaction takes every batch waiting (up to
 * `maxMessagesPerTransaction` messages), at most `maxTransactions` run at once (group commit),
 * and each batch is deleted only after its transaction committed. Every batch keeps its
 * messages invisible (heartbeat) from submission until its commit.
 */
export class BatchStore {
  private readonly pending = new Set<Pending>()
  private transactions = 0
  /** true once a transaction committed, false after one failed */
  private lastCommitSucceeded = false
  private changeWaiters: (() => void)[] = []

  constructor(
    private readonly queue: LoginQueue,
    private readonly pipeline: LoginPipeline,
    private readonly log: FastifyBaseLogger,
    private readonly options: BatchStoreOptions,
    private readonly hooks: BatchStoreHooks,
  ) {}

  /** Batches submitted and not yet stored and deleted (or failed). */
  get inFlight(): number {
    return this.pending.size
  }

  /** Whether the latest transaction committed (false before the first and after a failure). */
  get committing(): boolean {
    return this.lastCommitSucceeded
  }

  /** Batches of `owner` not yet committed (or failed). */
  uncommitted(owner: unknown): number {
    let n = 0
    for (const batch of this.pending) if (batch.owner === owner && batch.phase !== 'deleting') n++
    return n
  }

  /** Resolves at the next commit, failure or settled batch. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.changeWaiters.push(resolve))
  }

  /** Resolves when every submitted batch is stored and deleted, or failed. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await this.changed()
  }

  submit(messages: readonly QueueMessage[], owner: unknown): SubmittedBatch {
    const batch: Pending = {
      owner,
      messages,
      phase: 'waiting',
      submittedAt: performance.now(),
      stopHeartbeat: this.heartbeat(messages),
      commit: Promise.withResolvers<void>(),
      report: Promise.withResolvers<BatchReport>(),
    }
    // A caller may watch only one of the two; the other must not become an unhandled rejection.
    batch.commit.promise.catch(() => {})
    batch.report.promise.catch(() => {})
    this.pending.add(batch)
    this.startTransactions()
    return { committed: batch.commit.promise, report: batch.report.promise }
  }

  /** Extends the batch's visibility every half timeout until stopped, so no other consumer starts it again. */
  private heartbeat(messages: readonly QueueMessage[]): () => void {
    const seconds = this.options.visibilityTimeoutSeconds
    const timer = setInterval(() => {
      this.queue.extendVisibility(messages, seconds).catch((error: unknown) => {
        this.log.warn({ err: describeError(error) }, 'could not extend the visibility of a slow batch')
      })
    }, (seconds * 1000) / 2)
    return () => clearInterval(timer)
  }

  private notify(): void {
    const waiters = this.changeWaiters
    this.changeWaiters = []
    for (const wake of waiters) wake()
  }

  /** Starts transactions while batches wait and a slot is free; each takes all it can. */
  private startTransactions(): void {
    const limit = Math.max(1, this.options.maxMessagesPerTransaction ?? 100)
    const slots = Math.max(1, this.options.maxTransactions ?? 1)
    while (this.transactions < slots) {
      const group: Pending[] = []
      let size = 0
      for (const batch of this.pending) {
        if (batch.phase !== 'waiting') continue
        if (group.length > 0 && size + batch.messages.length > limit) break
        batch.phase = 'storing'
        group.push(batch)
        size += batch.messages.length
      }
      if (group.length === 0) return
      this.transactions++
      void this.storeGroup(group)
    }
  }

  /** One transaction for the group; after the commit the slot is free, then each batch is deleted. */
  private async storeGroup(group: Pending[]): Promise<void> {
    let outcome: StoreResult
    try {
      outcome = await this.pipeline.processById(group.flatMap((batch) => batch.messages))
    } catch (error) {
      this.lastCommitSucceeded = false
      this.transactions--
      const failure = new DependencyError('database', error)
      for (const batch of group) {
        batch.stopHeartbeat()
        this.pending.delete(batch)
        batch.commit.reject(failure)
        batch.report.reject(failure)
      }
      this.hooks.failure('database', error)
      this.notify()
      this.startTransactions()
      return
    }
    this.lastCommitSucceeded = true
    this.transactions--
    for (const batch of group) {
      batch.stopHeartbeat()
      batch.phase = 'deleting'
      batch.commit.resolve()
    }
    this.notify()
    this.startTransactions()

    // Split the transaction's counts over its batches; a message id twice in the group counts once.
    const claimed = new Set<string>()
    const reports = await Promise.all(group.map(async (batch): Promise<BatchReport> => {
      const report: BatchReport = {
        received: batch.messages.length, inserted: 0, duplicates: 0, rejected: 0, rejectedReasons: {}, deleted: 0, deleteFailures: 0, durationMs: 0,
      }
      for (const { messageId } of batch.messages) {
        const first = !claimed.has(messageId)
        claimed.add(messageId)
        const reason = outcome.rejectedIds.get(messageId)
        if (first && outcome.insertedIds.has(messageId)) report.inserted++
        else if (first && reason !== undefined) {
          report.rejected++
          report.rejectedReasons[reason] = (report.rejectedReasons[reason] ?? 0) + 1
        } else report.duplicates++
      }
      const { deleted, failed } = await this.deleteStored(batch.messages)
      report.deleted = deleted
      report.deleteFailures = failed
      report.durationMs = performance.now() - batch.submittedAt
      return report
    }))
    const total: BatchReport = {
      received: 0, inserted: outcome.inserted, duplicates: outcome.duplicates, rejected: outcome.rejected,
      rejectedReasons: outcome.rejectedReasons, deleted: 0, deleteFailures: 0, durationMs: 0,
    }
    for (const report of reports) {
      total.received += report.received
      total.deleted += report.deleted
      total.deleteFailures += report.deleteFailures
      total.durationMs = Math.max(total.durationMs, report.durationMs)
    }
    this.hooks.report(total)
    group.forEach((batch, i) => {
      this.pending.delete(batch)
      batch.report.resolve(reports[i] as BatchReport)
    })
    this.notify()
  }

  /** Deletes committed messages (10 per call, calls side by side); a failed delete only means a later duplicate. */
  private async deleteStored(stored: readonly QueueMessage[]): Promise<{ deleted: number; failed: number }> {
    const chunks: QueueMessage[][] = []
    for (let start = 0; start < stored.length; start += 10) chunks.push(stored.slice(start, start + 10))
    let deleted = 0
    let failed = 0
    await Promise.all(chunks.map(async (chunk) => {
      let result
      try {
        result = await this.queue.delete(chunk)
      } catch (error) {
        this.hooks.failure('queue', error)
        result = { deleted: 0, failed: chunk.map((m) => ({ messageId: m.messageId, code: 'DeleteRequestFailed' })) }
      }
      deleted += result.deleted
      failed += result.failed.length
      for (const failure of result.failed) {
        this.log.warn({ messageId: failure.messageId, code: failure.code }, 'SQS did not delete a stored message; it will be redelivered and skipped as a duplicate')
      }
    }))
    return { deleted, failed }
  }
}
