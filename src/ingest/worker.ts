import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from 'postgres'
import { describeError } from './errors.ts'
import type { LoginPipeline, QueueMessage, StoreCounts } from './pipeline.ts'
import type { LoginQueue } from './queue.ts'

export interface WorkerOptions {
  concurrency: number
  waitTimeSeconds: number
  visibilityTimeoutSeconds: number
  /** ceiling of the exponential back-off after failures */
  maxBackoffMs?: number
  /** most messages one transaction stores when it takes the batches of several receives together (default 100) */
  maxMessagesPerTransaction?: number
  /** store transactions running at once (default 1: batches that arrive meanwhile go into the next, as a group commit) */
  maxTransactions?: number
  /** received batches a poller may have waiting for their commit before it receives again, while the database commits (default 10) */
  maxBatchesPerPoller?: number
}

export interface WorkerFailure {
  at: string
  /** which dependency failed: the queue (receive, delete) or the database (store) */
  dependency: 'queue' | 'database'
  error: Record<string, string>
}

export interface WorkerState {
  status: 'idle' | 'running' | 'stopping' | 'stopped'
  pollers: number
  batchesInFlight: number
  lastPollAt: string | null
  lastSuccessfulPollAt: string | null
  lastError: WorkerFailure | null
}

export interface BatchReport extends StoreCounts {
  received: number
  deleted: number
  deleteFailures: number
  durationMs: number
}

export interface Totals {
  received: number
  inserted: number
  duplicates: number
  rejected: number
  deleted: number
  deleteFailures: number
  pollErrors: number
  storeErrors: number
}

class DependencyError extends Error {
  constructor(
    readonly dependency: 'queue' | 'database',
    readonly failure: unknown,
  ) {
    super(`${dependency} failed`)
  }
}

const sleepFor = (failures: number, ceiling: number): number =>
  Math.min(ceiling, 250 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2)

/** A received batch waiting for (or in) its transaction. */
interface PendingBatch {
  poller: number
  messages: readonly QueueMessage[]
  heartbeat: NodeJS.Timeout
  done: () => void
}

/**
 * The background consumer: `concurrency` pollers, each a chain of setTimeout-scheduled ticks
 * (long-poll, hand the batch over), never a tight loop. Received batches are stored together:
 * a transaction takes every batch waiting (up to `maxMessagesPerTransaction` messages), at most
 * `maxTransactions` run at once, and a batch is deleted only after the commit of its
 * transaction, off the pollers' path. While the database commits, a poller receives again
 * before its previous batches are stored, up to `maxBatchesPerPoller` uncommitted batches;
 * before the first commit and after a failure it waits for each batch's commit (one at a time).
 * After a database failure a poller checks the database before it receives again, so an outage
 * does not burn the messages' receive counts towards the dead-letter queue.
 */
export class IngestWorker {
  readonly totals: Totals = {
    received: 0, inserted: 0, duplicates: 0, rejected: 0, deleted: 0, deleteFailures: 0, pollErrors: 0, storeErrors: 0,
  }
  private status: WorkerState['status'] = 'idle'
  private readonly ticks = new Set<Promise<void>>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private abort = new AbortController()
  private batchesInFlight = 0
  private lastPollAt: Date | null = null
  private lastSuccessfulPollAt: Date | null = null
  private lastError: WorkerFailure | null = null
  private databaseSuspect = false
  /** true once a transaction committed, false after one failed: pollers receive ahead only while true */
  private databaseCommitting = false
  /** batches waiting for a transaction */
  private readonly waiting: PendingBatch[] = []
  private transactions = 0
  /** uncommitted batches per poller */
  private readonly uncommitted = new Map<number, number>()
  /** pollers whose batch failed to store since their last tick: they back off */
  private readonly failedPollers = new Set<number>()
  /** every batch handed over and not yet stored and deleted (or failed); stop() waits for them */
  private readonly batches = new Set<Promise<void>>()
  private wakeUps: (() => void)[] = []
  private readonly batchListeners: ((report: BatchReport) => void)[] = []
  private readonly failureListeners: ((dependency: 'queue' | 'database') => void)[] = []

  constructor(
    private readonly queue: LoginQueue,
    private readonly pipeline: LoginPipeline,
    private readonly sql: Sql,
    private readonly log: FastifyBaseLogger,
    private readonly options: WorkerOptions,
  ) {}

  onBatch(listener: (report: BatchReport) => void): void {
    this.batchListeners.push(listener)
  }

  onFailure(listener: (dependency: 'queue' | 'database') => void): void {
    this.failureListeners.push(listener)
  }

  state(): WorkerState {
    return {
      status: this.status,
      pollers: this.status === 'running' ? this.options.concurrency : 0,
      batchesInFlight: this.batchesInFlight,
      lastPollAt: this.lastPollAt?.toISOString() ?? null,
      lastSuccessfulPollAt: this.lastSuccessfulPollAt?.toISOString() ?? null,
      lastError: this.lastError,
    }
  }

  start(): void {
    if (this.status === 'running') return
    this.status = 'running'
    this.abort = new AbortController()
    for (let poller = 0; poller < this.options.concurrency; poller++) this.schedule(poller, 0, 0)
    this.log.info({ pollers: this.options.concurrency }, 'ingestion worker started')
  }

  /** Stops polling, lets the batches in flight commit and delete, then resolves. */
  async stop(): Promise<void> {
    if (this.status !== 'running') return
    this.status = 'stopping'
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    this.abort.abort()
    this.wake()
    while (this.ticks.size > 0 || this.batches.size > 0) await Promise.allSettled([...this.ticks, ...this.batches])
    this.status = 'stopped'
    this.log.info('ingestion worker stopped; batches in flight finished')
  }

  /**
   * Processes one received batch: store (with heartbeat), then delete what was committed.
   * Throws a DependencyError-wrapped failure when the batch must stay on the queue.
   */
  async runBatch(messages: readonly QueueMessage[]): Promise<BatchReport> {
    const started = performance.now()
    this.batchesInFlight++
    const heartbeatMs = (this.options.visibilityTimeoutSeconds * 1000) / 2
    const heartbeat = setInterval(() => {
      this.queue.extendVisibility(messages, this.options.visibilityTimeoutSeconds).catch((error: unknown) => {
        this.log.warn({ err: describeError(error) }, 'could not extend the visibility of a slow batch')
      })
    }, heartbeatMs)
    try {
      let outcome
      try {
        outcome = await this.pipeline.process(messages)
      } catch (error) {
        throw new DependencyError('database', error)
      }
      clearInterval(heartbeat)
      let deleted = 0
      let failed: { messageId: string; code: string }[] = []
      try {
        ;({ deleted, failed } = await this.queue.delete(outcome.stored))
      } catch (error) {
        // Committed but not deleted: the messages come back and are counted as duplicates then.
        failed = outcome.stored.map((m) => ({ messageId: m.messageId, code: 'DeleteRequestFailed' }))
        this.recordFailure('queue', error)
      }
      for (const failure of failed) {
        this.log.warn({ messageId: failure.messageId, code: failure.code }, 'SQS did not delete a stored message; it will be redelivered and skipped as a duplicate')
      }
      const report: BatchReport = {
        received: messages.length,
        inserted: outcome.inserted,
        duplicates: outcome.duplicates,
        rejected: outcome.rejected,
        rejectedReasons: outcome.rejectedReasons,
        deleted,
        deleteFailures: failed.length,
        durationMs: performance.now() - started,
      }
      this.count(report)
      return report
    } finally {
      clearInterval(heartbeat)
      this.batchesInFlight--
    }
  }

  /**
   * Whether a poller may receive another batch: it may have one uncommitted batch until the
   * database commits, more while it does; and all pollers together at most twice that many
   * batches not yet deleted, so memory stays bounded whatever the backlog.
   */
  private hasRoom(poller: number): boolean {
    const perPoller = this.databaseCommitting ? Math.max(1, this.options.maxBatchesPerPoller ?? 10) : 1
    return (this.uncommitted.get(poller) ?? 0) < perPoller && this.batchesInFlight < 2 * perPoller * this.options.concurrency
  }

  private wake(): void {
    const wakeUps = this.wakeUps
    this.wakeUps = []
    for (const wakeUp of wakeUps) wakeUp()
  }

  /** Queues a received batch for the next transaction; its visibility is extended meanwhile. */
  private handOver(poller: number, messages: readonly QueueMessage[]): void {
    this.batchesInFlight++
    this.uncommitted.set(poller, (this.uncommitted.get(poller) ?? 0) + 1)
    const heartbeatMs = (this.options.visibilityTimeoutSeconds * 1000) / 2
    const heartbeat = setInterval(() => {
      this.queue.extendVisibility(messages, this.options.visibilityTimeoutSeconds).catch((error: unknown) => {
        this.log.warn({ err: describeError(error) }, 'could not extend the visibility of a slow batch')
      })
    }, heartbeatMs)
    let done!: () => void
    const settled = new Promise<void>((resolve) => (done = resolve))
    this.batches.add(settled)
    void settled.then(() => this.batches.delete(settled))
    this.waiting.push({ poller, messages, heartbeat, done })
    this.startTransactions()
  }

  /** Starts transactions while there are waiting batches and a free slot; each takes all it can. */
  private startTransactions(): void {
    const limit = Math.max(1, this.options.maxMessagesPerTransaction ?? 100)
    while (this.transactions < Math.max(1, this.options.maxTransactions ?? 1) && this.waiting.length > 0) {
      const group: PendingBatch[] = []
      let size = 0
      while (this.waiting.length > 0 && (group.length === 0 || size + (this.waiting[0] as PendingBatch).messages.length <= limit)) {
        const batch = this.waiting.shift() as PendingBatch
        group.push(batch)
        size += batch.messages.length
      }
      this.transactions++
      this.storeGroup(group).catch((error: unknown) => this.log.error({ err: describeError(error) }, 'storing a batch failed unexpectedly'))
    }
  }

  /** One transaction for the group's batches; after the commit the slot is free, then the batches are deleted. */
  private async storeGroup(group: PendingBatch[]): Promise<void> {
    const started = performance.now()
    const messages = group.flatMap((batch) => batch.messages)
    let outcome
    try {
      outcome = await this.pipeline.process(messages)
      this.databaseCommitting = true
    } catch (error) {
      this.databaseCommitting = false
      this.recordFailure('database', error)
      this.databaseSuspect = true
      for (const batch of group) this.failedPollers.add(batch.poller)
      return
    } finally {
      for (const batch of group) {
        clearInterval(batch.heartbeat)
        this.uncommitted.set(batch.poller, (this.uncommitted.get(batch.poller) ?? 1) - 1)
      }
      this.transactions--
      if (outcome === undefined) {
        this.batchesInFlight -= group.length
        for (const batch of group) batch.done()
      }
      this.wake()
      this.startTransactions()
    }
    try {
      const { deleted, failed } = await this.deleteStored(outcome.stored)
      this.count({
        received: messages.length,
        inserted: outcome.inserted,
        duplicates: outcome.duplicates,
        rejected: outcome.rejected,
        rejectedReasons: outcome.rejectedReasons,
        deleted,
        deleteFailures: failed,
        durationMs: performance.now() - started,
      })
    } finally {
      this.batchesInFlight -= group.length
      for (const batch of group) batch.done()
    }
  }

  /** Deletes committed messages (10 per call, calls side by side); a failed delete only means a later duplicate. */
  private async deleteStored(stored: readonly QueueMessage[]): Promise<{ deleted: number; failed: number }> {
    const chunks: QueueMessage[][] = []
    for (let start = 0; start < stored.length; start += 10) chunks.push(stored.slice(start, start + 10))
    const results = await Promise.all(chunks.map(async (chunk) => {
      try {
        return await this.queue.delete(chunk)
      } catch (error) {
        this.recordFailure('queue', error)
        return { deleted: 0, failed: chunk.map((m) => ({ messageId: m.messageId, code: 'DeleteRequestFailed' })) }
      }
    }))
    let deleted = 0
    let failed = 0
    for (const result of results) {
      deleted += result.deleted
      failed += result.failed.length
      for (const failure of result.failed) {
        this.log.warn({ messageId: failure.messageId, code: failure.code }, 'SQS did not delete a stored message; it will be redelivered and skipped as a duplicate')
      }
    }
    return { deleted, failed }
  }

  private count(report: BatchReport): void {
    this.totals.received += report.received
    this.totals.inserted += report.inserted
    this.totals.duplicates += report.duplicates
    this.totals.rejected += report.rejected
    this.totals.deleted += report.deleted
    this.totals.deleteFailures += report.deleteFailures
    for (const listener of this.batchListeners) listener(report)
  }

  private schedule(poller: number, failures: number, delayMs: number): void {
    if (this.status !== 'running') return
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      const tick = this.tick(poller, failures).finally(() => this.ticks.delete(tick))
      this.ticks.add(tick)
    }, delayMs)
    this.timers.add(timer)
  }

  private async tick(poller: number, failures: number): Promise<void> {
    try {
      // Receive again only when this poller has room for one more uncommitted batch.
      while (this.status === 'running' && !this.failedPollers.has(poller) && !this.hasRoom(poller)) {
        await new Promise<void>((resolve) => this.wakeUps.push(resolve))
      }
      if (this.status !== 'running') return
      if (this.failedPollers.delete(poller)) {
        // Its batch failed to store (already recorded): back off, then probe the database.
        this.schedule(poller, failures + 1, sleepFor(failures + 1, this.options.maxBackoffMs ?? 30_000))
        return
      }
      if (this.databaseSuspect) {
        try {
          await this.sql`SELECT 1`
        } catch (error) {
          throw new DependencyError('database', error)
        }
        this.databaseSuspect = false
        this.log.info('database reachable again; resuming polling')
      }
      let messages: QueueMessage[]
      try {
        this.lastPollAt = new Date()
        messages = await this.queue.receive({
          maxMessages: 10,
          waitTimeSeconds: this.options.waitTimeSeconds,
          visibilityTimeoutSeconds: this.options.visibilityTimeoutSeconds,
          signal: this.abort.signal,
        })
        this.lastSuccessfulPollAt = new Date()
      } catch (error) {
        if (this.abort.signal.aborted) return
        throw new DependencyError('queue', error)
      }
      if (messages.length > 0) this.handOver(poller, messages)
      this.schedule(poller, 0, 0)
    } catch (error) {
      const failure = error instanceof DependencyError ? error : new DependencyError('database', error)
      this.recordFailure(failure.dependency, failure.failure)
      if (failure.dependency === 'database') this.databaseSuspect = true
      this.schedule(poller, failures + 1, sleepFor(failures + 1, this.options.maxBackoffMs ?? 30_000))
    }
  }

  private recordFailure(dependency: 'queue' | 'database', cause: unknown): void {
    if (dependency === 'queue') this.totals.pollErrors++
    else this.totals.storeErrors++
    for (const listener of this.failureListeners) listener(dependency)
    const error = describeError(cause)
    this.lastError = { at: new Date().toISOString(), dependency, error }
    this.log.warn({ dependency, err: error }, `${dependency} unavailable; messages stay on the queue, retrying with back-off`)
  }
}

export { DependencyError }
